// Across a restart: generations only go up, the previous holder keeps its lease for the
// grace period, and a failed persist changes nothing.
#include <gtest/gtest.h>

#include "server/lease/lease_error.h"
#include "server/lease/lease_manager.h"
#include "tests/unit/lease/lease_test_support.h"

namespace blockd::server::lease::testing {
namespace {

TEST_F(LeaseTest, GenerationsAreMonotonicAcrossARestart) {
  admit_ok("db", "node-a").reset();
  manager->release("db", "node-a");
  admit_ok("db", "node-b").reset();
  manager->begin_break("db", std::nullopt);
  EXPECT_EQ(store.generations["db"], 3u);

  restart();
  auto c = admit_ok("db", "node-c");
  EXPECT_EQ(c->generation(), 4u);
  c.reset();
  restart();
  EXPECT_EQ(manager->show("db").generation, 4u);
}

TEST_F(LeaseTest, GenerationsStartFromTheStore) {
  store.generations["db"] = 41;
  restart();
  EXPECT_EQ(manager->show("db").generation, 41u);
  EXPECT_EQ(admit_ok("db", "node-a")->generation(), 42u);
}

TEST_F(LeaseTest, ThePreviousHolderKeepsItsLeaseForTheGracePeriod) {
  store.generations["db"] = 7;
  store.writers["db"] = "node-a";
  restart({{"db", "node-a", LeaseMode::kReadWrite}});

  clock.advance(10s);
  const Refusal refusal = admit_refused("db", "node-b");
  EXPECT_EQ(refusal.code, RefusalCode::kRestartGrace);
  EXPECT_EQ(refusal.message,
            "volume \"db\" is reserved for \"node-a\" (generation 7), its holder before blockd restarted, for 1m50s "
            "more; break the lease with: blockctl lease break db");
  EXPECT_TRUE(manager->show("db").holders.at(0).restart_grace);

  auto a = admit_ok("db", "node-a");
  EXPECT_EQ(a->generation(), 7u) << "the same holder continues under its generation";
  EXPECT_TRUE(store.persisted.empty());
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
}

TEST_F(LeaseTest, RestartGraceEndsAndOthersAreAdmitted) {
  store.generations["db"] = 7;
  restart({{"db", "node-a", LeaseMode::kReadWrite}});
  clock.advance(119s);
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kRestartGrace);
  clock.advance(1s);
  auto b = admit_ok("db", "node-b");
  EXPECT_EQ(b->generation(), 8u);
}

TEST_F(LeaseTest, RestartGraceCanBeBroken) {
  restart({{"db", "node-a", LeaseMode::kReadWrite}});
  const BreakStart start = manager->begin_break("db", std::string("node-b"));
  EXPECT_TRUE(start.finished);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
  EXPECT_EQ(admit_refused("db", "node-a").code, RefusalCode::kBrokenHolder);
}

TEST_F(LeaseTest, PreviousReadersShareTheRestartGrace) {
  restart({{"db", "node-a", LeaseMode::kReadOnly}, {"db", "node-b", LeaseMode::kReadOnly}});
  EXPECT_EQ(manager->show("db").state, LeaseState::kRead);
  EXPECT_EQ(admit_refused("db", "node-c", LeaseMode::kReadWrite, kRwoRox).code, RefusalCode::kSharedByReaders);
  EXPECT_NE(admit_ok("db", "node-c", LeaseMode::kReadOnly, kRwoRox), nullptr);
}

TEST_F(LeaseTest, ASecondPreviousWriterForOneVolumeIsIgnored) {
  restart({{"db", "node-a", LeaseMode::kReadWrite}, {"db", "node-b", LeaseMode::kReadWrite}});
  const LeaseInfo info = manager->show("db");
  ASSERT_EQ(info.holders.size(), 1u);
  EXPECT_EQ(info.holders[0].holder, "node-a");
}

TEST_F(LeaseTest, AFailedPersistChangesNothing) {
  store.fail_persist = true;
  const Refusal refusal = admit_refused("db", "node-a");
  EXPECT_EQ(refusal.code, RefusalCode::kInternal);
  EXPECT_NE(refusal.message.find("No space left on device"), std::string::npos) << refusal.message;
  LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.state, LeaseState::kFree);
  EXPECT_EQ(info.generation, 0u);

  try {
    manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo);
    FAIL() << "acquired without persisting";
  } catch (const LeaseError& error) {
    EXPECT_EQ(error.code(), LeaseErrorCode::kInternal);
  }
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);

  store.fail_persist = false;
  EXPECT_EQ(admit_ok("db", "node-a")->generation(), 1u);
}

TEST_F(LeaseTest, AFailedPersistDoesNotDisturbTheCurrentHolder) {
  admit_ok("db", "node-a").reset();
  clock.advance(120s);
  store.fail_persist = true;
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kInternal);
  store.fail_persist = false;
  auto b = admit_ok("db", "node-b");
  EXPECT_EQ(b->generation(), 2u);
}

TEST_F(LeaseTest, ReadersNeedNoPersist) {
  store.fail_persist = true;
  EXPECT_NE(admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwoRox), nullptr);
}

TEST_F(LeaseTest, AStoreThatCannotLoadRefusesAndRecovers) {
  store.fail_load = true;
  EXPECT_EQ(admit_refused("db", "node-a").code, RefusalCode::kInternal);
  store.fail_load = false;
  EXPECT_NE(admit_ok("db", "node-a"), nullptr);
  EXPECT_EQ(store.loads, 2);  // once failed, once for good; then cached
  admit_ok("db", "node-a");
  EXPECT_EQ(store.loads, 2);
}

}  // namespace
}  // namespace blockd::server::lease::testing
