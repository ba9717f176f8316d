// LeaseManager's admission rules and lease lifetimes, on a FakeClock: grant, join,
// refusal, read-only sharing, grace, expiry, acquire/renew/release.
#include "server/lease/lease_manager.h"

#include <gtest/gtest.h>

#include "server/lease/lease_error.h"
#include "tests/unit/lease/lease_test_support.h"

namespace blockd::server::lease::testing {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

LeaseErrorCode error_code_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const LeaseError& error) {
    return error.code();
  }
  ADD_FAILURE() << "no LeaseError";
  return LeaseErrorCode::kInternal;
}

TEST_F(LeaseTest, FirstWriterIsGrantedUnderANewPersistedGeneration) {
  auto ticket = admit_ok("db", "node-a");
  EXPECT_EQ(ticket->generation(), 1u);
  EXPECT_EQ(ticket->holder(), "node-a");
  EXPECT_EQ(ticket->volume(), "db");
  EXPECT_TRUE(ticket->writable());
  EXPECT_FALSE(ticket->fenced());
  ASSERT_EQ(store.persisted.size(), 1u);
  EXPECT_EQ(store.persisted[0].generation, 1u);
  EXPECT_EQ(store.persisted[0].writer, "node-a");

  const LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.state, LeaseState::kWrite);
  EXPECT_EQ(info.generation, 1u);
  ASSERT_EQ(info.holders.size(), 1u);
  EXPECT_EQ(info.holders[0].holder, "node-a");
  EXPECT_EQ(info.holders[0].connections, 1);
  EXPECT_FALSE(info.holders[0].expires_at.has_value());  // connected: no expiry
}

TEST_F(LeaseTest, SameHolderJoinsWithEveryConnection) {
  // Kernel multi-conn: nbd-client -C 4.
  std::vector<std::unique_ptr<SessionTicket>> tickets;
  for (int i = 0; i < 4; ++i) tickets.push_back(admit_ok("db", "node-a"));
  for (const auto& ticket : tickets) EXPECT_EQ(ticket->generation(), 1u);
  EXPECT_EQ(store.persisted.size(), 1u) << "a join must not bump the generation";
  EXPECT_EQ(manager->show("db").holders.at(0).connections, 4);
  tickets.pop_back();
  EXPECT_EQ(manager->show("db").holders.at(0).connections, 3);
}

TEST_F(LeaseTest, OtherWriterIsRefusedWithHolderAndDuration) {
  auto ticket = admit_ok("db", "node-a");
  clock.advance(3min + 12s);
  const Refusal refusal = admit_refused("db", "node-b");
  EXPECT_EQ(refusal.code, RefusalCode::kHeldForWriting);
  EXPECT_EQ(refusal.message,
            "volume \"db\" is held for writing by \"node-a\" (generation 1, for 3m12s, 1 connection); "
            "break the lease with: blockctl lease break db");
  EXPECT_EQ(store.persisted.size(), 1u);
}

TEST_F(LeaseTest, VolumesAreIndependent) {
  auto a = admit_ok("db", "node-a");
  auto b = admit_ok("logs", "node-b");
  EXPECT_EQ(b->generation(), 1u);
  EXPECT_EQ(manager->list().size(), 2u);
}

TEST_F(LeaseTest, ReadersShareAVolumeThatAllowsReadOnlyMany) {
  auto a = admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwoRox);
  auto b = admit_ok("db", "node-b", LeaseMode::kReadOnly, kRwoRox);
  auto b2 = admit_ok("db", "node-b", LeaseMode::kReadOnly, kRwoRox);
  EXPECT_FALSE(a->writable());
  EXPECT_EQ(a->mode(), LeaseMode::kReadOnly);
  const LeaseInfo info = manager->show("db");
  EXPECT_EQ(info.state, LeaseState::kRead);
  ASSERT_EQ(info.holders.size(), 2u);
  EXPECT_EQ(info.holders[1].connections, 2);
  EXPECT_TRUE(store.persisted.empty()) << "readers need no fencing token";
}

TEST_F(LeaseTest, WriterIsRefusedWhileReadersExist) {
  auto a = admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwoRox);
  auto b = admit_ok("db", "node-b", LeaseMode::kReadOnly, kRwoRox);
  clock.advance(4min + 2s);
  const Refusal refusal = admit_refused("db", "node-c", LeaseMode::kReadWrite, kRwoRox);
  EXPECT_EQ(refusal.code, RefusalCode::kSharedByReaders);
  EXPECT_TRUE(contains(refusal.message, "shared read-only by \"node-a\", \"node-b\"")) << refusal.message;
  EXPECT_TRUE(contains(refusal.message, "for 4m2s")) << refusal.message;
  EXPECT_TRUE(contains(refusal.message, "a writer is admitted only when no reader holds it")) << refusal.message;
}

TEST_F(LeaseTest, AReaderCannotUpgradeItsOwnReadLease) {
  auto a = admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwoRox);
  EXPECT_EQ(admit_refused("db", "node-a", LeaseMode::kReadWrite, kRwoRox).code, RefusalCode::kSharedByReaders);
}

TEST_F(LeaseTest, ReaderIsRefusedWhileAWriterHolds) {
  auto a = admit_ok("db", "node-a", LeaseMode::kReadWrite, kRwoRox);
  const Refusal refusal = admit_refused("db", "node-b", LeaseMode::kReadOnly, kRwoRox);
  EXPECT_EQ(refusal.code, RefusalCode::kHeldForWriting);
  EXPECT_TRUE(contains(refusal.message, "\"node-a\"")) << refusal.message;
  EXPECT_TRUE(contains(refusal.message, "readers are admitted only while no writer holds it")) << refusal.message;
}

TEST_F(LeaseTest, TheWriterMayOpenReadOnlySessions) {
  auto writer = admit_ok("db", "node-a");
  auto reader = admit_ok("db", "node-a", LeaseMode::kReadOnly, kRwo);
  EXPECT_FALSE(reader->writable());
  EXPECT_EQ(reader->generation(), 1u);
  EXPECT_EQ(manager->show("db").holders.at(0).connections, 2);
}

TEST_F(LeaseTest, ModesTheVolumeDoesNotAllowAreRefused) {
  Refusal refusal = admit_refused("db", "node-a", LeaseMode::kReadOnly, kRwo);
  EXPECT_EQ(refusal.code, RefusalCode::kModeNotAllowed);
  EXPECT_TRUE(contains(refusal.message, "its access modes: ReadWriteOnce; connect without mode=ro")) << refusal.message;
  refusal = admit_refused("db", "node-a", LeaseMode::kReadWrite, kRox);
  EXPECT_EQ(refusal.code, RefusalCode::kModeNotAllowed);
  EXPECT_TRUE(contains(refusal.message, "its access modes: ReadOnlyMany; connect with mode=ro")) << refusal.message;
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
}

TEST_F(LeaseTest, InvalidHolderIsRefused) {
  EXPECT_EQ(admit_refused("db", "").code, RefusalCode::kInvalidHolder);
  EXPECT_EQ(admit_refused("db", "a b").code, RefusalCode::kInvalidHolder);
}

TEST_F(LeaseTest, GraceAfterTheLastConnectionKeepsTheLeaseForItsHolderOnly) {
  auto a1 = admit_ok("db", "node-a");
  auto a2 = admit_ok("db", "node-a");
  a1.reset();
  clock.advance(10min);
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);  // still connected: no grace yet
  a2.reset();
  clock.advance(119s);
  const Refusal refusal = admit_refused("db", "node-b");
  EXPECT_EQ(refusal.code, RefusalCode::kHeldForWriting);
  EXPECT_TRUE(contains(refusal.message, "no connection, kept for its reconnect for 1s more")) << refusal.message;
  const LeaseInfo info = manager->show("db");
  ASSERT_TRUE(info.holders.at(0).expires_in.has_value());
  EXPECT_EQ(*info.holders.at(0).expires_in, 1s);

  // The holder reconnects within its grace: same lease, same generation.
  auto again = admit_ok("db", "node-a");
  EXPECT_EQ(again->generation(), 1u);
  EXPECT_EQ(store.persisted.size(), 1u);
}

TEST_F(LeaseTest, TheLeaseExpiresWhenTheGraceRunsOut) {
  admit_ok("db", "node-a").reset();
  clock.advance(120s);
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
  auto b = admit_ok("db", "node-b");
  EXPECT_EQ(b->generation(), 2u);
  EXPECT_EQ(store.writers["db"], "node-b");
}

TEST_F(LeaseTest, EachLastCloseStartsAFreshGrace) {
  admit_ok("db", "node-a").reset();
  clock.advance(100s);
  admit_ok("db", "node-a").reset();
  clock.advance(100s);  // 200 s after the first close, 100 s after the second
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
  clock.advance(20s);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
}

TEST_F(LeaseTest, ExpireDueDropsLeasesThatRanOut) {
  admit_ok("db", "node-a").reset();
  clock.advance(121s);
  manager->expire_due();
  const auto all = manager->list();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, LeaseState::kFree);
  EXPECT_EQ(all[0].generation, 1u);
}

TEST_F(LeaseTest, AcquireHoldsWithoutAConnectionForItsTtl) {
  const LeaseInfo info = manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo, 30s);
  EXPECT_EQ(info.state, LeaseState::kWrite);
  EXPECT_EQ(info.generation, 1u);
  EXPECT_EQ(info.holders.at(0).connections, 0);
  EXPECT_EQ(info.holders.at(0).expires_in, 30s);
  clock.advance(29s);
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
  auto joined = admit_ok("db", "node-a");  // the acquirer's own connection joins it
  EXPECT_EQ(joined->generation(), 1u);
  joined.reset();
  clock.advance(120s);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
}

TEST_F(LeaseTest, AcquireDefaultsToTheGracePeriod) {
  manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo);
  EXPECT_EQ(manager->show("db").holders.at(0).expires_in, 120s);
}

TEST_F(LeaseTest, AcquireIsRefusedWhileAnotherHolds) {
  auto a = admit_ok("db", "node-a");
  try {
    manager->acquire("db", "node-b", LeaseMode::kReadWrite, kRwo, 30s);
    FAIL() << "acquired a held volume";
  } catch (const LeaseError& error) {
    EXPECT_EQ(error.code(), LeaseErrorCode::kFailedPrecondition);
    EXPECT_TRUE(contains(error.what(), "held for writing by \"node-a\"")) << error.what();
  }
  EXPECT_EQ(error_code_of([&] { manager->acquire("db", "node-c", LeaseMode::kReadWrite, kRwo, -1s); }),
            LeaseErrorCode::kInvalidArgument);
  EXPECT_EQ(error_code_of([&] { manager->acquire("db", "bad holder", LeaseMode::kReadWrite, kRwo); }),
            LeaseErrorCode::kInvalidArgument);
}

TEST_F(LeaseTest, RenewExtendsTheLease) {
  manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo, 30s);
  clock.advance(20s);
  const LeaseInfo info = manager->renew("db", "node-a", 30s);
  EXPECT_EQ(info.holders.at(0).expires_in, 30s);
  clock.advance(20s);  // 40 s after acquire: past the first TTL
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
  clock.advance(10s);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
  EXPECT_EQ(store.persisted.size(), 2u) << "a renewal is not a change of holder";
}

TEST_F(LeaseTest, RenewOfALeaseThatRanOutOrIsNotYoursIsNotFound) {
  manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo, 30s);
  try {
    manager->renew("db", "node-b");
    FAIL() << "renewed someone else's lease";
  } catch (const LeaseError& error) {
    EXPECT_EQ(error.code(), LeaseErrorCode::kNotFound);
    EXPECT_TRUE(contains(error.what(), "\"node-b\" holds no lease on volume \"db\"")) << error.what();
    EXPECT_TRUE(contains(error.what(), "\"node-a\"")) << error.what();
  }
  clock.advance(30s);
  EXPECT_EQ(error_code_of([&] { manager->renew("db", "node-a"); }), LeaseErrorCode::kNotFound);
}

TEST_F(LeaseTest, ReleaseWithoutConnectionsFreesAtOnce) {
  manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo, 1h);
  EXPECT_EQ(manager->release("db", "node-a").state, LeaseState::kFree);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
  EXPECT_EQ(error_code_of([&] { manager->release("db", "node-a"); }), LeaseErrorCode::kNotFound);
}

TEST_F(LeaseTest, ReleaseWhileConnectedEndsWithTheLastConnectionWithoutGrace) {
  auto a = admit_ok("db", "node-a");
  const LeaseInfo info = manager->release("db", "node-a");
  EXPECT_EQ(info.state, LeaseState::kWrite);
  EXPECT_TRUE(info.holders.at(0).released);
  EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
  a.reset();
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
  EXPECT_NE(admit_ok("db", "node-b"), nullptr);
}

TEST_F(LeaseTest, BusyReasonNamesTheHolder) {
  EXPECT_FALSE(manager->busy_reason("db").has_value());
  auto a = admit_ok("db", "node-a");
  const auto reason = manager->busy_reason("db");
  ASSERT_TRUE(reason.has_value());
  EXPECT_TRUE(contains(*reason, "\"node-a\"")) << *reason;
  EXPECT_FALSE(manager->forget("db"));
  a.reset();
  clock.advance(120s);
  EXPECT_TRUE(manager->forget("db"));
  EXPECT_TRUE(manager->list().empty());
}

TEST_F(LeaseTest, RepeatedRefusalsStillRefuse) {
  // The refusal log is rate-limited; the refusals themselves never are.
  auto a = admit_ok("db", "node-a");
  for (int i = 0; i < 50; ++i) EXPECT_EQ(admit_refused("db", "node-b").code, RefusalCode::kHeldForWriting);
}

TEST_F(LeaseTest, ProbeAnswersAsAdmitWouldWithoutGranting) {
  EXPECT_FALSE(manager->probe("db", "node-a", LeaseMode::kReadWrite, kRwo).has_value());
  EXPECT_EQ(manager->show("db").state, LeaseState::kFree);
  EXPECT_TRUE(store.persisted.empty());
  auto a = admit_ok("db", "node-a");
  EXPECT_FALSE(manager->probe("db", "node-a", LeaseMode::kReadWrite, kRwo).has_value());
  const auto refusal = manager->probe("db", "node-b", LeaseMode::kReadWrite, kRwo);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->message, admit_refused("db", "node-b").message);
  EXPECT_EQ(manager->probe("db", "node-b", LeaseMode::kReadOnly, kRwo)->code, RefusalCode::kModeNotAllowed);
}

TEST_F(LeaseTest, AStoreThatCannotLoadFailsControlCallsWithLeaseError) {
  store.fail_load = true;
  EXPECT_EQ(error_code_of([&] { manager->show("db"); }), LeaseErrorCode::kInternal);
  EXPECT_EQ(error_code_of([&] { manager->acquire("db", "node-a", LeaseMode::kReadWrite, kRwo); }),
            LeaseErrorCode::kInternal);
  EXPECT_EQ(error_code_of([&] { manager->begin_break("db", std::nullopt); }), LeaseErrorCode::kInternal);
  EXPECT_EQ(manager->probe("db", "node-a", LeaseMode::kReadWrite, kRwo)->code, RefusalCode::kInternal);
  EXPECT_TRUE(manager->list().empty());
}

}  // namespace
}  // namespace blockd::server::lease::testing
