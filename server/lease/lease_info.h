// Snapshots the LeaseManager hands out: what the control API lists and shows, and what a
// break reports. Plain values, taken under the manager's mutex; safe to keep and copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/lease/clock.h"
#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

enum class LeaseState {
  kFree,      // nobody holds the volume
  kWrite,     // one holder has the write lease
  kRead,      // one or more holders share a read lease
  kBreaking,  // a break has fenced the old holders and waits for their sessions to close
};

constexpr std::string_view to_string(LeaseState state) {
  switch (state) {
    case LeaseState::kFree: return "free";
    case LeaseState::kWrite: return "write";
    case LeaseState::kRead: return "read";
    case LeaseState::kBreaking: return "breaking";
  }
  return "free";
}

struct HolderInfo {
  std::string holder;
  LeaseMode mode = LeaseMode::kReadWrite;
  int connections = 0;
  TimePoint held_since{};  // steady time; the control API shows now - held_for in wall time
  Duration held_for{};
  // nullopt while the holder has a connection (a connected lease does not expire).
  std::optional<TimePoint> expires_at;
  std::optional<Duration> expires_in;
  bool restart_grace = false;  // restored at start, its holder has not reconnected yet
  bool released = false;       // released while connected: ends with its last connection
};

struct LeaseInfo {
  std::string volume;
  LeaseState state = LeaseState::kFree;
  std::uint64_t generation = 0;
  std::vector<HolderInfo> holders;  // sorted by holder; one entry for kWrite
  // kBreaking only.
  int fenced_connections = 0;
  std::optional<std::string> break_to;
};

// What begin_break() did.
struct BreakStart {
  std::string volume;
  std::uint64_t generation = 0;             // the new generation (already persisted)
  std::vector<std::string> fenced_holders;  // the holders that lost the lease
  int fenced_connections = 0;               // sessions still open, being drained
  bool finished = false;                    // nothing to drain: the break is complete
};

}  // namespace blockd::server::lease
