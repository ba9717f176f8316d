// usage_message(fn): the UsageError message `fn` throws, or a test failure when it
// throws none. Shared by the blockctl argument tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tools/usage_error.h"

namespace blockd::tools {

inline std::string usage_message(auto&& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError";
  return "";
}

}  // namespace blockd::tools
