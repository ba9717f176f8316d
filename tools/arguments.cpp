#include "tools/arguments.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <limits>

#include "common/names.h"
#include "common/size.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (char c : text) {
    if (c == ',') {
      out.push_back(current);
      current.clear();
    } else if (c != ' ') {
      current += c;
    }
  }
  out.push_back(current);
  return out;
}

}  // namespace

void check_volume_name(const std::string& name) {
  if (common::is_dns_label(name)) return;
  throw UsageError("bad volume name \"" + name +
                   "\": use 1-63 lowercase letters, digits and '-', starting and ending with a "
                   "letter or digit (e.g. db-0)");
}

std::uint64_t parse_volume_size(const std::string& text, std::string* rounded_note) {
  const auto bytes = common::parse_size(text);
  if (!bytes) {
    throw UsageError("bad size \"" + text +
                     "\": write a number with an optional unit, e.g. 10GiB, 512MiB, 10G or "
                     "1073741824 (units are binary)");
  }
  if (*bytes == 0) throw UsageError("bad size \"" + text + "\": a volume cannot be empty");
  if (*bytes % 512 != 0) {
    // The server rounds up too (and says so); blockctl says it before sending.
    const std::uint64_t up = (*bytes / 512 + 1) * 512;
    if (rounded_note != nullptr) {
      *rounded_note = "size " + text + " is not a multiple of 512 bytes; rounded up to " + std::to_string(up) +
                      " bytes";
    }
    return up;
  }
  return *bytes;
}

std::map<std::string, std::string> parse_labels(const std::vector<std::string>& items) {
  std::map<std::string, std::string> labels;
  for (const std::string& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError("bad label \"" + item + "\": write KEY=VALUE, e.g. --label app=postgres");
    }
    const std::string key = item.substr(0, eq);
    if (!labels.emplace(key, item.substr(eq + 1)).second)
      throw UsageError("label \"" + key + "\" given twice");
  }
  return labels;
}

std::vector<v1::AccessMode> parse_access_modes(const std::vector<std::string>& items) {
  std::vector<v1::AccessMode> modes;
  for (const std::string& item : items) {
    for (const std::string& word : split_commas(item)) {
      const std::string w = lower(word);
      v1::AccessMode mode;
      if (w == "readwriteonce" || w == "rwo") {
        mode = v1::READ_WRITE_ONCE;
      } else if (w == "readonlymany" || w == "rox") {
        mode = v1::READ_ONLY_MANY;
      } else {
        throw UsageError("unknown access mode \"" + word +
                         "\": use ReadWriteOnce (RWO) and/or ReadOnlyMany (ROX), comma-separated");
      }
      if (std::find(modes.begin(), modes.end(), mode) == modes.end()) modes.push_back(mode);
    }
  }
  return modes;
}

std::uint32_t parse_duration_seconds(const std::string& text) {
  const auto bad = [&](const std::string& why) {
    return UsageError("bad duration \"" + text + "\": " + why + "; write e.g. 30s, 5m, 1h, 1h30m or plain seconds (90)");
  };
  if (text.empty()) throw bad("it is empty");
  std::uint64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) throw bad("expected a number at \"" + text.substr(i) + "\"");
    const std::size_t start = i;
    std::uint64_t number = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      number = number * 10 + static_cast<std::uint64_t>(text[i] - '0');
      if (number > std::numeric_limits<std::uint32_t>::max()) throw bad("too long (at most 4294967295 seconds)");
      ++i;
    }
    std::uint64_t unit = 1;
    if (i < text.size()) {
      switch (text[i]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: throw bad("unknown unit \"" + text.substr(i, 1) + "\" (use s, m, h or d)");
      }
      ++i;
    } else if (start != 0) {
      throw bad("\"" + text.substr(start) + "\" has no unit");
    }
    total += number * unit;
    if (total > std::numeric_limits<std::uint32_t>::max()) throw bad("too long (at most 4294967295 seconds)");
  }
  if (total == 0) throw bad("it must be positive");
  return static_cast<std::uint32_t>(total);
}

void check_holder(const std::string& holder) {
  // The server's rule (common/names.h): a bad holder is refused before anything is sent.
  if (!common::is_valid_holder(holder))
    throw UsageError("bad holder \"" + holder + "\": use 1-253 characters of A-Z a-z 0-9 . _ : - (e.g. node-a)");
}

std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "";
  return host;
}

}  // namespace blockd::tools
