// ReplyWriter: the one writer of a connection's replies. Request coroutines queue
// replies in any order; run() gathers everything queued into one vectored write, so
// many small replies cost one system call (DESIGN.md §6). It waits on a RingEvent: the
// replies of the reads one ring pass completed are gathered and sent in that pass. The
// write is a sendmsg on the worker's io_uring ring, and the kernel finishes a large
// reply (a 1 MiB READ) by itself instead of waking us for every partial write.
//
// Once a write fails (the client went away), later replies are dropped: nothing is
// ever written to the socket after that, and the socket is closed only after run()
// has returned, so no reply can reach a reused file descriptor.
//
// Thread affinity: the connection's worker. Ownership: owned by the Session.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <deque>
#include <vector>

#include "server/io/async_event.h"
#include "server/io/ring_event.h"
#include "server/io/ring.h"
#include "server/nbd/reply.h"
#include "server/net/socket.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

class ReplyWriter {
 public:
  ReplyWriter(net::Socket& socket, io::Ring& ring);

  void send(Reply reply);
  // No more replies will be queued: run() returns once the queue is written.
  void finish();
  asio::awaitable<void> run();
  bool failed() const { return failed_; }
  bool finished() const { return done_; }
  asio::awaitable<void> wait_done();

 private:
  static constexpr std::size_t kMaxBatch = 64;  // at most 3 iovecs each: far below IOV_MAX

  void gather();
  // Writes every byte of iovecs_, or says why not.
  asio::awaitable<boost::system::error_code> write_batch();
  // What a short send left of iovecs_ (a kernel that does not retry short sends).
  std::vector<asio::const_buffer> unsent(std::size_t sent) const;

  net::Socket& socket_;
  io::Ring& ring_;
  std::deque<Reply> queue_;
  std::vector<Reply> batch_;
  std::vector<iovec> iovecs_;
  std::size_t batch_bytes_ = 0;
  msghdr message_{};
  io::RingEvent ready_;  // resumed inside the ring's pass that queued the reply
  io::AsyncEvent done_event_;
  bool finishing_ = false;
  bool failed_ = false;
  bool done_ = false;
};

}  // namespace blockd::server::nbd
