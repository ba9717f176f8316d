// RingEvent (server/io/ring_event.h) on a real io_uring Ring and asio::io_context: a
// waiter woken by a coroutine the ring resumed runs, and submits, inside that same
// submit pass; a notification with nobody waiting is harmless; a waiter never woken is
// destroyed with the ring, and its RingEvent may outlive the ring.
#include "server/io/ring_event.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/unique_fd.h"
#include "server/io/ring.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
using blockd::common::UniqueFd;
using blockd::server::io::Ring;
using blockd::server::io::RingEvent;
using blockd::test::TempFile;

class RingEventTest : public testing::Test {
 protected:
  void SetUp() override {
    file_.resize(1 << 16);
    fd_.reset(::open(file_.path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid()) << std::strerror(errno);
  }

  // Runs handlers until `done` or 1000 of them have run; returns how many ran.
  int run_until(const bool& done) {
    int handlers = 0;
    while (!done && handlers < 1000 && context_.run_one() > 0) ++handlers;
    return handlers;
  }

  TempFile file_;
  UniqueFd fd_;
  asio::io_context context_;
  std::optional<Ring> ring_{std::in_place, context_, 8};  // destroyed before the io_context
};

struct Progress {
  bool woken = false;
  bool waiter_read_done = false;
  bool reader_done = false;
};

// Named coroutines with their parameters by value (DESIGN.md §6).
asio::awaitable<void> wait_then_read(RingEvent* event, Ring* ring, int fd, std::span<std::byte> buffer,
                                     Progress* progress) {
  co_await event->wait();
  progress->woken = true;
  EXPECT_EQ(co_await ring->read(fd, buffer, 4096), 4096);
  progress->waiter_read_done = true;
}

asio::awaitable<void> read_then_notify(RingEvent* event, Ring* ring, int fd, std::span<std::byte> buffer,
                                       Progress* progress) {
  EXPECT_EQ(co_await ring->read(fd, buffer, 0), 4096);
  event->notify();
  EXPECT_FALSE(progress->woken) << "resumed inside notify(), before the notifier went on";
  progress->reader_done = true;
}

// `held` lives as long as the frame: the test sees when the frame is gone.
asio::awaitable<void> wait_once(RingEvent* event, bool* woken, [[maybe_unused]] std::shared_ptr<int> held) {
  co_await event->wait();
  *woken = true;
}

TEST_F(RingEventTest, AWaiterWokenByACompletionRunsAndSubmitsInTheSamePass) {
  RingEvent event(*ring_);
  std::vector<std::byte> first(4096), second(4096);
  Progress progress;
  asio::co_spawn(context_, wait_then_read(&event, &*ring_, fd_.get(), second, &progress), asio::detached);
  asio::co_spawn(context_, read_then_notify(&event, &*ring_, fd_.get(), first, &progress), asio::detached);
  // Run handler by handler until the reader is done. In the handler that delivered its
  // read (a submit pass, or the eventfd's wake-up), the notified waiter must have been
  // resumed after the delivery and its own read submitted, not left to a later trip
  // through the scheduler (each costs an epoll_wait).
  int handlers = 0;
  while (!progress.reader_done && handlers < 1000 && context_.poll_one() > 0) ++handlers;
  ASSERT_TRUE(progress.reader_done);
  EXPECT_TRUE(progress.woken) << "the waiter runs in the pass that woke it";
  EXPECT_EQ(ring_->submissions(), 2U) << "and its read is submitted in that pass";
  run_until(progress.waiter_read_done);
  EXPECT_TRUE(progress.waiter_read_done);
}

TEST_F(RingEventTest, NotifyWithNobodyWaitingIsHarmless) {
  RingEvent event(*ring_);
  event.notify();  // nobody waits: lost, as the contract says
  bool woken = false;
  asio::co_spawn(context_, wait_once(&event, &woken, nullptr), asio::detached);
  context_.poll();
  EXPECT_FALSE(woken) << "an earlier notification must not satisfy a later wait";
  event.notify();
  event.notify();  // a second one while the first wake-up is pending: no double resume
  run_until(woken);
  EXPECT_TRUE(woken);
}

TEST_F(RingEventTest, AWaiterNeverWokenIsDestroyedWithTheRing) {
  auto event = std::make_unique<RingEvent>(*ring_);
  auto token = std::make_shared<int>(0);
  bool resumed = false;
  asio::co_spawn(context_, wait_once(event.get(), &resumed, token), asio::detached);
  context_.poll();
  ASSERT_EQ(token.use_count(), 2) << "the parked frame holds its capture";
  ring_.reset();
  // Asio unwinds a destroyed coroutine's stack through its executor.
  context_.restart();
  context_.poll();
  EXPECT_FALSE(resumed);
  EXPECT_EQ(token.use_count(), 1) << "the ring let go of the parked frame, which is gone";
  event.reset();  // outlives the ring: must not touch it (ASan would see it)
  event = nullptr;
}

}  // namespace
