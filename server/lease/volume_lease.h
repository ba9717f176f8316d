// VolumeLease: the lease state of one volume — its generation, its holders and their
// connections, a break in progress, the holders a break has barred. Bookkeeping only:
// the rules (who may be admitted) and the logging live in LeaseManager.
//
// A holder's lease is live while it has a connection, or until the later of its grace
// deadline (set when its last connection closes, or at restart) and its API deadline (set
// by acquire/renew with a TTL). Expiry is evaluated lazily, by expire(now).
//
// Thread affinity: none of its own; LeaseManager calls it with its mutex held. Ownership:
// owned by LeaseManager; the SessionTicket pointers it keeps are borrowed (each ticket
// removes itself, through the manager, before it dies).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/lease/clock.h"
#include "server/lease/lease_info.h"
#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

class SessionTicket;

struct HolderEntry {
  std::string holder;
  LeaseMode mode = LeaseMode::kReadWrite;
  TimePoint held_since{};
  std::map<std::uint64_t, SessionTicket*> sessions;  // by ticket id
  std::optional<TimePoint> grace_until;  // set while it has no connection (after one, or at restart)
  std::optional<TimePoint> api_until;    // acquire/renew deadline
  bool restart_grace = false;
  bool released = false;  // release() while connected: no grace after the last connection

  bool connected() const { return !sessions.empty(); }
  // nullopt while connected; otherwise the later deadline (an entry has at least one).
  std::optional<TimePoint> expires_at() const;
  bool live(TimePoint now) const;
};

struct BreakInProgress {
  std::optional<std::string> to_holder;
  Duration to_ttl{};
  std::map<std::uint64_t, SessionTicket*> fenced;  // fenced sessions still open
  std::function<void()> drained;
};

class VolumeLease {
 public:
  VolumeLease(std::string name, std::uint64_t generation);

  const std::string& name() const { return name_; }
  std::uint64_t generation() const { return generation_; }
  void set_generation(std::uint64_t generation) { generation_ = generation; }
  LeaseState state() const;

  HolderEntry* find(const std::string& holder);
  HolderEntry* writer();
  std::vector<std::string> reader_names() const;
  // The earliest held_since of the current holders (how long the volume has been held).
  TimePoint held_since() const;
  HolderEntry& add(const std::string& holder, LeaseMode mode, TimePoint now);
  void remove(const std::string& holder) { holders_.erase(holder); }
  // Removes every holder whose lease has run out, and returns them.
  std::vector<HolderEntry> expire(TimePoint now);
  // Takes every holder out (for a break) and returns them.
  std::map<std::string, HolderEntry> take_holders();

  bool barred(const std::string& holder) const { return barred_.count(holder) != 0; }
  void bar(const std::string& holder) { barred_.insert(holder); }
  void unbar(const std::string& holder) { barred_.erase(holder); }

  std::optional<BreakInProgress>& breaking() { return breaking_; }
  const std::optional<BreakInProgress>& breaking() const { return breaking_; }

  LeaseInfo info(TimePoint now) const;

 private:
  const std::string name_;
  std::uint64_t generation_;
  std::map<std::string, HolderEntry> holders_;  // all kReadWrite (one) or all kReadOnly
  std::optional<BreakInProgress> breaking_;
  std::set<std::string> barred_;
};

}  // namespace blockd::server::lease
