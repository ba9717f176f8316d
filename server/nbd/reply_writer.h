// ReplyWriter: the one writer of a connection's replies. Request coroutines queue
// replies in any order; run() gathers everything queued into one vectored write, so
// many small replies cost one system call (DESIGN.md §6).
//
// Once a write fails (the client went away), later replies are dropped: nothing is
// ever written to the socket after that, and the socket is closed only after run()
// has returned, so no reply can reach a reused file descriptor.
//
// Thread affinity: the connection's worker. Ownership: owned by the Session.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <deque>
#include <vector>

#include "server/io/async_event.h"
#include "server/nbd/reply.h"
#include "server/net/socket.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

class ReplyWriter {
 public:
  explicit ReplyWriter(net::Socket& socket);

  void send(Reply reply);
  // No more replies will be queued: run() returns once the queue is written.
  void finish();
  asio::awaitable<void> run();
  bool failed() const { return failed_; }
  bool finished() const { return done_; }
  asio::awaitable<void> wait_done();

 private:
  static constexpr std::size_t kMaxBatch = 64;

  net::Socket& socket_;
  std::deque<Reply> queue_;
  std::vector<Reply> batch_;
  std::vector<asio::const_buffer> buffers_;
  io::AsyncEvent ready_;
  io::AsyncEvent done_event_;
  bool finishing_ = false;
  bool failed_ = false;
  bool done_ = false;
};

}  // namespace blockd::server::nbd
