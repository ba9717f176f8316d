// RingEvent: AsyncEvent's contract (waiters re-check their condition in a loop, a
// notification with nobody waiting is harmless) for one waiter, resumed by its Ring
// inside the current submit pass instead of through a timer and another trip around
// the event loop. The reply writer waits on one: a reply queued by a request that the
// ring just completed is sent in the same pass (server/io/ring.h).
//
//     while (!condition) co_await event.wait();
//
// Thread affinity: the ring's worker thread. Ownership: borrows the Ring, which
// outlives it; the Ring owns the parked coroutine until it is woken or shut down.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>

#include "server/io/ring.h"

namespace blockd::server::io {

class RingEvent {
 public:
  explicit RingEvent(Ring& ring) : ring_(ring) {}
  RingEvent(const RingEvent&) = delete;
  RingEvent& operator=(const RingEvent&) = delete;
  ~RingEvent();

  // At most one coroutine waits at a time.
  asio::awaitable<void> wait();
  void notify();

 private:
  Ring& ring_;
  std::uint64_t parked_ = 0;  // the Ring's key while a coroutine waits, else 0
};

}  // namespace blockd::server::io
