#include "server/lease/fake_clock.h"

namespace blockd::server::lease {

FakeClock::FakeClock() : ticks_(std::chrono::duration_cast<Duration>(std::chrono::hours(1000)).count()) {}

TimePoint FakeClock::now() const { return TimePoint(Duration(ticks_.load(std::memory_order_acquire))); }

void FakeClock::advance(Duration by) { ticks_.fetch_add(by.count(), std::memory_order_acq_rel); }

void FakeClock::set(TimePoint to) { ticks_.store(to.time_since_epoch().count(), std::memory_order_release); }

}  // namespace blockd::server::lease
