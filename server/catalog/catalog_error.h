// CatalogError: why a catalog operation was refused or failed, as a stable code (the
// control API's ErrorResponse.code and its HTTP status) and a message a person can act on.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace blockd::server::catalog {

enum class ErrorCode {
  kInvalidArgument,     // the request is wrong (name, size, labels...): HTTP 400
  kNotFound,            // no such volume or class: 404
  kAlreadyExists,       // the name is taken: 409
  kFailedPrecondition,  // valid, but not now or not this way (shrink, volume in use): 409
  kResourceExhausted,   // not enough free space for a preallocated volume: 507
  kUnavailable,         // the catalog must be recovered first (restart blockd): 503
  kDataLoss,            // catalog.pb is damaged: blockd refuses to start
  kInternal,            // an I/O error: 500
};

// "invalid_argument", "not_found", ... (ErrorResponse.code).
constexpr std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDataLoss: return "data_loss";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

class CatalogError : public std::runtime_error {
 public:
  CatalogError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace blockd::server::catalog
