// Many threads against one LeaseManager, as workers and the control thread will use it:
// admissions, closes, breaks, acquires and a moving clock. The invariant checked at every
// admission is single-writer itself: no other holder has a live session at that moment,
// and generations never go backwards. (It also gives ThreadSanitizer something to chew
// on in a -fsanitize=thread build.)
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "server/lease/lease_error.h"
#include "server/lease/lease_manager.h"
#include "tests/unit/lease/lease_test_support.h"

namespace blockd::server::lease::testing {
namespace {

class LiveSessions {
 public:
  // Called right after an admission; fails the test if another holder is still live.
  void opened(const SessionTicket& ticket) {
    std::lock_guard lock(mutex_);
    for (const auto& [id, holder] : live_) {
      EXPECT_EQ(holder, ticket.holder()) << "two writers at once on generation " << ticket.generation();
    }
    EXPECT_GE(ticket.generation(), highest_generation_);
    highest_generation_ = std::max(highest_generation_, ticket.generation());
    live_.insert({ticket.id(), ticket.holder()});
  }
  // Called right before the ticket is destroyed.
  void closing(const SessionTicket& ticket) {
    std::lock_guard lock(mutex_);
    live_.erase({ticket.id(), ticket.holder()});
  }

 private:
  std::mutex mutex_;
  std::set<std::pair<std::uint64_t, std::string>> live_;
  std::uint64_t highest_generation_ = 0;
};

void worker(LeaseManager& manager, LiveSessions& live, const std::string& holder, unsigned seed,
            std::atomic<int>& admissions, const std::atomic<bool>& done) {
  std::mt19937 random(seed);
  std::vector<std::unique_ptr<SessionTicket>> mine;
  while (!done.load()) {
    // A fenced session is closed promptly, as the server's fence handler will do.
    for (auto it = mine.begin(); it != mine.end();) {
      if ((*it)->fenced() || random() % 8 == 0) {
        live.closing(**it);
        it = mine.erase(it);
      } else {
        ++it;
      }
    }
    AdmitResult result = manager.admit("db", holder, LeaseMode::kReadWrite, kRwo);
    if (result.admitted()) {
      live.opened(*result.ticket);
      mine.push_back(std::move(result.ticket));
      ++admissions;
    } else if (result.refusal.code == RefusalCode::kBrokenHolder) {
      try {
        manager.acquire("db", holder, LeaseMode::kReadWrite, kRwo, std::chrono::seconds(1));
      } catch (const LeaseError&) {
        // Someone else holds it now: fine.
      }
    }
  }
  for (auto& ticket : mine) live.closing(*ticket);
}

TEST_F(LeaseTest, ConcurrentUseKeepsOneWriter) {
  LiveSessions live;
  std::atomic<int> admissions{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> workers;
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back(worker, std::ref(*manager), std::ref(live), "node-" + std::to_string(i), 1000u + i,
                         std::ref(admissions), std::cref(done));
  }
  // The control thread: a fixed number of breaks (each one must finish, which needs the
  // workers to close their fenced sessions), with the clock moving in between.
  constexpr int kBreaks = 100;
  int breaks = 0;
  std::mt19937 random(7);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (breaks < kBreaks && std::chrono::steady_clock::now() < deadline) {
    clock.advance(std::chrono::seconds(random() % 60));
    try {
      std::optional<std::string> to;
      if (random() % 2 == 0) to = "node-" + std::to_string(random() % 4);
      manager->begin_break("db", to);
      ++breaks;
    } catch (const LeaseError&) {
      // The previous break is still draining.
    }
    (void)manager->list();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  done = true;
  for (auto& thread : workers) thread.join();
  EXPECT_EQ(breaks, kBreaks);
  EXPECT_GT(admissions.load(), kBreaks);
  EXPECT_GE(store.persisted.size(), static_cast<std::size_t>(kBreaks));
  EXPECT_EQ(manager->show("db").generation, store.generations["db"]);
}

}  // namespace
}  // namespace blockd::server::lease::testing
