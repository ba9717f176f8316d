// NbdError: the NBD conversation failed: the server refused an option (with its
// NBD_REP_ERR_* and message), broke the protocol, or the socket failed. Thrown by the
// handshake and by NbdClient for anything that ends the session; a per-request error
// reply is not an NbdError but a Completion with a non-zero error.
// Immutable.
#pragma once

#include <stdexcept>
#include <string>

namespace blockd::client {

class NbdError : public std::runtime_error {
 public:
  explicit NbdError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace blockd::client
