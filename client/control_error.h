// ControlError: the control API said no, or could not be reached. Carries the API's
// stable `code` ("not_found", "already_exists", ...; "unreachable" and "protocol" are
// blockctl's own, for a server that cannot be reached or spoke nonsense), the
// human message, and the HTTP status (0 when there was no answer).
// Exceptions are the control plane's error currency (DESIGN.md §7). Immutable.
#pragma once

#include <stdexcept>
#include <string>

namespace blockd::client {

class ControlError : public std::runtime_error {
 public:
  ControlError(std::string code, const std::string& message, unsigned http_status)
      : std::runtime_error(message), code_(std::move(code)), http_status_(http_status) {}

  const std::string& code() const { return code_; }
  unsigned http_status() const { return http_status_; }

 private:
  std::string code_;
  unsigned http_status_;
};

}  // namespace blockd::client
