// client::IoctlNbd against a fake seam for open/ioctl/close and a fake sysfs in a temp
// dir: the exact ioctl sequence of a setup (all on one thread that is not the caller's,
// NBD_DO_IT last), the first free device when none is asked for, errors with the
// kernel's errno, NBD_DISCONNECT ending NBD_DO_IT, a device that ends by itself, and
// reconfigure refused. Also the interface choice (client/nbd_interface.h).
#include <gtest/gtest.h>
#include <linux/nbd.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/ioctl_nbd.h"
#include "client/nbd_interface.h"

namespace blockd::client {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct Call {
  std::string what;  // "open /dev/nbd1", "NBD_SET_SOCK", "close"
  unsigned long arg = 0;
  int fd = -1;
  std::thread::id thread;
};

// The kernel as the ioctls see it: NBD_DO_IT creates /sys/block/nbdN/pid and blocks until
// NBD_DISCONNECT or NBD_CLEAR_SOCK (or end_device()), then removes it.
class FakeCalls : public NbdDeviceCalls {
 public:
  explicit FakeCalls(std::string sys) : sys_(std::move(sys)) {}

  int open(const std::string& path) override {
    std::lock_guard lock(m_);
    calls_.push_back({"open " + path, 0, -1, std::this_thread::get_id()});
    if (auto f = failures_.find("open"); f != failures_.end()) {
      const int e = f->second;
      failures_.erase(f);
      return e;
    }
    const int fd = next_fd_++;
    fd_index_[fd] = static_cast<std::uint32_t>(std::stoul(path.substr(path.rfind("nbd") + 3)));
    open_.insert(fd);
    return fd;
  }

  int ioctl(int fd, unsigned long request, unsigned long arg) override {
    std::unique_lock lock(m_);
    const std::string name = ioctl_name(request);
    calls_.push_back({name, arg, fd, std::this_thread::get_id()});
    if (auto f = failures_.find(name); f != failures_.end()) {
      const int e = f->second;
      failures_.erase(f);
      return e;
    }
    if (request == NBD_DO_IT) {
      const std::string dir = sys_ + "/nbd" + std::to_string(fd_index_[fd]);
      std::ofstream(dir + "/pid") << 4242 << "\n";
      running_ = true;
      stop_ = false;
      cv_.notify_all();
      cv_.wait(lock, [this] { return stop_; });
      ::unlink((dir + "/pid").c_str());
      running_ = false;
      return do_it_result_;
    }
    if (request == NBD_DISCONNECT && !ignore_disconnect_) {
      stop_ = true;
      cv_.notify_all();
    }
    if (request == NBD_CLEAR_SOCK) {
      stop_ = true;
      cv_.notify_all();
    }
    return 0;
  }

  void close(int fd) override {
    std::lock_guard lock(m_);
    calls_.push_back({"close", 0, fd, std::this_thread::get_id()});
    open_.erase(fd);
  }

  // Every connection died: NBD_DO_IT returns `result` (0, or -ETIMEDOUT).
  void end_device(int result = 0) {
    std::lock_guard lock(m_);
    do_it_result_ = result;
    stop_ = true;
    cv_.notify_all();
  }
  void fail(const std::string& call, int error) {
    std::lock_guard lock(m_);
    failures_[call] = -error;
  }
  std::vector<Call> calls() {
    std::lock_guard lock(m_);
    return calls_;
  }
  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& c : calls()) out.push_back(c.what);
    return out;
  }
  std::set<int> open_fds() {
    std::lock_guard lock(m_);
    return open_;
  }
  void ignore_disconnect() {
    std::lock_guard lock(m_);
    ignore_disconnect_ = true;
  }

 private:
  std::string sys_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::map<std::string, int> failures_;
  std::map<int, std::uint32_t> fd_index_;
  std::set<int> open_;
  int next_fd_ = 100;
  bool running_ = false;
  bool stop_ = false;
  bool ignore_disconnect_ = false;
  int do_it_result_ = 0;
};

bool readable(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
}

struct IoctlNbdTest : ::testing::Test {
  fs::path root;
  std::string sys, dev;

  void SetUp() override {
    char tmpl[] = "/tmp/ioctl-nbd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
    sys = (root / "sys").string();
    dev = (root / "dev").string();
    fs::create_directories(dev);
    for (int i : {0, 1, 2, 10}) fs::create_directories(sys + "/nbd" + std::to_string(i));
    fs::create_directories(sys + "/sda");  // not ours
  }
  void TearDown() override { fs::remove_all(root); }

  void connected(int index) { std::ofstream(sys + "/nbd" + std::to_string(index) + "/pid") << "77\n"; }

  NbdConnectRequest request() const {
    NbdConnectRequest r;
    r.size_bytes = 256ULL << 20;
    r.block_size = 4096;
    r.server_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
    r.timeout = 7s;
    r.socket_fds = {11, 12};
    return r;
  }
};

TEST_F(IoctlNbdTest, SysfsListsDevicesInNumericOrderAndFreeOnesByPid) {
  EXPECT_EQ(list_nbd_devices(sys), (std::vector<std::uint32_t>{0, 1, 2, 10}));
  connected(0);
  connected(2);
  EXPECT_EQ(free_nbd_devices(sys), (std::vector<std::uint32_t>{1, 10}));
  const auto all = sysfs_nbd_status(sys, std::nullopt);
  ASSERT_EQ(all.size(), 4U);
  EXPECT_TRUE(all[0].connected);
  EXPECT_FALSE(all[1].connected);
  const auto one = sysfs_nbd_status(sys, 2);
  ASSERT_EQ(one.size(), 1U);
  EXPECT_TRUE(one[0].connected);
  EXPECT_TRUE(sysfs_nbd_status(sys, 5).empty());
  EXPECT_TRUE(list_nbd_devices(sys + "/absent").empty());
}

TEST_F(IoctlNbdTest, SetupIsOneThreadOfIoctlsEndingInDoIt) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  connected(0);  // busy: the first free one is nbd1
  EXPECT_EQ(kernel.connect(request()), 1U);
  EXPECT_FALSE(kernel.ended());
  EXPECT_EQ(kernel.status(1).at(0).connected, true);

  const auto c = calls.calls();
  ASSERT_EQ(c.size(), 8U);
  EXPECT_EQ(c[0].what, "open " + dev + "/nbd1");
  EXPECT_EQ(c[1].what, "NBD_SET_BLKSIZE");
  EXPECT_EQ(c[1].arg, 4096U);
  EXPECT_EQ(c[2].what, "NBD_SET_SIZE");
  EXPECT_EQ(c[2].arg, 256UL << 20);
  EXPECT_EQ(c[3].what, "NBD_SET_TIMEOUT");
  EXPECT_EQ(c[3].arg, 7U);
  EXPECT_EQ(c[4].what, "NBD_SET_FLAGS");
  EXPECT_EQ(c[4].arg, static_cast<unsigned long>(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN));
  EXPECT_EQ(c[5].what, "NBD_SET_SOCK");
  EXPECT_EQ(c[5].arg, 11U);
  EXPECT_EQ(c[6].what, "NBD_SET_SOCK");
  EXPECT_EQ(c[6].arg, 12U);
  EXPECT_EQ(c[7].what, "NBD_DO_IT");
  // The kernel wants every NBD_SET_SOCK from the task that set the device up, and
  // NBD_DO_IT blocks: all of it on one thread that is not the caller's.
  for (const auto& call : c) {
    EXPECT_EQ(call.thread, c[0].thread) << call.what;
    EXPECT_NE(call.thread, std::this_thread::get_id()) << call.what;
  }

  kernel.disconnect(1);
  EXPECT_TRUE(kernel.ended());
  EXPECT_TRUE(kernel.disconnect_requested());
  EXPECT_EQ(kernel.end_error(), 0);
  EXPECT_TRUE(readable(kernel.ended_fd(), 0ms));
  const auto names = calls.names();
  // Ours: NBD_DISCONNECT on a second descriptor; the device thread clears and closes its own.
  EXPECT_NE(std::find(names.begin(), names.end(), "NBD_DISCONNECT"), names.end());
  EXPECT_EQ(std::count(names.begin(), names.end(), "NBD_CLEAR_SOCK"), 1);
  EXPECT_TRUE(calls.open_fds().empty());
  EXPECT_FALSE(kernel.status(1).at(0).connected);
  kernel.disconnect(1);  // ended already: nothing more
  EXPECT_EQ(calls.names().size(), names.size());
}

TEST_F(IoctlNbdTest, AskedForDeviceIsUsedAsIs) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  auto r = request();
  r.index = 10;
  EXPECT_EQ(kernel.connect(r), 10U);
  EXPECT_EQ(calls.calls().at(0).what, "open " + dev + "/nbd10");
}

TEST_F(IoctlNbdTest, NoFreeDevice) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  for (int i : {0, 1, 2, 10}) connected(i);
  try {
    kernel.connect(request());
    FAIL() << "connected";
  } catch (const KernelNbdError& e) {
    EXPECT_EQ(e.error(), ENOSPC);
    EXPECT_NE(std::string(e.what()).find("no free nbd device"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(calls.calls().empty());
}

TEST_F(IoctlNbdTest, BusyAtSetSockTriesTheNextFreeDevice) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  calls.fail("NBD_SET_SOCK", EBUSY);  // someone took nbd0 between our look and our socket
  EXPECT_EQ(kernel.connect(request()), 1U);
  const auto names = calls.names();
  EXPECT_EQ(names.at(0), "open " + dev + "/nbd0");
  // The refused device is not cleared: it may be someone else's.
  EXPECT_EQ(names.at(6), "close");
  EXPECT_EQ(names.at(7), "open " + dev + "/nbd1");
  EXPECT_EQ(std::count(names.begin(), names.begin() + 7, "NBD_CLEAR_SOCK"), 0);
}

TEST_F(IoctlNbdTest, ErrorsKeepTheErrnoAndSayWhatItMeans) {
  {
    FakeCalls calls(sys);
    IoctlNbd kernel(calls, {dev, sys});
    calls.fail("NBD_SET_BLKSIZE", EINVAL);
    auto r = request();
    r.index = 2;
    try {
      kernel.connect(r);
      FAIL();
    } catch (const KernelNbdError& e) {
      EXPECT_EQ(e.error(), EINVAL);
      EXPECT_NE(std::string(e.what()).find("NBD_SET_BLKSIZE /dev/nbd2"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("netlink"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(calls.open_fds().empty());
    EXPECT_FALSE(kernel.ended_fd() < 0);
  }
  {
    FakeCalls calls(sys);
    IoctlNbd kernel(calls, {dev, sys});
    calls.fail("open", EPERM);
    auto r = request();
    r.index = 0;
    try {
      kernel.connect(r);
      FAIL();
    } catch (const KernelNbdError& e) {
      EXPECT_EQ(e.error(), EPERM);
      EXPECT_NE(std::string(e.what()).find("CAP_SYS_ADMIN"), std::string::npos) << e.what();
    }
  }
  {
    // NBD_DO_IT refused at once (several connections without CAN_MULTI_CONN, say).
    FakeCalls calls(sys);
    IoctlNbd kernel(calls, {dev, sys});
    auto r = request();
    r.index = 0;
    calls.fail("NBD_DO_IT", EINVAL);
    try {
      kernel.connect(r);
      FAIL();
    } catch (const KernelNbdError& e) {
      EXPECT_EQ(e.error(), EINVAL);
      EXPECT_NE(std::string(e.what()).find("CAN_MULTI_CONN"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(calls.open_fds().empty());
  }
  EXPECT_NE(explain_ioctl_error("NBD_SET_SOCK", EBUSY, 3).find("/dev/nbd3 is busy"), std::string::npos);
  EXPECT_NE(explain_ioctl_error("open", ENXIO, 20).find("nbds_max"), std::string::npos);
}

TEST_F(IoctlNbdTest, DeviceThatEndsByItselfSignalsTheEventfd) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  EXPECT_EQ(kernel.connect(request()), 0U);
  EXPECT_FALSE(readable(kernel.ended_fd(), 0ms));
  calls.end_device(-ETIMEDOUT);  // the last connection timed out
  EXPECT_TRUE(readable(kernel.ended_fd(), 5000ms));
  EXPECT_TRUE(kernel.ended());
  EXPECT_FALSE(kernel.disconnect_requested());
  EXPECT_EQ(kernel.end_error(), ETIMEDOUT);
  // NBD_DO_IT returned: the device thread cleared the sockets and closed its descriptor.
  const auto names = calls.names();
  EXPECT_EQ(names.at(names.size() - 2), "NBD_CLEAR_SOCK");
  EXPECT_EQ(names.back(), "close");
  EXPECT_TRUE(calls.open_fds().empty());
}

TEST_F(IoctlNbdTest, DisconnectFallsBackToClearSockWhenTheServerDoesNotClose) {
  FakeCalls calls(sys);
  calls.ignore_disconnect();  // NBD_CMD_DISC went out, the connections stay open
  IoctlNbd kernel(calls, {dev, sys}, 15s, 100ms);
  kernel.connect(request());
  kernel.disconnect(0);
  EXPECT_TRUE(kernel.ended());
  const auto names = calls.names();
  EXPECT_EQ(std::count(names.begin(), names.end(), "NBD_CLEAR_SOCK"), 2);  // ours, then the thread's
}

TEST_F(IoctlNbdTest, OtherDevicesAreDisconnectedLikeNbdClientDoes) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  kernel.disconnect(2);
  EXPECT_EQ(calls.names(), (std::vector<std::string>{"open " + dev + "/nbd2", "NBD_DISCONNECT", "NBD_CLEAR_SOCK",
                                                     "close"}));
}

TEST_F(IoctlNbdTest, ReconfigureIsNotPossible) {
  FakeCalls calls(sys);
  IoctlNbd kernel(calls, {dev, sys});
  try {
    kernel.reconfigure(0, {5}, "nbd://x/y");
    FAIL();
  } catch (const KernelNbdError& e) {
    EXPECT_EQ(e.error(), ENOTSUP);
  }
}

TEST_F(IoctlNbdTest, DestroyingARunningDeviceDisconnectsIt) {
  FakeCalls calls(sys);
  {
    IoctlNbd kernel(calls, {dev, sys});
    kernel.connect(request());
  }
  const auto names = calls.names();
  EXPECT_NE(std::find(names.begin(), names.end(), "NBD_DISCONNECT"), names.end());
  EXPECT_TRUE(calls.open_fds().empty());
}

TEST(NbdInterface, Parses) {
  EXPECT_EQ(parse_nbd_interface("auto"), NbdInterface::kAuto);
  EXPECT_EQ(parse_nbd_interface("netlink"), NbdInterface::kNetlink);
  EXPECT_EQ(parse_nbd_interface("ioctl"), NbdInterface::kIoctl);
  EXPECT_FALSE(parse_nbd_interface("IOCTL").has_value());
  EXPECT_FALSE(parse_nbd_interface("").has_value());
  EXPECT_STREQ(to_string(NbdInterface::kIoctl), "ioctl");
  EXPECT_STREQ(to_string(NbdInterface::kNetlink), "netlink");
}

TEST(NbdInterface, AutoTakesNetlinkWhenTheFamilyResolvesElseIoctl) {
  auto c = choose_nbd_interface(NbdInterface::kAuto, true);
  EXPECT_EQ(c.chosen, NbdInterface::kNetlink);
  EXPECT_NE(c.log.find("netlink"), std::string::npos);
  c = choose_nbd_interface(NbdInterface::kAuto, false);
  EXPECT_EQ(c.chosen, NbdInterface::kIoctl);
  EXPECT_NE(c.log.find("absent"), std::string::npos) << c.log;
  EXPECT_NE(c.log.find("cannot be replaced"), std::string::npos) << c.log;
}

TEST(NbdInterface, ForcedIoctlEvenWithNetlinkAndForcedNetlinkWithout) {
  auto c = choose_nbd_interface(NbdInterface::kIoctl, true);
  EXPECT_EQ(c.chosen, NbdInterface::kIoctl);
  EXPECT_NE(c.log.find("as asked"), std::string::npos) << c.log;
  EXPECT_EQ(choose_nbd_interface(NbdInterface::kIoctl, false).chosen, NbdInterface::kIoctl);
  EXPECT_EQ(choose_nbd_interface(NbdInterface::kNetlink, true).chosen, NbdInterface::kNetlink);
  try {
    choose_nbd_interface(NbdInterface::kNetlink, false);
    FAIL();
  } catch (const KernelNbdError& e) {
    EXPECT_EQ(e.error(), ENOTSUP);
    EXPECT_NE(std::string(e.what()).find("--interface ioctl"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace blockd::client
