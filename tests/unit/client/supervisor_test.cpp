// client::Supervisor against a fake kernel seam, a scripted connector and renewer, and
// a fake clock (time points passed in): link dead -> reconnect with backoff ->
// NBD_CMD_RECONFIGURE; a refusal because the lease was broken -> NBD_CMD_DISCONNECT for
// good; renewals on schedule.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "client/control_error.h"
#include "client/kernel_nbd.h"
#include "client/nbd_error.h"
#include "client/supervisor.h"

namespace blockd::client {
namespace {

using namespace std::chrono_literals;
using State = Supervisor::State;

class FakeKernel : public KernelNbd {
 public:
  std::uint32_t connect(const NbdConnectRequest&) override { return 0; }
  void reconfigure(std::uint32_t index, const std::vector<int>& fds, const std::string& backend) override {
    reconfigured.push_back(index);
    EXPECT_EQ(backend, "nbd://127.0.0.1:10809/disk?holder=node-a");
    if (dead == 0) throw KernelNbdError("no dead connection", ENOSPC);
    dead -= static_cast<int>(fds.size());
  }
  void disconnect(std::uint32_t index) override { disconnected.push_back(index); }
  std::vector<NbdDeviceStatus> status(std::optional<std::uint32_t>) override { return {}; }

  int dead = 0;  // what the kernel knows
  std::vector<std::uint32_t> reconfigured;
  std::vector<std::uint32_t> disconnected;
};

common::UniqueFd a_socket() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  return common::UniqueFd(sv[0]);
}

struct SupervisorTest : ::testing::Test {
  using TimePoint = Supervisor::TimePoint;
  TimePoint t0 = TimePoint(std::chrono::hours(1000));
  FakeKernel kernel;
  // Each connect attempt pops an outcome: "" connects, anything else is thrown.
  std::deque<std::string> connects;
  int connect_calls = 0;
  std::deque<std::string> renewals;  // "" succeeds
  int renew_calls = 0;
  std::vector<std::string> logs;

  Supervisor make(int connections = 2, bool renew = true, bool replace_connections = true) {
    Supervisor::Options o;
    o.index = 0;
    o.connections = connections;
    o.replace_connections = replace_connections;
    o.backend = "nbd://127.0.0.1:10809/disk?holder=node-a";
    o.renew = renew;
    o.renew_interval = 20s;
    o.backoff_initial = 100ms;
    o.backoff_max = 800ms;
    return Supervisor(
        o, kernel,
        [this] {
          ++connect_calls;
          std::string outcome = connects.empty() ? "" : connects.front();
          if (!connects.empty()) connects.pop_front();
          if (!outcome.empty()) throw NbdError(outcome);
          return a_socket();
        },
        [this] {
          ++renew_calls;
          std::string outcome = renewals.empty() ? "" : renewals.front();
          if (!renewals.empty()) renewals.pop_front();
          if (!outcome.empty()) throw ControlError("conflict", outcome, 409);
        },
        [this](std::string_view line) { logs.emplace_back(line); }, t0);
  }
};

TEST_F(SupervisorTest, LinkDeadIsRepairedWithReconfigure) {
  Supervisor s = make();
  kernel.dead = 1;
  s.on_link_dead(t0 + 1s);
  EXPECT_EQ(s.state(), State::kReconnecting);
  s.tick(t0 + 1s);
  EXPECT_EQ(s.state(), State::kAttached);
  EXPECT_EQ(kernel.reconfigured, std::vector<std::uint32_t>{0});
  EXPECT_EQ(kernel.dead, 0);
  EXPECT_EQ(s.reconnects(), 1);
  EXPECT_TRUE(kernel.disconnected.empty());
}

TEST_F(SupervisorTest, ServerDownBacksOffThenBothSocketsAreReplaced) {
  Supervisor s = make();
  kernel.dead = 2;
  s.on_link_dead(t0);
  s.on_link_dead(t0);
  const std::string refused = "cannot connect to the NBD server at nbd://127.0.0.1:10809: Connection refused";
  connects = {refused, refused, refused, refused, refused};
  auto next = s.tick(t0);
  EXPECT_EQ(next, t0 + 100ms);  // first backoff
  EXPECT_EQ(s.tick(t0 + 50ms), t0 + 100ms);  // not due: no attempt
  EXPECT_EQ(connect_calls, 1);
  next = s.tick(t0 + 100ms);
  EXPECT_EQ(next, t0 + 300ms);  // doubled
  next = s.tick(next);
  EXPECT_EQ(next, t0 + 700ms);
  next = s.tick(next);
  EXPECT_EQ(next, t0 + 1500ms);
  next = s.tick(next);
  EXPECT_EQ(next, t0 + 2300ms);  // capped at 800 ms
  EXPECT_EQ(s.state(), State::kReconnecting);
  s.tick(next);  // blockd is back: both dead sockets replaced in one go
  EXPECT_EQ(s.state(), State::kAttached);
  EXPECT_EQ(kernel.reconfigured.size(), 2U);
  EXPECT_EQ(kernel.dead, 0);
  EXPECT_TRUE(kernel.disconnected.empty());
}

TEST_F(SupervisorTest, ExtraNotificationEndsAtEnospc) {
  Supervisor s = make();
  kernel.dead = 1;
  s.on_link_dead(t0);
  s.on_link_dead(t0);  // the kernel only has one dead socket
  s.tick(t0);
  EXPECT_EQ(s.state(), State::kAttached);
  EXPECT_EQ(kernel.reconfigured.size(), 2U);  // the second got ENOSPC
  EXPECT_EQ(s.reconnects(), 1);
}

TEST_F(SupervisorTest, RefusedBecauseBrokenDisconnectsForGood) {
  Supervisor s = make();
  kernel.dead = 2;
  s.on_link_dead(t0);
  connects = {"the NBD server refused export \"disk?holder=node-a\": NBD_REP_ERR_POLICY (policy): the lease of "
              "\"node-a\" on volume \"disk\" was broken (now generation 3)"};
  s.tick(t0);
  EXPECT_EQ(s.state(), State::kBroken);
  EXPECT_NE(s.reason().find("was broken"), std::string::npos);
  EXPECT_EQ(kernel.disconnected, std::vector<std::uint32_t>{0});
  EXPECT_TRUE(kernel.reconfigured.empty());
  // Final: more deaths, ticks and renewal times change nothing.
  s.on_link_dead(t0 + 1s);
  s.tick(t0 + 1h);
  EXPECT_EQ(connect_calls, 1);
  EXPECT_EQ(renew_calls, 0);
  EXPECT_EQ(kernel.disconnected.size(), 1U);
  s.detach();  // already disconnected: no second NBD_CMD_DISCONNECT
  EXPECT_EQ(kernel.disconnected.size(), 1U);
}

TEST_F(SupervisorTest, BreakStillDrainingIsRetriedThenFinal) {
  Supervisor s = make();
  kernel.dead = 2;
  s.on_link_dead(t0);
  connects = {"NBD_REP_ERR_POLICY (refused by policy): the lease on volume \"disk\" is being broken; try again shortly",
              "NBD_REP_ERR_POLICY (refused by policy): the lease of \"node-a\" on volume \"disk\" was broken"};
  const auto next = s.tick(t0);
  EXPECT_EQ(s.state(), State::kReconnecting);
  EXPECT_TRUE(kernel.disconnected.empty());
  s.tick(next);
  EXPECT_EQ(s.state(), State::kBroken);
  EXPECT_EQ(kernel.disconnected, std::vector<std::uint32_t>{0});
}

TEST_F(SupervisorTest, RenewsOnScheduleAndRetriesSoonAfterAFailure) {
  Supervisor s = make();
  EXPECT_EQ(s.tick(t0), t0 + 20s);
  EXPECT_EQ(renew_calls, 0);
  EXPECT_EQ(s.tick(t0 + 20s), t0 + 40s);
  EXPECT_EQ(renew_calls, 1);
  renewals = {"cannot connect to unix:///run/blockd/control.sock: Connection refused"};
  EXPECT_EQ(s.tick(t0 + 40s), t0 + 45s);  // retried after 5 s, not 20
  EXPECT_EQ(s.state(), State::kAttached);
  EXPECT_EQ(s.tick(t0 + 45s), t0 + 65s);
  EXPECT_EQ(renew_calls, 3);
}

TEST_F(SupervisorTest, RenewalRefusedBecauseBrokenDisconnects) {
  Supervisor s = make();
  renewals = {"the lease of \"node-a\" on volume \"disk\" was broken"};
  s.tick(t0 + 20s);
  EXPECT_EQ(s.state(), State::kBroken);
  EXPECT_EQ(kernel.disconnected, std::vector<std::uint32_t>{0});
}

TEST_F(SupervisorTest, WithoutControlApiNoRenewals) {
  Supervisor s = make(1, false);
  s.tick(t0 + 1h);
  EXPECT_EQ(renew_calls, 0);
}

TEST_F(SupervisorTest, DetachDisconnects) {
  Supervisor s = make();
  s.detach();
  EXPECT_EQ(s.state(), State::kDetached);
  EXPECT_EQ(kernel.disconnected, std::vector<std::uint32_t>{0});
}

TEST(SupervisorClassify, Refusals) {
  EXPECT_TRUE(Supervisor::is_lease_refusal("refused export \"d\": NBD_REP_ERR_POLICY (x): held by node-b"));
  EXPECT_FALSE(Supervisor::is_lease_refusal("Connection refused"));
  EXPECT_FALSE(Supervisor::is_lease_refusal(
      "NBD_REP_ERR_POLICY (refused by policy): the lease on volume \"disk\" is being broken (generation 2, waiting "
      "for 1 connection(s) of the old holder to close); try again shortly"));
  EXPECT_TRUE(Supervisor::is_broken_lease("the lease of \"a\" on volume \"d\" was broken"));
  EXPECT_FALSE(Supervisor::is_broken_lease("volume \"d\" does not exist"));
}

// The ioctl interface: nothing can be replaced.
TEST_F(SupervisorTest, IoctlLinkDeadIsOnlyLogged) {
  Supervisor s = make(2, true, false);
  s.on_link_dead(t0);
  EXPECT_EQ(s.state(), State::kAttached);
  EXPECT_EQ(s.dead_connections(), 1);
  s.tick(t0 + 1s);
  EXPECT_EQ(connect_calls, 0);
  EXPECT_TRUE(kernel.reconfigured.empty());
  EXPECT_NE(logs.back().find("cannot replace"), std::string::npos) << logs.back();
}

TEST_F(SupervisorTest, IoctlDeviceEndedWithServerDownIsFailedAndFinal) {
  Supervisor s = make(2, true, false);
  connects = {"cannot connect to the NBD server at nbd://127.0.0.1:10809: Connection refused"};
  s.on_device_ended(t0);
  EXPECT_EQ(s.state(), State::kFailed);
  EXPECT_EQ(connect_calls, 1);  // one probe, no retries
  EXPECT_NE(s.reason().find("Connection refused"), std::string::npos) << s.reason();
  EXPECT_NE(s.reason().find("ioctl interface cannot"), std::string::npos) << s.reason();
  EXPECT_EQ(s.tick(t0 + 1h), t0 + 2h);  // final: no renewals
  EXPECT_EQ(renew_calls, 0);
  s.on_link_dead(t0 + 1h);
  s.on_device_ended(t0 + 1h);
  EXPECT_EQ(connect_calls, 1);
  s.detach();  // the kernel ended the device itself: no NBD_DISCONNECT
  EXPECT_TRUE(kernel.disconnected.empty());
  EXPECT_EQ(s.state(), State::kDetached);
}

TEST_F(SupervisorTest, IoctlDeviceEndedWithServerBackIsStillFailed) {
  Supervisor s = make(1, true, false);
  s.on_device_ended(t0);  // the probe connects
  EXPECT_EQ(s.state(), State::kFailed);
  EXPECT_NE(s.reason().find("reachable again"), std::string::npos) << s.reason();
}

TEST_F(SupervisorTest, IoctlDeviceEndedByABreakIsBroken) {
  for (const char* refusal :
       {"NBD_REP_ERR_POLICY (refused by policy): the lease of \"node-a\" on volume \"disk\" was broken",
        "NBD_REP_ERR_POLICY (refused by policy): the lease on volume \"disk\" is being broken; try again shortly"}) {
    Supervisor s = make(2, true, false);
    connects = {refusal};
    s.on_device_ended(t0);
    EXPECT_EQ(s.state(), State::kBroken) << refusal;
    EXPECT_EQ(s.reason(), refusal);
    EXPECT_TRUE(kernel.disconnected.empty());
  }
  EXPECT_STREQ(to_string(State::kFailed), "failed");
}

}  // namespace
}  // namespace blockd::client
