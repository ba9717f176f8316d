#include "server/catalog/volume_rules.h"

#include <algorithm>

#include "common/names.h"
#include "common/size.h"
#include "server/catalog/catalog_error.h"

namespace blockd::server::catalog {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw CatalogError(ErrorCode::kInvalidArgument, message); }

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Kubernetes "qualified name" part and label value: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?
bool is_label_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
}

// A DNS subdomain: dot-separated DNS labels, at most 253 characters.
bool is_dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t start = 0;
  for (;;) {
    const auto dot = s.find('.', start);
    if (!common::is_dns_label(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start)))
      return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(s[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    // Overlong forms, surrogates and values beyond Unicode are not UTF-8.
    static constexpr std::uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

std::uint64_t round_volume_size(std::uint64_t bytes) {
  if (bytes == 0) invalid("the size must be positive; write e.g. 10GiB");
  if (bytes > kMaxVolumeSize)
    invalid("the size " + common::format_size(bytes) + " is more than the largest volume blockd makes (" +
            common::format_size(kMaxVolumeSize) + ")");
  return (bytes + kVolumeSizeAlignment - 1) / kVolumeSizeAlignment * kVolumeSizeAlignment;
}

std::uint64_t parse_volume_size(std::string_view text) {
  const auto bytes = common::parse_size(text);
  if (!bytes)
    invalid("size '" + std::string(text) +
            "' is not a size; write a whole number with an optional binary unit, e.g. 10GiB, 512MiB, 10G or "
            "1073741824");
  return round_volume_size(*bytes);
}

void validate_volume_name(std::string_view name) {
  if (!common::is_dns_label(name))
    invalid("volume name '" + std::string(name) +
            "' must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit, "
            "e.g. pg-data-0");
}

void validate_description(std::string_view description) {
  if (description.size() > kMaxDescriptionBytes)
    invalid("the description is " + std::to_string(description.size()) + " bytes; at most " +
            std::to_string(kMaxDescriptionBytes) + " are kept");
  if (!is_utf8(description)) invalid("the description is not valid UTF-8");
  for (char c : description)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      invalid("the description contains a control character (tab, newline...); write it on one line");
}

void validate_labels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels)
    invalid("a volume has " + std::to_string(labels.size()) + " labels; at most " + std::to_string(kMaxLabels) +
            " are allowed");
  for (const auto& [key, value] : labels) {
    const auto slash = key.find('/');
    const std::string_view name = slash == std::string::npos ? std::string_view(key) : std::string_view(key).substr(slash + 1);
    const bool prefix_ok = slash == std::string::npos || is_dns_subdomain(std::string_view(key).substr(0, slash));
    if (!prefix_ok || !is_label_name(name))
      invalid("label key '" + key +
              "' is not valid: write [prefix/]name, name 1-63 of letters, digits, '-', '_' or '.', starting and "
              "ending with a letter or digit, prefix a DNS name (e.g. example.com/tier)");
    if (!value.empty() && !is_label_name(value))
      invalid("label " + key + "='" + value +
              "': a value is empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
              "digit");
  }
}

std::vector<v1::AccessMode> normalize_access_modes(const google::protobuf::RepeatedField<int>& modes) {
  std::vector<v1::AccessMode> out;
  for (int mode : modes) {
    if (mode != v1::READ_WRITE_ONCE && mode != v1::READ_ONLY_MANY)
      invalid("access mode " + std::to_string(mode) + " is not one blockd knows; use READ_WRITE_ONCE and/or READ_ONLY_MANY");
    out.push_back(static_cast<v1::AccessMode>(mode));
  }
  if (out.empty()) out.push_back(v1::READ_WRITE_ONCE);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace blockd::server::catalog
