// LeaseError: why a control-API lease operation was refused, with a stable code (the
// control API's ErrorResponse.code, same vocabulary as catalog::ErrorCode) and a message
// a person can act on. Exceptions are for the control-plane edge only (DESIGN.md §7): the
// GO path (LeaseManager::admit) never throws these, it returns a Refusal.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace blockd::server::lease {

enum class LeaseErrorCode {
  kInvalidArgument,     // bad holder name, bad ttl: HTTP 400
  kNotFound,            // the holder holds no lease on the volume (renew, release): 404
  kFailedPrecondition,  // someone else holds it, a break is running, mode not allowed: 409
  kInternal,            // the generation could not be persisted: 500
};

constexpr std::string_view to_string(LeaseErrorCode code) {
  switch (code) {
    case LeaseErrorCode::kInvalidArgument: return "invalid_argument";
    case LeaseErrorCode::kNotFound: return "not_found";
    case LeaseErrorCode::kFailedPrecondition: return "failed_precondition";
    case LeaseErrorCode::kInternal: return "internal";
  }
  return "internal";
}

class LeaseError : public std::runtime_error {
 public:
  LeaseError(LeaseErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  LeaseErrorCode code() const { return code_; }

 private:
  LeaseErrorCode code_;
};

}  // namespace blockd::server::lease
