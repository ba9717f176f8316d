// Break (preempt-and-abort): fence and bump first, grant only after the old holder's
// sessions have closed, and never let a fenced holder back in by itself.
#include <gtest/gtest.h>

#include <atomic>

#include "server/lease/lease_error.h"
#include "server/lease/lease_manager.h"
#include "tests/unit/lease/lease_test_support.h"

namespace blockd::server::lease::testing {
namespace {

TEST_F(LeaseTest, BreakFencesTheOldSessionsBumpsTheGenerationAndGrantsAfterTheyClose) {
  auto a1 = admit_ok("db", "node-a");
  auto a2 = admit_ok("db", "node-a");
  int fence_calls = 0;
  a1->on_fenced([&] { ++fence_calls; });
  a2->on_fenced([&] { ++fence_calls; });
  int finished = 0;

  const BreakStart start = manager->begin_break("db", std::string("node-b"), [&] { ++finished; });
  EXPECT_EQ(start.generation, 2u);
  EXPECT_EQ(start.fenced_connections, 2);
  EXPECT_EQ(start.fenced_holders, std::vector<std::string>{"node-a"});
  EXPECT_FALSE(start.finished);
  EXPECT_EQ(store.generations["db"], 2u) << "persisted before the break took effect";
  EXPECT_EQ(store.writers["db"], "node-b");
  EXPECT_TRUE(a1->fenced());
  EXPECT_TRUE(a2->fenced());
  EXPECT_EQ(fence_calls, 2);

  // Nobody is admitted while the old sessions drain, not even the new holder.
  EXPECT_EQ(manager->show("db").state, LeaseState::kBreaking);
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kBreaking);
  EXPECT_EQ(admit_refused("db", "node-a").code, RefusalCode::kBreaking);
  EXPECT_EQ(admit_refused("db", "node-c", LeaseMode::kReadOnly, kRwoRox).code, RefusalCode::kBreaking);

  a1.reset();
  EXPECT_EQ(finished, 0);
  EXPECT_EQ(manager->show("db").fenced_connections, 1);
  a2.reset();
  EXPECT_EQ(finished, 1);

  const LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.state, LeaseState::kWrite);
  EXPECT_EQ(info.generation, 2u);
  EXPECT_EQ(info.holders.at(0).holder, "node-b");
  auto b = admit_ok("db", "node-b");
  EXPECT_EQ(b->generation(), 2u);
  EXPECT_EQ(store.persisted.size(), 2u);
}

TEST_F(LeaseTest, AFencedHolderIsNotReadmittedByItself) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::nullopt);
  a.reset();
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
  // A reconnecting kernel would replay the writes it had in flight: refuse it.
  const Refusal refusal = admit_refused("db", "node-a");
  EXPECT_EQ(refusal.code, RefusalCode::kBrokenHolder);
  EXPECT_NE(refusal.message.find("blockctl lease acquire db --holder node-a"), std::string::npos) << refusal.message;
  clock.advance(24h);
  EXPECT_EQ(admit_refused("db", "node-a").code, RefusalCode::kBrokenHolder);
  // Others may take the free volume, under a newer generation.
  auto c = admit_ok("db", "node-c");
  EXPECT_EQ(c->generation(), 3u);
}

TEST_F(LeaseTest, AnExplicitAcquireLiftsTheBar) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::nullopt);
  a.reset();
  const LeaseInfo info = manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo);
  EXPECT_EQ(info.generation, 3u);
  auto again = admit_ok("db", "node-a");
  EXPECT_EQ(again->generation(), 3u);
  EXPECT_FALSE(again->fenced());
}

TEST_F(LeaseTest, ABreakWithNothingOpenFinishesBeforeItReturns) {
  manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo, 1h);
  bool finished = false;
  const BreakStart start = manager->begin_break("db", std::string("node-b"), [&] { finished = true; }, 10s);
  EXPECT_TRUE(start.finished);
  EXPECT_TRUE(finished);
  EXPECT_EQ(start.fenced_connections, 0);
  const LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.holders.at(0).holder, "node-b");
  EXPECT_EQ(info.holders.at(0).expires_in, 10s);
  clock.advance(10s);
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
}

TEST_F(LeaseTest, ABreakOfAFreeVolumeStillBumpsTheGeneration) {
  const BreakStart start = manager->begin_break("db", std::nullopt);
  EXPECT_TRUE(start.finished);
  EXPECT_EQ(start.generation, 1u);
  EXPECT_TRUE(start.fenced_holders.empty());
  EXPECT_EQ(store.generations["db"], 1u);
}

TEST_F(LeaseTest, ABreakOfReadersFencesEveryReader) {
  auto a = admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwoRox);
  auto b = admit_ok("db", "node-b", LeaseMode::kReadOnly, kRwoRox);
  const BreakStart start = manager->begin_break("db", std::string("node-c"));
  EXPECT_EQ(start.fenced_holders.size(), 2u);
  EXPECT_TRUE(a->fenced());
  EXPECT_TRUE(b->fenced());
  a.reset();
  b.reset();
  auto c = admit_ok("db", "node-c", LeaseMode::kReadWrite, kRwoRox);
  EXPECT_EQ(c->generation(), start.generation);
}

TEST_F(LeaseTest, BreakingTheHolderInItsGraceFinishesAtOnce) {
  admit_ok("db", "node-a").reset();
  const BreakStart start = manager->begin_break("db", std::nullopt);
  EXPECT_TRUE(start.finished);
  EXPECT_EQ(start.fenced_holders, std::vector<std::string>{"node-a"});
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
}

TEST_F(LeaseTest, AHandlerRegisteredAfterTheBreakRunsAtOnce) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::nullopt);
  bool ran = false;
  a->on_fenced([&] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_TRUE(a->fenced());
}

TEST_F(LeaseTest, FenceHandlersRunWithoutTheLock) {
  // The server's handler posts to a worker, which may call the manager at once.
  auto a = admit_ok("db", "node-a");
  LeaseState seen = LeaseState::kFree;
  a->on_fenced([&] { seen = manager->show("db").state; });
  manager->begin_break("db", std::nullopt);
  EXPECT_EQ(seen, LeaseState::kBreaking);
}

TEST_F(LeaseTest, OnFinishedRunsWithoutTheLock) {
  auto a = admit_ok("db", "node-a");
  LeaseState seen = LeaseState::kBreaking;
  manager->begin_break("db", std::string("node-b"), [&] { seen = manager->show("db").state; });
  a.reset();
  EXPECT_EQ(seen, LeaseState::kWrite);
}

TEST_F(LeaseTest, OnlyOneBreakAtATime) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::string("node-b"));
  try {
    manager->begin_break("db", std::string("node-c"));
    FAIL() << "a second break started";
  } catch (const LeaseError& error) {
    EXPECT_EQ(error.code(), LeaseErrorCode::kFailedPrecondition);
  }
  EXPECT_EQ(store.generations["db"], 2u);
  a.reset();
  EXPECT_EQ(manager->show("db").holders.at(0).holder, "node-b");
}

TEST_F(LeaseTest, RenewAndReleaseAreRefusedDuringABreak) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::nullopt);
  EXPECT_THROW(manager->renew("db", "node-a"), LeaseError);
  EXPECT_THROW(manager->release("db", "node-a"), LeaseError);
  EXPECT_THROW(manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo), LeaseError);
}

TEST_F(LeaseTest, ABreakThatCannotPersistFencesNobody) {
  auto a = admit_ok("db", "node-a");
  store.fail_persist = true;
  try {
    manager->begin_break("db", std::string("node-b"));
    FAIL() << "broke without persisting";
  } catch (const LeaseError& error) {
    EXPECT_EQ(error.code(), LeaseErrorCode::kInternal);
    EXPECT_NE(std::string(error.what()).find("No space left on device"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(a->fenced());
  const LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.state, LeaseState::kWrite);
  EXPECT_EQ(info.generation, 1u);
  EXPECT_EQ(info.holders.at(0).holder, "node-a");
  EXPECT_NE(admit_ok("db", "node-a"), nullptr);
}

TEST_F(LeaseTest, BreakToAnInvalidHolderIsRefused) {
  EXPECT_THROW(manager->begin_break("db", std::string("no such/holder")), LeaseError);
  EXPECT_TRUE(store.persisted.empty());
}

TEST_F(LeaseTest, BreakToTheOldHolderResetsItsSessions) {
  auto a = admit_ok("db", "node-a");
  manager->begin_break("db", std::string("node-a"));
  EXPECT_TRUE(a->fenced());
  a.reset();
  auto again = admit_ok("db", "node-a");
  EXPECT_EQ(again->generation(), 2u);
  EXPECT_FALSE(again->fenced());
}

}  // namespace
}  // namespace blockd::server::lease::testing
