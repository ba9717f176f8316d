#include "server/lease/volume_lease.h"

#include <algorithm>
#include <utility>

namespace blockd::server::lease {

std::optional<TimePoint> HolderEntry::expires_at() const {
  if (connected()) return std::nullopt;
  if (grace_until && api_until) return std::max(*grace_until, *api_until);
  return grace_until ? grace_until : api_until;
}

bool HolderEntry::live(TimePoint now) const {
  const auto deadline = expires_at();
  return connected() || (deadline && now < *deadline);
}

VolumeLease::VolumeLease(std::string name, std::uint64_t generation) : name_(std::move(name)), generation_(generation) {}

LeaseState VolumeLease::state() const {
  if (breaking_) return LeaseState::kBreaking;
  if (holders_.empty()) return LeaseState::kFree;
  return holders_.begin()->second.mode == LeaseMode::kReadWrite ? LeaseState::kWrite : LeaseState::kRead;
}

HolderEntry* VolumeLease::find(const std::string& holder) {
  const auto it = holders_.find(holder);
  return it == holders_.end() ? nullptr : &it->second;
}

HolderEntry* VolumeLease::writer() {
  if (state() != LeaseState::kWrite) return nullptr;
  return &holders_.begin()->second;
}

std::vector<std::string> VolumeLease::reader_names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : holders_) {
    if (entry.mode == LeaseMode::kReadOnly) names.push_back(name);
  }
  return names;
}

TimePoint VolumeLease::held_since() const {
  TimePoint earliest = TimePoint::max();
  for (const auto& [name, entry] : holders_) earliest = std::min(earliest, entry.held_since);
  return earliest;
}

HolderEntry& VolumeLease::add(const std::string& holder, LeaseMode mode, TimePoint now) {
  HolderEntry& entry = holders_[holder];
  entry.holder = holder;
  entry.mode = mode;
  entry.held_since = now;
  return entry;
}

std::vector<HolderEntry> VolumeLease::expire(TimePoint now) {
  std::vector<HolderEntry> expired;
  for (auto it = holders_.begin(); it != holders_.end();) {
    if (it->second.live(now)) {
      ++it;
      continue;
    }
    expired.push_back(std::move(it->second));
    it = holders_.erase(it);
  }
  return expired;
}

std::map<std::string, HolderEntry> VolumeLease::take_holders() { return std::exchange(holders_, {}); }

LeaseInfo VolumeLease::info(TimePoint now) const {
  LeaseInfo info;
  info.volume = name_;
  info.state = state();
  info.generation = generation_;
  for (const auto& [name, entry] : holders_) {
    HolderInfo holder;
    holder.holder = name;
    holder.mode = entry.mode;
    holder.connections = static_cast<int>(entry.sessions.size());
    holder.held_since = entry.held_since;
    holder.held_for = now - entry.held_since;
    holder.expires_at = entry.expires_at();
    if (holder.expires_at) holder.expires_in = *holder.expires_at - now;
    holder.restart_grace = entry.restart_grace;
    holder.released = entry.released;
    info.holders.push_back(std::move(holder));
  }
  if (breaking_) {
    info.fenced_connections = static_cast<int>(breaking_->fenced.size());
    info.break_to = breaking_->to_holder;
  }
  return info;
}

}  // namespace blockd::server::lease
