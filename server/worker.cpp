#include "server/worker.h"

#include <sched.h>

#include <boost/asio/post.hpp>

#include "common/logging.h"
#include "server/net/connection.h"

namespace blockd::server {

Worker::Worker(unsigned index, unsigned ring_entries, std::chrono::microseconds busy_poll)
    : index_(index), ring_entries_(ring_entries), busy_poll_(busy_poll), work_(context_.get_executor()) {}

Worker::~Worker() { stop(); }

void Worker::start() {
  std::promise<void> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, &ready] { run(ready); });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

void Worker::run(std::promise<void>& ready) {
  try {
    ring_.emplace(context_, ring_entries_);
  } catch (...) {
    ready.set_exception(std::current_exception());
    return;
  }
  buffers_.register_with(&*ring_);
  ready.set_value();
  run_event_loop();
  buffers_.register_with(nullptr);
  ring_.reset();  // on the thread that owns it
}

void Worker::run_event_loop() {
  if (busy_poll_.count() == 0) {
    context_.run();
    return;
  }
  using Clock = std::chrono::steady_clock;
  auto last_work = Clock::now();
  // run_one() returns 0 only once the context is stopped (the work guard keeps it busy
  // until stop()), so neither branch can spin after shutdown.
  while (!context_.stopped()) {
    if (context_.poll() > 0) {
      last_work = Clock::now();
    } else if (Clock::now() - last_work >= busy_poll_) {
      context_.run_one();
      last_work = Clock::now();
    } else {
      // Nothing to do yet: let anything else runnable on this CPU (the client, an io-wq
      // writer) have it before the next poll, instead of taking a fair share of it.
      sched_yield();
    }
  }
}

void Worker::ping() {
  pings_sent_.fetch_add(1, std::memory_order_acq_rel);
  boost::asio::post(context_, [this] { pings_answered_.fetch_add(1, std::memory_order_acq_rel); });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  work_.reset();
  context_.stop();
  thread_.join();
}

void Worker::track(const std::shared_ptr<net::Connection>& connection) {
  live_.emplace(connection.get(), connection);
  connection_count_.fetch_add(1, std::memory_order_release);
  if (draining_) connection->drain();
}

void Worker::forget(net::Connection* connection) {
  if (live_.erase(connection) > 0) connection_count_.fetch_sub(1, std::memory_order_release);
}

void Worker::drain() {
  boost::asio::post(context_, [this] {
    draining_ = true;
    for (auto& [ptr, weak] : live_)
      if (auto connection = weak.lock()) connection->drain();
  });
}

void Worker::close_all() {
  boost::asio::post(context_, [this] {
    for (auto& [ptr, weak] : live_)
      if (auto connection = weak.lock()) connection->close();
  });
}

}  // namespace blockd::server
