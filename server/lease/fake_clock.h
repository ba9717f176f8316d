// FakeClock: a Clock that moves only when a test says so. It lives in the library (not in
// tests/) so that the server's own tests, which will wire a LeaseManager, can use it too.
//
// Thread affinity: any thread (the time is one atomic).
#pragma once

#include <atomic>

#include "server/lease/clock.h"

namespace blockd::server::lease {

class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary, non-zero point so that "time_since_epoch() == 0" never hides
  // an uninitialised value in a test.
  FakeClock();

  TimePoint now() const override;
  void advance(Duration by);
  void set(TimePoint to);

 private:
  std::atomic<Duration::rep> ticks_;
};

}  // namespace blockd::server::lease
