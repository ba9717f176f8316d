// SteadyClock: the real Clock, std::chrono::steady_clock (CLOCK_MONOTONIC).
//
// Thread affinity: any thread; stateless.
#pragma once

#include "server/lease/clock.h"

namespace blockd::server::lease {

class SteadyClock final : public Clock {
 public:
  TimePoint now() const override;
};

}  // namespace blockd::server::lease
