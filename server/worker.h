// Worker: one thread, one asio::io_context, one io_uring ring, one buffer pool
// (DESIGN.md §6). Every connection accepted for this worker lives on it for life, so
// the data path needs no locks.
//
// The ring is created on the worker's own thread: IORING_SETUP_SINGLE_ISSUER ties a
// ring to the thread that made it.
//
// Busy polling (--busy-poll-us): a worker that sleeps in epoll_wait as soon as it is
// idle pays a wake-up for nearly every request at low queue depth, and on a VM an idle
// vCPU's wake-up is tens of microseconds. With busy polling it keeps polling for a
// while after its last work, so the next request usually finds it awake. The price is
// CPU time: up to busy_poll of spinning after every burst. Between polls it yields, so
// a thread that needs that CPU (a client on the same node, the kernel worker doing a
// buffered write) gets it rather than waiting for the worker's time slice to end.
//
// Thread affinity: start()/stop()/drain() from the main thread; everything else on
// the worker thread.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>

#include "server/io/buffer_pool.h"
#include "server/io/ring.h"

namespace blockd::server {

namespace net {
class Connection;
}

class Worker {
 public:
  // busy_poll: how long the event loop keeps polling after work before it sleeps (0: off).
  Worker(unsigned index, unsigned ring_entries, std::chrono::microseconds busy_poll = {});
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // Starts the thread; throws when the ring cannot be created.
  void start();
  // Stops the event loop and joins the thread. Call after connections are gone.
  void stop();

  unsigned index() const { return index_; }
  boost::asio::io_context& context() { return context_; }
  io::Ring& ring() { return *ring_; }
  io::BufferPool& buffers() { return buffers_; }
  std::size_t connections() const { return connection_count_.load(std::memory_order_acquire); }
  bool draining() const { return draining_; }

  // Worker thread only: the connections living here.
  void track(const std::shared_ptr<net::Connection>& connection);
  void forget(net::Connection* connection);

  // Any thread: ask every connection to drain, or close them all now.
  void drain();
  void close_all();

  // Any thread: the watchdog's proof that this worker's event loop turns. ping() posts a
  // handler that counts; a stuck loop never runs it, so answered() stays behind sent().
  void ping();
  std::uint64_t pings_sent() const { return pings_sent_.load(std::memory_order_acquire); }
  std::uint64_t pings_answered() const { return pings_answered_.load(std::memory_order_acquire); }

 private:
  void run(std::promise<void>& ready);
  // context_.run(), or with busy polling, poll() in a loop until busy_poll_ has passed
  // without work, then one blocking run_one().
  void run_event_loop();

  const unsigned index_;
  const unsigned ring_entries_;
  const std::chrono::microseconds busy_poll_;
  // Declaration order is destruction order in reverse: buffers outlive the context
  // (whose destruction frees coroutine frames holding buffers) and the ring.
  io::BufferPool buffers_;
  boost::asio::io_context context_{1};
  std::optional<io::Ring> ring_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unordered_map<net::Connection*, std::weak_ptr<net::Connection>> live_;
  std::atomic<std::size_t> connection_count_{0};
  std::atomic<std::uint64_t> pings_sent_{0};
  std::atomic<std::uint64_t> pings_answered_{0};
  bool draining_ = false;
  std::thread thread_;
};

}  // namespace blockd::server
