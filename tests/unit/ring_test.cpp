// Ring (server/io/ring.h): a real io_uring instance driven by a real asio::io_context.
#include "server/io/ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include "common/unique_fd.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
using blockd::common::UniqueFd;
using blockd::server::io::Ring;
using blockd::test::pattern;
using blockd::test::run_coroutine;
using blockd::test::TempFile;

class RingTest : public testing::Test {
 protected:
  void SetUp() override {
    file_.resize(1 << 20);
    fd_.reset(::open(file_.path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid()) << std::strerror(errno);
  }

  int run(asio::awaitable<int> op) { return run_coroutine(context_, std::move(op)); }

  std::vector<std::byte> pread_bytes(std::size_t size, off_t offset) {
    std::vector<std::byte> out(size);
    EXPECT_EQ(::pread(fd_.get(), out.data(), size, offset), static_cast<ssize_t>(size));
    return out;
  }

  TempFile file_;
  UniqueFd fd_;
  asio::io_context context_;
  Ring ring_{context_, 8};  // destroyed before the io_context
};

TEST_F(RingTest, WriteThenReadAtOffsets) {
  for (std::uint64_t offset : {0ULL, 4096ULL, 12345ULL, (1ULL << 20) - 512}) {
    const auto data = pattern(512, static_cast<unsigned>(offset));
    EXPECT_EQ(run(ring_.write(fd_.get(), data, offset, 0)), 512) << offset;
    std::vector<std::byte> back(512);
    EXPECT_EQ(run(ring_.read(fd_.get(), back, offset)), 512) << offset;
    EXPECT_EQ(back, data) << offset;
    // What the ring wrote is what the file holds.
    EXPECT_EQ(pread_bytes(512, static_cast<off_t>(offset)), data) << offset;
  }
}

TEST_F(RingTest, LargeWriteAndRead) {
  const auto data = pattern(1 << 20, 3);
  EXPECT_EQ(run(ring_.write(fd_.get(), data, 0, 0)), 1 << 20);
  std::vector<std::byte> back(1 << 20);
  EXPECT_EQ(run(ring_.read(fd_.get(), back, 0)), 1 << 20);
  EXPECT_EQ(back, data);
}

TEST_F(RingTest, DsyncWrite) {
  const auto data = pattern(4096, 9);
  EXPECT_EQ(run(ring_.write(fd_.get(), data, 8192, RWF_DSYNC)), 4096);
  EXPECT_EQ(pread_bytes(4096, 8192), data);
}

TEST_F(RingTest, Fdatasync) {
  const auto data = pattern(4096, 2);
  EXPECT_EQ(run(ring_.write(fd_.get(), data, 0, 0)), 4096);
  EXPECT_EQ(run(ring_.fdatasync(fd_.get())), 0);
}

TEST_F(RingTest, FallocatePunchHoleMakesAHole) {
  const auto data = pattern(1 << 20, 4);
  ASSERT_EQ(run(ring_.write(fd_.get(), data, 0, 0)), 1 << 20);
  EXPECT_EQ(run(ring_.fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 65536)), 0);
  EXPECT_EQ(::lseek(fd_.get(), 0, SEEK_HOLE), 65536);
  EXPECT_EQ(::lseek(fd_.get(), 65536, SEEK_DATA), 131072);
  std::vector<std::byte> back(65536);
  ASSERT_EQ(run(ring_.read(fd_.get(), back, 65536)), 65536);
  EXPECT_TRUE(blockd::test::all_zero(back));
  struct stat st {};
  ASSERT_EQ(::fstat(fd_.get(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);  // KEEP_SIZE
}

TEST_F(RingTest, Fadvise) {
  EXPECT_EQ(run(ring_.fadvise(fd_.get(), 0, 1 << 20, POSIX_FADV_WILLNEED)), 0);
}

TEST_F(RingTest, ReadAtEndOfFileReturnsZero) {
  std::vector<std::byte> back(512);
  EXPECT_EQ(run(ring_.read(fd_.get(), back, 1 << 20)), 0);
}

TEST_F(RingTest, ErrorsAreNegativeErrno) {
  std::vector<std::byte> buf(512);
  EXPECT_EQ(run(ring_.read(-1, buf, 0)), -EBADF);
  EXPECT_EQ(run(ring_.write(-1, buf, 0, 0)), -EBADF);
  EXPECT_EQ(run(ring_.fdatasync(-1)), -EBADF);
  UniqueFd read_only(::open(file_.path().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only.valid());
  EXPECT_EQ(run(ring_.write(read_only.get(), buf, 0, 0)), -EBADF);
  EXPECT_EQ(run(ring_.fallocate(fd_.get(), 0xFFFF, 0, 4096)), -EOPNOTSUPP);
}

TEST_F(RingTest, RegisteredRegionIsReadAndWrittenWithFixedOps) {
  // 128 KiB of memory, the first 64 KiB registered; it outlives the ring below.
  std::vector<std::byte> memory(128 * 1024);
  Ring ring{context_, 8};
  ASSERT_TRUE(ring.register_buffer({memory.data(), 64 * 1024}));
  EXPECT_EQ(ring.registered_buffers(), 1U);

  // A span inside the region (not at its start) goes through WRITE_FIXED / READ_FIXED.
  const auto data = pattern(8192, 21);
  std::copy(data.begin(), data.end(), memory.begin() + 4096);
  EXPECT_EQ(run(ring.write(fd_.get(), {memory.data() + 4096, 8192}, 40960, 0)), 8192);
  EXPECT_EQ(ring.fixed_buffer_ios(), 1U);
  EXPECT_EQ(pread_bytes(8192, 40960), data);
  std::fill(memory.begin(), memory.end(), std::byte{0});
  EXPECT_EQ(run(ring.read(fd_.get(), {memory.data() + 16384, 8192}, 40960)), 8192);
  EXPECT_EQ(ring.fixed_buffer_ios(), 2U);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), memory.begin() + 16384));

  // A span that runs past the region's end, and one outside it: plain READ / WRITE.
  EXPECT_EQ(run(ring.read(fd_.get(), {memory.data() + 60 * 1024, 8192}, 40960)), 8192);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), memory.begin() + 60 * 1024));
  std::vector<std::byte> elsewhere(4096);
  EXPECT_EQ(run(ring.write(fd_.get(), elsewhere, 0, 0)), 4096);
  EXPECT_EQ(ring.fixed_buffer_ios(), 2U);
}

TEST_F(RingTest, RegistrationStopsAtTheSlotLimit) {
  std::vector<std::byte> memory(std::size_t{Ring::kMaxRegisteredBuffers + 1} * 4096);
  Ring ring{context_, 8};
  for (unsigned i = 0; i < Ring::kMaxRegisteredBuffers; ++i) {
    if (!ring.register_buffer({memory.data() + std::size_t{i} * 4096, 4096}))
      GTEST_SKIP() << "the kernel refused registered buffer " << i << " (RLIMIT_MEMLOCK?)";
  }
  EXPECT_FALSE(ring.register_buffer({memory.data() + std::size_t{Ring::kMaxRegisteredBuffers} * 4096, 4096}));
  EXPECT_EQ(ring.registered_buffers(), Ring::kMaxRegisteredBuffers);
  // The last slot is used, and the unregistered page still works the plain way.
  const auto data = pattern(4096, 5);
  auto last = memory.begin() + (Ring::kMaxRegisteredBuffers - 1) * 4096;
  std::copy(data.begin(), data.end(), last);
  EXPECT_EQ(run(ring.write(fd_.get(), {&*last, 4096}, 0, 0)), 4096);
  EXPECT_EQ(run(ring.read(fd_.get(), {memory.data() + std::size_t{Ring::kMaxRegisteredBuffers} * 4096, 4096}, 0)),
            4096);
  EXPECT_EQ(ring.fixed_buffer_ios(), 1U);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), memory.end() - 4096));
}

TEST_F(RingTest, CountsSubmissionsAndCompletions) {
  const auto before_sub = ring_.submissions();
  const auto before_comp = ring_.completions();
  std::vector<std::byte> buf(512);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(run(ring_.read(fd_.get(), buf, 0)), 512);
  EXPECT_EQ(ring_.submissions() - before_sub, 5U);
  EXPECT_EQ(ring_.completions() - before_comp, 5U);
}

TEST_F(RingTest, ManyMoreConcurrentOperationsThanRingEntries) {
  // 8 entries, 200 operations in flight at once: a full submission queue is handed
  // to the kernel and refilled; every operation completes with its own result.
  constexpr int kOps = 200;
  constexpr std::size_t kBlock = 4096;
  std::vector<std::vector<std::byte>> blocks;
  for (int i = 0; i < kOps; ++i) blocks.push_back(pattern(kBlock, static_cast<unsigned>(i) + 100));
  std::vector<int> write_results(kOps, -1), read_results(kOps, -1);
  std::vector<std::vector<std::byte>> back(kOps, std::vector<std::byte>(kBlock));
  int finished = 0;
  file_.resize(kOps * kBlock);
  for (int i = 0; i < kOps; ++i) {
    asio::co_spawn(
        context_,
        [&, i]() -> asio::awaitable<void> {
          const std::uint64_t offset = static_cast<std::uint64_t>(i) * kBlock;
          write_results[static_cast<std::size_t>(i)] =
              co_await ring_.write(fd_.get(), blocks[static_cast<std::size_t>(i)], offset, 0);
          read_results[static_cast<std::size_t>(i)] =
              co_await ring_.read(fd_.get(), back[static_cast<std::size_t>(i)], offset);
        },
        [&](std::exception_ptr e) {
          EXPECT_FALSE(e);
          if (++finished == kOps) context_.stop();
        });
  }
  context_.restart();
  context_.run_for(std::chrono::seconds(30));
  ASSERT_EQ(finished, kOps);
  for (std::size_t i = 0; i < kOps; ++i) {
    EXPECT_EQ(write_results[i], static_cast<int>(kBlock)) << i;
    EXPECT_EQ(read_results[i], static_cast<int>(kBlock)) << i;
    EXPECT_EQ(back[i], blocks[i]) << i;
  }
  EXPECT_EQ(ring_.submissions(), 2U * kOps);
  EXPECT_EQ(ring_.completions(), 2U * kOps);
}

TEST_F(RingTest, CompletionThatArrivesLaterWakesTheContext) {
  // A read from an empty pipe cannot complete at submission: its completion comes
  // through the eventfd once a timer writes to the pipe 50 ms later.
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  asio::steady_timer timer(context_, std::chrono::milliseconds(50));
  bool written = false;
  timer.async_wait([&](boost::system::error_code ec) {
    ASSERT_FALSE(ec);
    written = ::write(write_end.get(), "hello", 5) == 5;
  });
  std::vector<std::byte> buf(64);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run(ring_.read(read_end.get(), buf, 0)), 5);
  EXPECT_TRUE(written);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(45));
  EXPECT_EQ(std::memcmp(buf.data(), "hello", 5), 0);
}

TEST(RingSetup, ZeroEntriesThrowsSystemError) {
  asio::io_context context;
  EXPECT_THROW(Ring(context, 0), std::system_error);
}

TEST(RingSetup, SeveralRingsOnOneContext) {
  TempFile file;
  file.resize(4096);
  UniqueFd fd(::open(file.path().c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  asio::io_context context;
  Ring a(context, 4);
  Ring b(context, 4);
  const auto data = pattern(4096, 5);
  EXPECT_EQ(run_coroutine(context, a.write(fd.get(), data, 0, 0)), 4096);
  std::vector<std::byte> back(4096);
  EXPECT_EQ(run_coroutine(context, b.read(fd.get(), back, 0)), 4096);
  EXPECT_EQ(back, data);
}

}  // namespace
