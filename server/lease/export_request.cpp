#include "server/lease/export_request.h"

#include <algorithm>

namespace blockd::server::lease {

namespace {

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Builds the error text once, so every failure states the same grammar.
bool fail(std::string& error, std::string_view export_name, const std::string& problem) {
  error = "export name " + quoted(export_name) + ": " + problem + "; expected " + std::string(kExportNameGrammar);
  return false;
}

struct Seen {
  bool holder = false;
  bool mode = false;
};

// One "key=value" of the query; fills `out`, or sets `error` and returns false.
bool parse_param(std::string_view export_name, std::string_view param, Seen& seen, ExportRequest& out,
                 std::string& error) {
  if (param.empty()) return fail(error, export_name, "empty parameter (a stray '&' or a trailing '?')");
  const auto eq = param.find('=');
  if (eq == std::string_view::npos) return fail(error, export_name, "parameter " + quoted(param) + " has no '='");
  const std::string_view key = param.substr(0, eq);
  const std::string_view value = param.substr(eq + 1);
  if (key == "holder") {
    if (seen.holder) return fail(error, export_name, "holder given twice");
    if (!is_valid_holder(value)) return fail(error, export_name, "invalid holder " + quoted(value));
    seen.holder = true;
    out.holder = std::string(value);
    return true;
  }
  if (key == "mode") {
    if (seen.mode) return fail(error, export_name, "mode given twice");
    if (value == "rw") {
      out.mode = LeaseMode::kReadWrite;
    } else if (value == "ro") {
      out.mode = LeaseMode::kReadOnly;
    } else {
      return fail(error, export_name, "invalid mode " + quoted(value) + " (rw or ro)");
    }
    seen.mode = true;
    out.mode_given = true;
    return true;
  }
  return fail(error, export_name, "unknown key " + quoted(key));
}

}  // namespace

std::optional<ExportRequest> ExportRequest::parse(std::string_view export_name, std::string& error) {
  ExportRequest out;
  const auto question = export_name.find('?');
  out.volume = std::string(export_name.substr(0, question));
  if (out.volume.find_first_of("&=") != std::string::npos) {
    // "db&mode=ro": almost certainly a query without its '?'; a volume name never has these.
    fail(error, export_name, "parameters must follow a '?'");
    return std::nullopt;
  }
  if (question == std::string_view::npos) return out;  // a plain name: the handshake looks it up
  if (out.volume.empty()) {
    fail(error, export_name, "no volume name before '?'");
    return std::nullopt;
  }
  Seen seen;
  std::string_view query = export_name.substr(question + 1);
  while (true) {
    const auto amp = query.find('&');
    if (!parse_param(export_name, query.substr(0, amp), seen, out, error)) return std::nullopt;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::string default_holder(std::string_view peer) {
  std::string_view address = peer;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close != std::string_view::npos) address = address.substr(1, close - 1);
  } else if (std::count(address.begin(), address.end(), ':') == 1) {
    address = address.substr(0, address.find(':'));  // IPv4 "a.b.c.d:port"
  }
  if (const auto zone = address.find('%'); zone != std::string_view::npos) address = address.substr(0, zone);
  return is_valid_holder(address) ? std::string(address) : std::string("unknown");
}

}  // namespace blockd::server::lease
