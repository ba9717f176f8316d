// MemoryBackend (server/storage/memory_backend.h): sparse 64 KiB chunks in RAM, driven
// through the same Backend interface (and a real Ring) as the file backend.
#include "server/storage/memory_backend.h"

#include <gtest/gtest.h>

#include <vector>

#include "common/nbd_protocol.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
namespace wire = blockd::common::nbd;
using blockd::common::Result;
using blockd::server::io::Ring;
using blockd::server::storage::Extent;
using blockd::server::storage::MemoryBackend;
using blockd::server::storage::ZeroMode;
using blockd::test::all_zero;
using blockd::test::pattern;
using blockd::test::run_coroutine;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kChunk = 64 * kKiB;
constexpr std::uint32_t kHoleZero = wire::kStateHole | wire::kStateZero;

class MemoryBackendTest : public testing::Test {
 protected:
  Result<void> write(const std::vector<std::byte>& data, std::uint64_t offset, bool durable = false) {
    return run_coroutine(context_, backend_.write(ring_, data, offset, durable));
  }
  std::vector<std::byte> read_back(std::size_t size, std::uint64_t offset) {
    std::vector<std::byte> out(size, std::byte{0xEE});
    auto r = run_coroutine(context_, backend_.read(ring_, out, offset));
    EXPECT_TRUE(r.ok());
    return out;
  }
  std::vector<Extent> extents(std::uint64_t offset, std::uint64_t length, std::size_t max = 1024) {
    auto r = backend_.extents(offset, length, max);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : std::vector<Extent>{};
  }

  asio::io_context context_;
  Ring ring_{context_, 8};
  MemoryBackend backend_{kMiB};
};

TEST_F(MemoryBackendTest, SizeAndDescription) {
  EXPECT_EQ(backend_.size(), kMiB);
  EXPECT_EQ(backend_.describe(), "memory 1 MiB");
  EXPECT_EQ(MemoryBackend(64 * kMiB).describe(), "memory 64 MiB");
}

TEST_F(MemoryBackendTest, UnwrittenReadsAsZeroes) {
  EXPECT_TRUE(all_zero(read_back(kMiB, 0)));
  EXPECT_TRUE(all_zero(read_back(100, 12345)));
}

TEST_F(MemoryBackendTest, WriteReadRoundTripAtOffsets) {
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{512}, std::uint64_t{1000}, kChunk,
                               3 * kChunk + 17, kMiB - 4096}) {
    const auto data = pattern(4096, static_cast<unsigned>(offset));
    ASSERT_TRUE(write(data, offset).ok()) << offset;
    EXPECT_EQ(read_back(4096, offset), data) << offset;
  }
}

TEST_F(MemoryBackendTest, WriteAcrossChunkBoundaries) {
  // 200 KiB starting 100 bytes before the end of the first chunk: spans four chunks.
  const auto data = pattern(200 * kKiB, 21);
  ASSERT_TRUE(write(data, kChunk - 100).ok());
  EXPECT_EQ(read_back(data.size(), kChunk - 100), data);
  // Neighbours untouched.
  EXPECT_TRUE(all_zero(read_back(kChunk - 100, 0)));
  EXPECT_TRUE(all_zero(read_back(4096, kChunk - 100 + data.size())));
  // A read that straddles written and unwritten bytes.
  auto mixed = read_back(200, kChunk - 200);
  EXPECT_TRUE(all_zero(std::vector<std::byte>(mixed.begin(), mixed.begin() + 100)));
  EXPECT_EQ(std::vector<std::byte>(mixed.begin() + 100, mixed.end()),
            std::vector<std::byte>(data.begin(), data.begin() + 100));
}

TEST_F(MemoryBackendTest, DurableWriteAndFlushSucceed) {
  const auto data = pattern(4096, 22);
  ASSERT_TRUE(write(data, 0, true).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_.flush(ring_)).ok());
  EXPECT_EQ(read_back(4096, 0), data);
}

TEST_F(MemoryBackendTest, ExtentsOfAnEmptyVolumeAreOneHole) {
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{kMiB, kHoleZero}}));
}

TEST_F(MemoryBackendTest, ExtentsHoleDataHole) {
  ASSERT_TRUE(write(pattern(kChunk, 23), 4 * kChunk).ok());
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{4 * kChunk, kHoleZero}, {kChunk, 0}, {11 * kChunk, kHoleZero}}));
  // Unaligned start, clipped end.
  EXPECT_EQ(extents(4 * kChunk - 512, kChunk + 1024),
            (std::vector<Extent>{{512, kHoleZero}, {kChunk, 0}, {512, kHoleZero}}));
}

TEST_F(MemoryBackendTest, ASmallWriteMakesItsWholeChunkData) {
  ASSERT_TRUE(write(pattern(512, 24), kChunk + 4096).ok());
  EXPECT_EQ(extents(0, 3 * kChunk), (std::vector<Extent>{{kChunk, kHoleZero}, {kChunk, 0}, {kChunk, kHoleZero}}));
}

TEST_F(MemoryBackendTest, ExtentsAreClippedToTheSize) {
  EXPECT_EQ(extents(kMiB - 4096, kMiB), (std::vector<Extent>{{4096, kHoleZero}}));
}

TEST_F(MemoryBackendTest, MaxExtentsIsHonoured) {
  ASSERT_TRUE(write(pattern(kChunk, 25), 2 * kChunk).ok());
  auto one = extents(0, kMiB, 1);
  ASSERT_EQ(one.size(), 1U);
  EXPECT_EQ(one[0].flags, kHoleZero);
  EXPECT_GE(one[0].length, kChunk);
  EXPECT_LE(one[0].length, 2 * kChunk);
  auto two = extents(0, kMiB, 2);
  ASSERT_EQ(two.size(), 2U);
  EXPECT_EQ(two[0], (Extent{2 * kChunk, kHoleZero}));
  EXPECT_EQ(two[1], (Extent{kChunk, 0}));
}

TEST_F(MemoryBackendTest, TrimOfWholeChunksMakesHoles) {
  const auto data = pattern(kMiB, 26);
  ASSERT_TRUE(write(data, 0).ok());
  ASSERT_TRUE(run_coroutine(context_, backend_.trim(ring_, 2 * kChunk, 3 * kChunk)).ok());
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{2 * kChunk, 0}, {3 * kChunk, kHoleZero}, {11 * kChunk, 0}}));
  EXPECT_TRUE(all_zero(read_back(3 * kChunk, 2 * kChunk)));
  EXPECT_EQ(read_back(2 * kChunk, 0), std::vector<std::byte>(data.begin(), data.begin() + 2 * kChunk));
  EXPECT_EQ(read_back(11 * kChunk, 5 * kChunk), std::vector<std::byte>(data.begin() + 5 * kChunk, data.end()));
}

TEST_F(MemoryBackendTest, PartialChunkTrimZeroesButKeepsTheChunk) {
  const auto data = pattern(kChunk, 27);
  ASSERT_TRUE(write(data, 0).ok());
  ASSERT_TRUE(run_coroutine(context_, backend_.trim(ring_, 4096, 8192)).ok());
  EXPECT_TRUE(all_zero(read_back(8192, 4096)));
  EXPECT_EQ(read_back(4096, 0), std::vector<std::byte>(data.begin(), data.begin() + 4096));
  EXPECT_EQ(read_back(kChunk - 12288, 12288), std::vector<std::byte>(data.begin() + 12288, data.end()));
  EXPECT_EQ(extents(0, kChunk), (std::vector<Extent>{{kChunk, 0}}));
}

TEST_F(MemoryBackendTest, WriteZeroesReadsBackZeroesInBothModes) {
  for (ZeroMode mode : {ZeroMode::kMayTrim, ZeroMode::kNoHole}) {
    for (bool fast_only : {false, true}) {
      const auto data = pattern(kMiB, 28);
      ASSERT_TRUE(write(data, 0).ok());
      auto r = run_coroutine(context_, backend_.write_zeroes(ring_, kChunk / 2, 3 * kChunk, mode, fast_only));
      ASSERT_TRUE(r.ok());  // in RAM zeroing is always fast
      EXPECT_TRUE(all_zero(read_back(3 * kChunk, kChunk / 2)));
      EXPECT_EQ(read_back(kChunk / 2, 0), std::vector<std::byte>(data.begin(), data.begin() + kChunk / 2));
      EXPECT_EQ(read_back(kMiB - 3 * kChunk - kChunk / 2, 3 * kChunk + kChunk / 2),
                std::vector<std::byte>(data.begin() + 3 * kChunk + kChunk / 2, data.end()));
    }
  }
}

TEST_F(MemoryBackendTest, CacheSucceedsAndChangesNothing) {
  const auto data = pattern(4096, 29);
  ASSERT_TRUE(write(data, 0).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_.cache(ring_, 0, kMiB)).ok());
  EXPECT_EQ(read_back(4096, 0), data);
}

TEST_F(MemoryBackendTest, WritesAtTheLastByte) {
  const auto data = pattern(1, 30);
  ASSERT_TRUE(write(data, kMiB - 1).ok());
  EXPECT_EQ(read_back(1, kMiB - 1), data);
  EXPECT_EQ(extents(kMiB - kChunk, kChunk), (std::vector<Extent>{{kChunk, 0}}));
}

}  // namespace
