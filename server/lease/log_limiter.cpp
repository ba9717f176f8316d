#include "server/lease/log_limiter.h"

#include <iterator>
#include <utility>

namespace blockd::server::lease {

bool LogLimiter::allow(const std::string& key, TimePoint now, std::uint64_t& suppressed) {
  if (slots_.size() > kPruneAbove) prune(now);
  const auto [it, inserted] = slots_.try_emplace(key);
  Slot& slot = it->second;
  if (!inserted && now - slot.last < interval_) {
    ++slot.suppressed;
    return false;
  }
  suppressed = std::exchange(slot.suppressed, 0);
  slot.last = now;
  return true;
}

void LogLimiter::prune(TimePoint now) {
  for (auto it = slots_.begin(); it != slots_.end();) {
    it = now - it->second.last >= interval_ ? slots_.erase(it) : std::next(it);
  }
}

}  // namespace blockd::server::lease
