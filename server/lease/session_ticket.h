// SessionTicket: proof that one NBD session was admitted under a lease. It is an RAII
// handle: destroying it is how the session tells the LeaseManager it has closed (the last
// ticket of a holder starts the grace period; the last fenced ticket of a break lets the
// break finish).
//
// Fencing (DESIGN.md §4, README.md "Break"): when the lease is broken, fenced() becomes
// true, for ever. The data path must call fenced() before submitting every write, trim or
// write-zeroes, in the same run of the worker's event loop as the submission (no co_await
// between the check and the submit), and answer a fenced request with an error. The
// on_fenced() handler is how the server learns to stop the session, wait for the writes it
// had already submitted, and close it (then destroy this ticket).
//
// Thread affinity: fenced() is lock-free and may be called from the session's worker at
// any rate; on_fenced() and the destructor take the manager's mutex. Ownership: created
// only by LeaseManager, owned by the session (std::unique_ptr); the LeaseManager must
// outlive every ticket.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

class LeaseManager;

class SessionTicket {
  // Only LeaseManager can make the key, so only it can construct tickets (while
  // std::make_unique still works).
  struct Key {
    explicit Key() = default;
  };
  friend class LeaseManager;

 public:
  SessionTicket(Key, LeaseManager& manager, std::uint64_t id, std::string volume, std::string holder,
                LeaseMode mode, std::uint64_t generation);
  SessionTicket(const SessionTicket&) = delete;
  SessionTicket& operator=(const SessionTicket&) = delete;
  ~SessionTicket();

  std::uint64_t id() const { return id_; }
  const std::string& volume() const { return volume_; }
  const std::string& holder() const { return holder_; }
  // The session's own mode: a kReadOnly session must be advertised READ_ONLY and its
  // writes answered EPERM, even when its holder has the write lease.
  LeaseMode mode() const { return mode_; }
  bool writable() const { return mode_ == LeaseMode::kReadWrite; }
  // The volume's generation when this session was admitted (its fencing token).
  std::uint64_t generation() const { return generation_; }

  // True once the lease this session was admitted under has been broken. Never goes back.
  bool fenced() const { return fenced_.load(std::memory_order_acquire); }

  // Registers the handler run (once) when this ticket is fenced: on the thread that broke
  // the lease, without any lock held; if the ticket is already fenced, right away on this
  // thread. It must be quick and thread-safe — typically asio::post() to the session's
  // worker to abort the session. Replaces a previous handler.
  void on_fenced(std::function<void()> handler);

 private:
  LeaseManager& manager_;
  const std::uint64_t id_;
  const std::string volume_;
  const std::string holder_;
  const LeaseMode mode_;
  const std::uint64_t generation_;
  std::atomic<bool> fenced_{false};        // written under the manager's mutex
  std::function<void()> fence_handler_;    // guarded by the manager's mutex
};

}  // namespace blockd::server::lease
