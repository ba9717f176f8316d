#include "server/lease/steady_clock.h"

namespace blockd::server::lease {

TimePoint SteadyClock::now() const { return std::chrono::steady_clock::now(); }

}  // namespace blockd::server::lease
