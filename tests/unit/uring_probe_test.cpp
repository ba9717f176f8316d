// UringProbe::diagnose(): with fake kernel seams for every failure it explains, and
// against the real kernel (io_uring works on the test machine).
#include "server/io/uring_probe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <liburing.h>

#include <cerrno>
#include <set>
#include <string>

namespace {

using blockd::server::io::UringProbe;
using testing::HasSubstr;
using testing::Not;

// A kernel whose io_uring_setup fails with `err` and whose sysctl reads `sysctl`.
struct FakeKernel {
  int setup_result = 0;
  std::string sysctl;
  std::set<int> missing_opcodes;
  int init_calls = 0;
  int exit_calls = 0;
  int sysctl_reads = 0;
  unsigned entries = 0;

  UringProbe::Kernel seams() {
    UringProbe::Kernel k;
    k.queue_init = [this](unsigned n, io_uring*) {
      ++init_calls;
      entries = n;
      return setup_result;
    };
    k.has_opcode = [this](io_uring*, int opcode) { return missing_opcodes.count(opcode) == 0; };
    k.queue_exit = [this](io_uring*) { ++exit_calls; };
    k.io_uring_disabled_sysctl = [this] {
      ++sysctl_reads;
      return sysctl;
    };
    return k;
  }
};

TEST(UringProbe, EverythingPresentIsEmpty) {
  FakeKernel fake;
  EXPECT_EQ(UringProbe::diagnose(fake.seams()), "");
  EXPECT_EQ(fake.init_calls, 1);
  EXPECT_EQ(fake.exit_calls, 1);  // the probe ring is released
  EXPECT_GT(fake.entries, 0U);
}

TEST(UringProbe, EnosysSaysTheKernelLacksIoUring) {
  FakeKernel fake;
  fake.setup_result = -ENOSYS;
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("io_uring is not usable: io_uring_setup failed with Function not implemented"));
  EXPECT_THAT(message, HasSubstr("CONFIG_IO_URING=n"));
  EXPECT_THAT(message, HasSubstr("Linux 5.6 or newer"));
  EXPECT_EQ(fake.exit_calls, 0);  // nothing was set up, nothing to release
}

TEST(UringProbe, EpermWithSysctlNamesTheSysctl) {
  FakeKernel fake;
  fake.setup_result = -EPERM;
  fake.sysctl = "2";
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("failed with Operation not permitted"));
  EXPECT_THAT(message, HasSubstr("kernel.io_uring_disabled is 2"));
  EXPECT_THAT(message, HasSubstr("sysctl -w kernel.io_uring_disabled=0"));
  EXPECT_THAT(message, HasSubstr("kernel.io_uring_group"));
  EXPECT_THAT(message, Not(HasSubstr("seccomp")));
  EXPECT_EQ(fake.sysctl_reads, 1);
  EXPECT_EQ(fake.exit_calls, 0);
}

TEST(UringProbe, EpermWithSysctlOneAlsoNamesTheSysctl) {
  FakeKernel fake;
  fake.setup_result = -EPERM;
  fake.sysctl = "1";
  EXPECT_THAT(UringProbe::diagnose(fake.seams()), HasSubstr("kernel.io_uring_disabled is 1"));
}

TEST(UringProbe, EpermWithSysctlZeroBlamesSeccomp) {
  FakeKernel fake;
  fake.setup_result = -EPERM;
  fake.sysctl = "0";
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("failed with Operation not permitted"));
  EXPECT_THAT(message, HasSubstr("seccomp"));
  EXPECT_THAT(message, HasSubstr("io_uring_setup, io_uring_enter and io_uring_register"));
  EXPECT_THAT(message, Not(HasSubstr("io_uring_disabled is")));
}

TEST(UringProbe, EpermWithoutTheSysctlBlamesSeccomp) {
  // Kernels before 6.6 have no kernel.io_uring_disabled.
  FakeKernel fake;
  fake.setup_result = -EPERM;
  fake.sysctl = "";
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("seccomp"));
  EXPECT_THAT(message, Not(HasSubstr("io_uring_disabled is")));
}

TEST(UringProbe, EnomemNamesTheMemlockLimit) {
  FakeKernel fake;
  fake.setup_result = -ENOMEM;
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("failed with Cannot allocate memory"));
  EXPECT_THAT(message, HasSubstr("RLIMIT_MEMLOCK"));
  EXPECT_THAT(message, HasSubstr("ulimit -l"));
}

TEST(UringProbe, OtherErrorsPointAtTheKernelLog) {
  FakeKernel fake;
  fake.setup_result = -EINVAL;
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("io_uring is not usable: io_uring_setup failed with Invalid argument"));
  EXPECT_THAT(message, HasSubstr("dmesg"));
}

TEST(UringProbe, MissingOpcodeIsNamed) {
  FakeKernel fake;
  fake.missing_opcodes = {IORING_OP_FALLOCATE};
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_EQ(message,
            "io_uring is present but lacks operations blockd needs: IORING_OP_FALLOCATE (5.6). "
            "Run blockd on Linux 5.6 or newer.");
  EXPECT_EQ(fake.exit_calls, 1);
}

TEST(UringProbe, EveryMissingOpcodeIsNamed) {
  FakeKernel fake;
  fake.missing_opcodes = {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC, IORING_OP_FALLOCATE,
                          IORING_OP_FADVISE};
  const std::string message = UringProbe::diagnose(fake.seams());
  EXPECT_THAT(message, HasSubstr("IORING_OP_READ (5.6), IORING_OP_WRITE (5.6), IORING_OP_FSYNC (5.1), "
                                 "IORING_OP_FALLOCATE (5.6), IORING_OP_FADVISE (5.6)"));
  EXPECT_EQ(fake.exit_calls, 1);
}

TEST(UringProbe, OpcodesBlockdDoesNotUseAreNotRequired) {
  FakeKernel fake;
  fake.missing_opcodes = {IORING_OP_SEND, IORING_OP_RECV, IORING_OP_OPENAT};
  EXPECT_EQ(UringProbe::diagnose(fake.seams()), "");
}

TEST(UringProbe, RealKernelHasEverything) {
  EXPECT_EQ(UringProbe::diagnose(), "");
  EXPECT_EQ(UringProbe::diagnose(UringProbe::real_kernel()), "");
}

}  // namespace
