// LeaseManager: who may use which volume, and under which generation (DESIGN.md §4;
// README.md in this folder states every rule and message).
//
//   - A lease belongs to a holder, never to a connection: every connection of one holder
//     shares it (kernel multi-conn). Write lease: one holder (ReadWriteOnce). Read lease:
//     many holders, only on a volume that allows ReadOnlyMany and only while no writer
//     holds it.
//   - admit() at NBD GO grants or joins and returns a SessionTicket, or a Refusal that
//     names the current holder and for how long it has held the volume.
//   - When a holder's last connection closes, its lease is kept for the grace period
//     (Options::grace), during which only that holder is admitted. At start, the previous
//     holders get the same grace (restart grace).
//   - Every new write lease, and every break, increments the volume's generation, and the
//     new generation is persisted through the GenerationStore BEFORE it takes effect; if
//     persisting fails, nothing changes.
//   - A break is two steps (see begin_break): fence and bump now; grant to the new holder
//     when the last fenced session has closed.
//
// Time is the injected Clock's; there is no timer thread: expiry is evaluated on every call
// (expire_due() exists so a periodic timer can make the expiry log lines timely).
//
// Thread affinity: every public function may be called from any thread (workers at GO,
// the control thread); one mutex serialises them, and the GenerationStore is called with
// it held (lock order: LeaseManager -> store). Callbacks (fence handlers, a break's
// on_finished) run with no lock held. Ownership: borrows the Clock and the store, which
// must outlive it; it must itself outlive every SessionTicket it issued.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/lease/clock.h"
#include "server/lease/generation_store.h"
#include "server/lease/lease_info.h"
#include "server/lease/lease_mode.h"
#include "server/lease/log_limiter.h"
#include "server/lease/refusal.h"
#include "server/lease/session_ticket.h"
#include "server/lease/volume_lease.h"

namespace blockd::server::lease {

struct AdmitResult {
  std::unique_ptr<SessionTicket> ticket;  // set when admitted
  Refusal refusal;                        // why not, when ticket is null

  bool admitted() const { return ticket != nullptr; }
};

class LeaseManager {
 public:
  struct Options {
    // Longer than the kernel's dead-connection timeout that blockctl attach configures, so
    // a kernel that reconnects after a network blip finds its lease.
    Duration grace = std::chrono::seconds(120);
    // One refusal line per (volume, holder) per interval.
    Duration refusal_log_interval = std::chrono::seconds(10);
  };

  // A holder from before the restart (the catalog's last writer of the volume).
  struct PreviousHolder {
    std::string volume;
    std::string holder;
    LeaseMode mode = LeaseMode::kReadWrite;
  };

  // Gives each previous holder its lease for the grace period. Throws (start-up) what
  // the store's load() throws, or LeaseError for an invalid holder.
  LeaseManager(Options options, const Clock& clock, GenerationStore& store,
               const std::vector<PreviousHolder>& previous = {});
  ~LeaseManager();
  LeaseManager(const LeaseManager&) = delete;
  LeaseManager& operator=(const LeaseManager&) = delete;

  // NBD GO (and EXPORT_NAME): may `holder` open a session of `mode` on `volume`, whose
  // access policy is `allowed`? Never throws (except std::bad_alloc).
  AdmitResult admit(const std::string& volume, const std::string& holder, LeaseMode mode, AllowedModes allowed);

  // NBD_OPT_INFO, which must answer as GO would (DESIGN.md §2) without taking a lease:
  // the refusal admit() would give now, or nullopt. Changes nothing (it persists nothing,
  // so a GO may still fail with kInternal).
  std::optional<Refusal> probe(const std::string& volume, const std::string& holder, LeaseMode mode,
                               AllowedModes allowed);

  // Control API. Each throws LeaseError with a message a person can act on.
  //
  // Takes (or extends) the lease without a connection, for `ttl` (default: the grace
  // period); the lease then lives until the later of that TTL and the grace after its last
  // connection. The one way for a holder barred by a break to get the volume back.
  LeaseInfo acquire(const std::string& volume, const std::string& holder, LeaseMode mode, AllowedModes allowed,
                    std::optional<Duration> ttl = {});
  // Extends a live lease of `holder` to now + ttl (default: the grace period).
  LeaseInfo renew(const std::string& volume, const std::string& holder, std::optional<Duration> ttl = {});
  // Gives the lease up: at once if `holder` has no connection, else when its last
  // connection closes (no grace period).
  LeaseInfo release(const std::string& volume, const std::string& holder);

  // Break, step 1: persists generation + 1 (its writer: to_holder, or ""), fences every
  // session of the current holders (SessionTicket::fenced() turns true, their on_fenced
  // handlers run before this returns), bars the old holders from automatic re-admission,
  // and refuses every admission on the volume until the break finishes.
  // Step 2 happens by itself when the last fenced ticket is destroyed (the caller closes
  // those sessions after draining their in-flight writes): to_holder, if given, gets the
  // write lease at the new generation for `to_ttl` (default: the grace period), and
  // on_finished runs — on the thread that destroyed the last ticket, or before
  // begin_break returns when nothing was open (BreakStart::finished).
  // Throws LeaseError: kFailedPrecondition while another break runs, kInternal when the
  // generation cannot be persisted (then nothing changed: nobody is fenced).
  BreakStart begin_break(const std::string& volume, const std::optional<std::string>& to_holder,
                         std::function<void()> on_finished = {}, std::optional<Duration> to_ttl = {});

  // The volume's lease now (kFree with the stored generation if it was never leased).
  LeaseInfo show(const std::string& volume);
  // Every volume this manager has seen since start, sorted by name. Volumes it never saw
  // are free, at the generation the catalog has.
  std::vector<LeaseInfo> list();
  // Why the volume must not be deleted or resized now (leased, or a break is running);
  // nullopt when it is free.
  std::optional<std::string> busy_reason(const std::string& volume);
  // Drops the state of a free volume (after it was deleted); false if it is not free.
  bool forget(const std::string& volume);
  // Expires (and logs) every lease that has run out.
  void expire_due();

  Duration grace() const { return options_.grace; }

 private:
  friend class SessionTicket;
  void close_session(SessionTicket& ticket);
  void set_fence_handler(SessionTicket& ticket, std::function<void()> handler);

  // Each expects mutex_ held.
  VolumeLease& volume_locked(const std::string& volume);
  void expire_locked(VolumeLease& lease, TimePoint now);
  std::optional<Refusal> check_locked(VolumeLease& lease, const std::string& holder, LeaseMode mode,
                                      AllowedModes allowed, bool explicit_request, TimePoint now);
  std::optional<Refusal> conflict_locked(VolumeLease& lease, LeaseMode mode, TimePoint now);
  HolderEntry& grant_locked(VolumeLease& lease, const std::string& holder, LeaseMode mode, TimePoint now,
                            const char* via);
  std::unique_ptr<SessionTicket> issue_locked(VolumeLease& lease, HolderEntry& entry, LeaseMode mode,
                                              TimePoint now);
  HolderEntry& holder_entry_locked(VolumeLease& lease, const std::string& holder, const char* operation,
                                   TimePoint now);
  void persist_break_locked(const VolumeLease& lease, std::uint64_t generation, const std::string& writer);
  std::vector<std::function<void()>> fence_locked(VolumeLease& lease, const std::optional<std::string>& to_holder,
                                                  BreakStart& start);
  std::function<void()> finish_break_locked(VolumeLease& lease, TimePoint now);
  void last_connection_closed_locked(VolumeLease& lease, HolderEntry& entry, TimePoint now);
  void restore_locked(const PreviousHolder& previous, TimePoint now);
  void log_refusal_locked(const VolumeLease& lease, const std::string& holder, LeaseMode mode,
                          const Refusal& refusal, TimePoint now);
  Duration ttl_or_grace(std::optional<Duration> ttl) const;

  const Options options_;
  const Clock& clock_;
  GenerationStore& store_;
  const std::shared_ptr<spdlog::logger> log_;

  std::mutex mutex_;
  std::map<std::string, VolumeLease> volumes_;
  LogLimiter refusal_log_;
  std::uint64_t next_ticket_id_ = 1;
  std::size_t open_tickets_ = 0;
};

}  // namespace blockd::server::lease
