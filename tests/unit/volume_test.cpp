// Volume (server/storage/volume.h): the durability rules of DESIGN.md §2 — read-only,
// FUA, flush-after-FUA for TRIM/WRITE_ZEROES, poisoning after a failed sync, and the
// test-only unsafe mode. A fake Backend stands in where a failing disk is needed; the
// rest runs on real backends and a real Ring.
#include "server/storage/volume.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "common/nbd_protocol.h"
#include "server/storage/memory_backend.h"
#include "server/storage/uring_file_backend.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
namespace wire = blockd::common::nbd;
using blockd::common::Errno;
using blockd::common::Result;
using blockd::server::io::Ring;
using blockd::server::storage::Backend;
using blockd::server::storage::Extent;
using blockd::server::storage::MemoryBackend;
using blockd::server::storage::UringFileBackend;
using blockd::server::storage::Volume;
using blockd::server::storage::ZeroMode;
using blockd::test::all_zero;
using blockd::test::pattern;
using blockd::test::run_coroutine;
using blockd::test::TempFile;

constexpr std::uint64_t kMiB = 1024 * 1024;

// A backend that does what it is told and counts what it was asked. Reads return a
// fixed byte so that a test can tell the read reached it.
class FakeBackend final : public Backend {
 public:
  struct Write {
    std::uint64_t offset;
    std::size_t size;
    bool durable;
  };
  struct Zero {
    std::uint64_t offset, length;
    ZeroMode mode;
    bool fast_only;
  };

  Result<void> read_result;
  Result<void> write_result;
  Result<void> flush_result;
  Result<void> trim_result;
  Result<void> zero_result;
  int reads = 0, flushes = 0, trims = 0, caches = 0, extent_calls = 0;
  std::vector<Write> writes;
  std::vector<Zero> zeroes;
  // The order of calls, to check that a flush follows the operation it covers.
  std::vector<std::string> log;

  std::uint64_t size() const override { return kMiB; }
  std::string describe() const override { return "fake"; }

  asio::awaitable<Result<void>> read(Ring&, std::span<std::byte> out, std::uint64_t) override {
    ++reads;
    log.push_back("read");
    for (auto& b : out) b = std::byte{0x42};
    co_return read_result;
  }
  asio::awaitable<Result<void>> write(Ring&, std::span<const std::byte> data, std::uint64_t offset,
                                      bool durable) override {
    writes.push_back({offset, data.size(), durable});
    log.push_back("write");
    co_return write_result;
  }
  asio::awaitable<Result<void>> flush(Ring&) override {
    ++flushes;
    log.push_back("flush");
    co_return flush_result;
  }
  asio::awaitable<Result<void>> trim(Ring&, std::uint64_t, std::uint64_t) override {
    ++trims;
    log.push_back("trim");
    co_return trim_result;
  }
  asio::awaitable<Result<void>> write_zeroes(Ring&, std::uint64_t offset, std::uint64_t length, ZeroMode mode,
                                             bool fast_only) override {
    zeroes.push_back({offset, length, mode, fast_only});
    log.push_back("zero");
    co_return zero_result;
  }
  asio::awaitable<Result<void>> cache(Ring&, std::uint64_t, std::uint64_t) override {
    ++caches;
    log.push_back("cache");
    co_return Result<void>{};
  }
  Result<std::vector<Extent>> extents(std::uint64_t, std::uint64_t length, std::size_t) override {
    ++extent_calls;
    return std::vector<Extent>{{length, 0}};
  }
};

class VolumeTest : public testing::Test {
 protected:
  void make(bool read_only = false, bool unsafe = false) {
    auto backend = std::make_unique<FakeBackend>();
    fake_ = backend.get();
    Volume::Options options;
    options.name = "vol";
    options.description = "a test volume";
    options.read_only = read_only;
    options.unsafe_ack_without_sync = unsafe;
    volume_ = std::make_unique<Volume>(options, std::move(backend));
  }

  Result<void> write(bool fua = false) {
    const std::vector<std::byte> data(4096, std::byte{1});
    return run_coroutine(context_, volume_->write(ring_, data, 8192, fua));
  }
  Result<void> flush() { return run_coroutine(context_, volume_->flush(ring_)); }
  Result<void> trim(bool fua = false) { return run_coroutine(context_, volume_->trim(ring_, 0, 4096, fua)); }
  Result<void> zero(bool fua = false, ZeroMode mode = ZeroMode::kMayTrim, bool fast_only = false) {
    return run_coroutine(context_, volume_->write_zeroes(ring_, 4096, 8192, mode, fast_only, fua));
  }
  Result<void> read(std::vector<std::byte>& out) { return run_coroutine(context_, volume_->read(ring_, out, 0)); }
  Result<void> cache() { return run_coroutine(context_, volume_->cache(ring_, 0, 4096)); }

  asio::io_context context_;
  Ring ring_{context_, 8};
  FakeBackend* fake_ = nullptr;  // owned by volume_
  std::unique_ptr<Volume> volume_;
};

// ---------------------------------------------------------------- basics

TEST_F(VolumeTest, Accessors) {
  make(true);
  EXPECT_EQ(volume_->name(), "vol");
  EXPECT_EQ(volume_->description(), "a test volume");
  EXPECT_EQ(volume_->size(), kMiB);
  EXPECT_TRUE(volume_->read_only());
  EXPECT_FALSE(volume_->poisoned());
  EXPECT_EQ(volume_->describe(), "fake");
  EXPECT_EQ(volume_->connections(), 0);
  volume_->connection_opened();
  volume_->connection_opened();
  volume_->connection_closed();
  EXPECT_EQ(volume_->connections(), 1);
}

TEST_F(VolumeTest, OperationsReachTheBackend) {
  make();
  EXPECT_TRUE(write().ok());
  EXPECT_TRUE(flush().ok());
  EXPECT_TRUE(trim().ok());
  EXPECT_TRUE(zero(false, ZeroMode::kNoHole, true).ok());
  EXPECT_TRUE(cache().ok());
  std::vector<std::byte> out(512);
  EXPECT_TRUE(read(out).ok());
  EXPECT_EQ(out[0], std::byte{0x42});
  auto extents = volume_->extents(0, 4096, 8);
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(fake_->log, (std::vector<std::string>{"write", "flush", "trim", "zero", "cache", "read"}));
  ASSERT_EQ(fake_->writes.size(), 1U);
  EXPECT_EQ(fake_->writes[0].offset, 8192U);
  EXPECT_EQ(fake_->writes[0].size, 4096U);
  ASSERT_EQ(fake_->zeroes.size(), 1U);
  EXPECT_EQ(fake_->zeroes[0].offset, 4096U);
  EXPECT_EQ(fake_->zeroes[0].length, 8192U);
  EXPECT_EQ(fake_->zeroes[0].mode, ZeroMode::kNoHole);
  EXPECT_TRUE(fake_->zeroes[0].fast_only);
  EXPECT_EQ(fake_->extent_calls, 1);
  EXPECT_FALSE(volume_->poisoned());
}

TEST_F(VolumeTest, BackendErrorsArePassedThrough) {
  make();
  fake_->write_result = Errno{ENOSPC};
  fake_->trim_result = Errno{EINVAL};
  fake_->zero_result = Errno{ENOTSUP};
  fake_->read_result = Errno{EIO};
  EXPECT_EQ(write().error(), ENOSPC);
  EXPECT_EQ(trim().error(), EINVAL);
  EXPECT_EQ(zero(false, ZeroMode::kNoHole, true).error(), ENOTSUP);
  std::vector<std::byte> out(512);
  EXPECT_EQ(read(out).error(), EIO);
  // None of those was a sync: the volume is healthy.
  EXPECT_FALSE(volume_->poisoned());
  EXPECT_TRUE(flush().ok());
}

// ---------------------------------------------------------------- read-only

TEST_F(VolumeTest, ReadOnlyRefusesWritesWithEperm) {
  make(true);
  EXPECT_EQ(write().error(), EPERM);
  EXPECT_EQ(write(true).error(), EPERM);
  EXPECT_EQ(trim().error(), EPERM);
  EXPECT_EQ(trim(true).error(), EPERM);
  EXPECT_EQ(zero().error(), EPERM);
  EXPECT_EQ(zero(true).error(), EPERM);
  // The backend never saw them.
  EXPECT_TRUE(fake_->writes.empty());
  EXPECT_EQ(fake_->trims, 0);
  EXPECT_TRUE(fake_->zeroes.empty());
  EXPECT_EQ(fake_->flushes, 0);
}

TEST_F(VolumeTest, ReadOnlyStillReadsFlushesAndCaches) {
  make(true);
  std::vector<std::byte> out(512);
  EXPECT_TRUE(read(out).ok());
  EXPECT_EQ(out[511], std::byte{0x42});
  EXPECT_TRUE(flush().ok());
  EXPECT_TRUE(cache().ok());
  EXPECT_EQ(fake_->reads, 1);
  EXPECT_EQ(fake_->flushes, 1);
  EXPECT_EQ(fake_->caches, 1);
}

TEST(VolumeReadOnly, RealMemoryBackendIsLeftUntouched) {
  asio::io_context context;
  Ring ring(context, 8);
  Volume volume({"ro", "", true, false}, std::make_unique<MemoryBackend>(kMiB));
  const auto data = pattern(4096, 40);
  EXPECT_EQ(run_coroutine(context, volume.write(ring, data, 0, false)).error(), EPERM);
  EXPECT_EQ(run_coroutine(context, volume.write_zeroes(ring, 0, 4096, ZeroMode::kMayTrim, false, false)).error(),
            EPERM);
  EXPECT_EQ(run_coroutine(context, volume.trim(ring, 0, 4096, false)).error(), EPERM);
  std::vector<std::byte> out(4096, std::byte{0x77});
  ASSERT_TRUE(run_coroutine(context, volume.read(ring, out, 0)).ok());
  EXPECT_TRUE(all_zero(out));
  auto extents = volume.extents(0, kMiB, 16);
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(extents.value(), (std::vector<Extent>{{kMiB, wire::kStateHole | wire::kStateZero}}));
}

// ---------------------------------------------------------------- FUA

TEST_F(VolumeTest, FuaWriteIsADurableWriteWithoutASeparateFlush) {
  make();
  ASSERT_TRUE(write(true).ok());
  ASSERT_TRUE(write(false).ok());
  ASSERT_EQ(fake_->writes.size(), 2U);
  EXPECT_TRUE(fake_->writes[0].durable);
  EXPECT_FALSE(fake_->writes[1].durable);
  EXPECT_EQ(fake_->flushes, 0);
}

TEST_F(VolumeTest, FuaTrimAndWriteZeroesAreFollowedByAFlush) {
  make();
  ASSERT_TRUE(trim(true).ok());
  ASSERT_TRUE(zero(true).ok());
  EXPECT_EQ(fake_->log, (std::vector<std::string>{"trim", "flush", "zero", "flush"}));
  fake_->log.clear();
  ASSERT_TRUE(trim(false).ok());
  ASSERT_TRUE(zero(false).ok());
  EXPECT_EQ(fake_->log, (std::vector<std::string>{"trim", "zero"}));
}

TEST_F(VolumeTest, FailedFuaTrimIsNotFlushed) {
  make();
  fake_->trim_result = Errno{EIO};
  fake_->zero_result = Errno{ENOTSUP};
  EXPECT_EQ(trim(true).error(), EIO);
  EXPECT_EQ(zero(true, ZeroMode::kNoHole, true).error(), ENOTSUP);
  EXPECT_EQ(fake_->flushes, 0);
  EXPECT_FALSE(volume_->poisoned());
}

// ---------------------------------------------------------------- poisoning

TEST_F(VolumeTest, FailedFlushPoisonsTheVolume) {
  make();
  fake_->flush_result = Errno{EIO};
  EXPECT_FALSE(volume_->poisoned());
  EXPECT_EQ(flush().error(), EIO);
  EXPECT_TRUE(volume_->poisoned());
  EXPECT_EQ(fake_->flushes, 1);
}

TEST_F(VolumeTest, PoisonedVolumeFailsEveryWriteAndFlushWithEio) {
  make();
  fake_->flush_result = Errno{EIO};
  ASSERT_EQ(flush().error(), EIO);
  // The disk recovers; the volume must not: the kernel may have dropped the pages
  // whose writeback failed, so a later successful fsync proves nothing.
  fake_->flush_result = Result<void>{};
  EXPECT_EQ(write().error(), EIO);
  EXPECT_EQ(write(true).error(), EIO);
  EXPECT_EQ(trim().error(), EIO);
  EXPECT_EQ(trim(true).error(), EIO);
  EXPECT_EQ(zero().error(), EIO);
  EXPECT_EQ(zero(true).error(), EIO);
  EXPECT_EQ(flush().error(), EIO);
  EXPECT_EQ(flush().error(), EIO);
  // Never retried, never handed to the backend.
  EXPECT_EQ(fake_->flushes, 1);
  EXPECT_TRUE(fake_->writes.empty());
  EXPECT_EQ(fake_->trims, 0);
  EXPECT_TRUE(fake_->zeroes.empty());
  EXPECT_TRUE(volume_->poisoned());
}

TEST_F(VolumeTest, PoisonedVolumeStillReads) {
  make();
  fake_->flush_result = Errno{EIO};
  ASSERT_EQ(flush().error(), EIO);
  std::vector<std::byte> out(4096);
  EXPECT_TRUE(read(out).ok());
  EXPECT_EQ(out[0], std::byte{0x42});
  EXPECT_EQ(fake_->reads, 1);
  EXPECT_TRUE(cache().ok());
  EXPECT_TRUE(volume_->extents(0, 4096, 1).ok());
}

TEST_F(VolumeTest, AnyFailedFlushPoisonsAndIsReportedAsEio) {
  for (int err : {ENOSPC, EDQUOT, EROFS, EBADF}) {
    make();
    fake_->flush_result = Errno{err};
    EXPECT_EQ(flush().error(), EIO) << err;
    EXPECT_TRUE(volume_->poisoned()) << err;
    EXPECT_EQ(write().error(), EIO) << err;
  }
}

TEST_F(VolumeTest, FailedFlushAfterFuaTrimPoisons) {
  make();
  fake_->flush_result = Errno{EIO};
  EXPECT_EQ(trim(true).error(), EIO);
  EXPECT_TRUE(volume_->poisoned());
  EXPECT_EQ(write().error(), EIO);
}

TEST_F(VolumeTest, FailedFlushAfterFuaWriteZeroesPoisons) {
  make();
  fake_->flush_result = Errno{EIO};
  EXPECT_EQ(zero(true).error(), EIO);
  EXPECT_TRUE(volume_->poisoned());
  EXPECT_EQ(flush().error(), EIO);
  EXPECT_EQ(fake_->flushes, 1);
}

TEST_F(VolumeTest, FuaWriteFailingWithEioPoisons) {
  make();
  fake_->write_result = Errno{EIO};
  EXPECT_EQ(write(true).error(), EIO);
  EXPECT_TRUE(volume_->poisoned());
  fake_->write_result = Result<void>{};
  EXPECT_EQ(write(false).error(), EIO);
  EXPECT_EQ(flush().error(), EIO);
  EXPECT_EQ(fake_->writes.size(), 1U);
  EXPECT_EQ(fake_->flushes, 0);
}

TEST_F(VolumeTest, PlainWriteFailingWithEioDoesNotPoison) {
  // Without FUA nothing was promised durable; the error goes back to the client.
  make();
  fake_->write_result = Errno{EIO};
  EXPECT_EQ(write(false).error(), EIO);
  EXPECT_FALSE(volume_->poisoned());
  fake_->write_result = Result<void>{};
  EXPECT_TRUE(write(false).ok());
  EXPECT_TRUE(flush().ok());
}

TEST_F(VolumeTest, SuccessfulFlushesDoNotPoison) {
  make();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(flush().ok());
  EXPECT_FALSE(volume_->poisoned());
  EXPECT_EQ(fake_->flushes, 3);
}

TEST_F(VolumeTest, ReadOnlyIsReportedBeforePoisoning) {
  make(true);
  fake_->flush_result = Errno{EIO};
  EXPECT_EQ(flush().error(), EIO);
  EXPECT_TRUE(volume_->poisoned());
  EXPECT_EQ(write().error(), EPERM);
}

// ---------------------------------------------------------------- unsafe mode

TEST_F(VolumeTest, UnsafeAckWithoutSyncSkipsTheFlush) {
  make(false, true);
  fake_->flush_result = Errno{EIO};  // would poison, if it were ever called
  EXPECT_TRUE(flush().ok());
  EXPECT_TRUE(trim(true).ok());
  EXPECT_TRUE(zero(true).ok());
  EXPECT_EQ(fake_->flushes, 0);
  EXPECT_FALSE(volume_->poisoned());
}

TEST_F(VolumeTest, UnsafeAckWithoutSyncMakesFuaWritesNonDurable) {
  make(false, true);
  ASSERT_TRUE(write(true).ok());
  ASSERT_EQ(fake_->writes.size(), 1U);
  EXPECT_FALSE(fake_->writes[0].durable);
  // And a failing "FUA" write is then an ordinary failed write.
  fake_->write_result = Errno{EIO};
  EXPECT_EQ(write(true).error(), EIO);
  EXPECT_FALSE(volume_->poisoned());
}

// ---------------------------------------------------------------- a real file

TEST(VolumeOnFile, WriteFuaFlushReadOnARealRing) {
  TempFile file;
  file.remove();
  asio::io_context context;
  Ring ring(context, 8);
  Volume volume({"file", "", false, false}, UringFileBackend::open({file.path(), 4 * kMiB, false}));
  EXPECT_EQ(volume.size(), 4 * kMiB);
  const auto a = pattern(65536, 41), b = pattern(4096, 42);
  ASSERT_TRUE(run_coroutine(context, volume.write(ring, a, 0, false)).ok());
  ASSERT_TRUE(run_coroutine(context, volume.write(ring, b, kMiB, true)).ok());
  ASSERT_TRUE(run_coroutine(context, volume.flush(ring)).ok());
  ASSERT_TRUE(run_coroutine(context, volume.write_zeroes(ring, 4096, 4096, ZeroMode::kMayTrim, false, true)).ok());
  ASSERT_TRUE(run_coroutine(context, volume.trim(ring, 2 * kMiB, kMiB, true)).ok());
  EXPECT_FALSE(volume.poisoned());
  std::vector<std::byte> out(65536);
  ASSERT_TRUE(run_coroutine(context, volume.read(ring, out, 0)).ok());
  auto expected = a;
  std::fill(expected.begin() + 4096, expected.begin() + 8192, std::byte{0});
  EXPECT_EQ(out, expected);
  std::vector<std::byte> out_b(4096);
  ASSERT_TRUE(run_coroutine(context, volume.read(ring, out_b, kMiB)).ok());
  EXPECT_EQ(out_b, b);
}

}  // namespace
