// AsyncEvent: lets coroutines on one strand wait until another coroutine says
// "something changed". Waiters re-check their condition in a loop, so a
// notification with nobody waiting is harmless:
//     while (!condition) co_await event.wait();
//
// Thread affinity: one io_context thread (a worker); not thread-safe.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace blockd::server::io {

namespace asio = boost::asio;

class AsyncEvent {
 public:
  explicit AsyncEvent(const asio::any_io_executor& executor)
      : timer_(executor, asio::steady_timer::time_point::max()) {}

  asio::awaitable<void> wait() {
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  void notify_all() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

}  // namespace blockd::server::io
