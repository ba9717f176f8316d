// LogLimiter: at most one log line per key per interval (DESIGN.md §7: client-caused
// warnings are rate-limited). A client retrying GO in a tight loop must not flood the
// journal; the next line that gets through says how many were suppressed.
//
// Thread affinity: none of its own; LeaseManager uses it under its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "server/lease/clock.h"

namespace blockd::server::lease {

class LogLimiter {
 public:
  explicit LogLimiter(Duration interval) : interval_(interval) {}

  // True when a line for `key` may be logged now; then `suppressed` is how many were
  // dropped since the last one.
  bool allow(const std::string& key, TimePoint now, std::uint64_t& suppressed);

 private:
  struct Slot {
    TimePoint last{};
    std::uint64_t suppressed = 0;
  };
  // Bounds the map: keys idle for an interval carry no information and are dropped.
  void prune(TimePoint now);

  static constexpr std::size_t kPruneAbove = 1024;
  const Duration interval_;
  std::map<std::string, Slot> slots_;
};

}  // namespace blockd::server::lease
