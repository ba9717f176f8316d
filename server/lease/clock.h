// Clock: the lease manager's only source of time, so that tests can drive grace periods
// and expiry with a FakeClock instead of sleeping. Steady time: lease lifetimes must not
// jump when an operator (or NTP) sets the wall clock.
//
// Thread affinity: implementations are safe to call from any thread.
#pragma once

#include <chrono>

namespace blockd::server::lease {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

}  // namespace blockd::server::lease
