// Session: the transmission phase of one connection, bound to one Volume
// (nbd-proto.md "Transmission").
//
// One reader coroutine reads request headers (and write payloads), validates them,
// and spawns one coroutine per request; requests run concurrently on the worker's
// io_uring ring and reply out of order through the ReplyWriter. The reader stops
// taking requests while kMaxInFlight requests or kMaxInFlightBytes of buffers are
// outstanding, so a fast client cannot exhaust memory.
//
// Closing: whatever the reason, the session stops reading, waits for every request
// it started to finish (so no buffer is released under the kernel and no reply is
// sent on a reused fd), lets the writer flush its queue, and only then returns.
//
// Thread affinity: the connection's worker. Ownership: shared by the Connection and
// every request coroutine it spawned.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>

#include "common/nbd_wire.h"
#include "server/io/async_event.h"
#include "server/io/buffer_pool.h"
#include "server/io/ring.h"
#include "server/nbd/handshake.h"
#include "server/nbd/reply_writer.h"
#include "server/metrics/volume_metrics.h"
#include "server/nbd/request_reader.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

inline constexpr std::size_t kMaxInFlight = 256;
inline constexpr std::size_t kMaxInFlightBytes = 128U << 20;
// A WRITE longer than the maximum payload is drained (and refused) up to this size;
// beyond it the client is assumed hostile and the connection is closed.
inline constexpr std::uint32_t kMaxDrainLength = 128U << 20;
// How long a draining session waits for an idle client to disconnect by itself.
inline constexpr auto kDrainLinger = std::chrono::seconds(1);

struct SessionStats {
  std::uint64_t requests = 0;
  std::uint64_t bytes_read = 0;     // served to the client
  std::uint64_t bytes_written = 0;  // written to the volume
  std::uint64_t errors = 0;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(net::Socket& socket, Negotiated negotiated, io::Ring& ring, io::BufferPool& buffers,
          std::string peer, unsigned worker_index = 0);

  // Serves until the client disconnects, violates the protocol, or the session is
  // drained; returns the reason, for the close log line.
  static asio::awaitable<std::string> serve(std::shared_ptr<Session> self);

  // Server shutdown: new requests get ESHUTDOWN; in-flight ones finish; the
  // connection closes once idle (after a short linger for a soft disconnect).
  void begin_drain();

  // The lease was broken (preempt-and-abort, DESIGN.md §4): stop reading requests,
  // answer every request not yet submitted with EPERM, wait for the ones already
  // submitted to the disk, then close. Runs on the session's worker (the ticket's
  // on_fenced handler posts it here).
  void fence();
  // Drops the lease ticket once the session is over (after serve()): that is what tells
  // the lease manager the session has closed, so a break can finish.
  void release_ticket() { ticket_.reset(); }

  const SessionStats& stats() const { return stats_; }
  const storage::Volume& volume() const { return *volume_; }

 private:
  using RequestHeader = common::nbd::RequestHeader;

  asio::awaitable<std::string> read_requests();
  void dispatch(const RequestHeader& request, io::Buffer payload);
  static asio::awaitable<void> run_request(std::shared_ptr<Session> self, RequestHeader request,
                                           io::Buffer payload);
  static asio::awaitable<void> write_replies(std::shared_ptr<Session> self);
  static asio::awaitable<void> close_when_idle(std::shared_ptr<Session> self);
  // Each answers the request and returns how it ended (kOk or the error sent).
  asio::awaitable<common::nbd::Error> execute(const RequestHeader& request, io::Buffer payload);
  asio::awaitable<common::nbd::Error> execute_read(const RequestHeader& request);
  common::nbd::Error execute_block_status(const RequestHeader& request);
  // The volume's metrics, on this worker's counters (no lock).
  void record(const RequestHeader& request, common::nbd::Error outcome, std::chrono::nanoseconds latency);

  void reply_ok(const RequestHeader& request);
  void reply_error(const RequestHeader& request, common::nbd::Error error, std::string_view message);
  common::nbd::Error reply_failure(const RequestHeader& request, int err, const char* operation);
  std::size_t cost(const RequestHeader& request) const;

  // True once the lease is broken; checked before every submission.
#ifdef BLOCKD_TEST_SKIP_FENCE
  bool fenced() const { return false; }  // TEST ONLY (CMake BLOCKD_TEST_SKIP_FENCE)
#else
  bool fenced() const { return fenced_ || (ticket_ && ticket_->fenced()); }
#endif
  void watch_fence();

  net::Socket& socket_;
  std::shared_ptr<storage::Volume> volume_;
  std::unique_ptr<lease::SessionTicket> ticket_;
  metrics::WorkerCounters& counters_;
  bool fenced_ = false;
  SessionTerms terms_;
  io::Ring& ring_;
  io::BufferPool& buffers_;
  std::string peer_;
  RequestReader requests_;
  ReplyWriter replies_;
  io::AsyncEvent request_finished_;
  asio::steady_timer linger_;
  std::size_t in_flight_ = 0;
  std::size_t in_flight_bytes_ = 0;
  bool draining_ = false;
  bool reading_ = true;
  SessionStats stats_;
};

}  // namespace blockd::server::nbd
