// UsageError: the command line is wrong in a way CLI11 cannot see (a bad size, a bad
// name, label syntax); blockctl exits 2 for it, before anything is sent. Immutable.
#pragma once

#include <stdexcept>
#include <string>

namespace blockd::tools {

class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace blockd::tools
