// Zero detection, run splitting and the allocation map used by import and export.
#include <gtest/gtest.h>

#include "tools/allocation_map.h"
#include "tools/chunk_data.h"

namespace blockd::tools {
namespace {

TEST(ChunkData, ZeroDetection) {
  std::vector<std::byte> buf(4096);
  EXPECT_TRUE(is_zero(buf));
  EXPECT_TRUE(is_zero({}));
  buf[4095] = std::byte{1};
  EXPECT_FALSE(is_zero(buf));
  buf[4095] = std::byte{0};
  buf[0] = std::byte{1};
  EXPECT_FALSE(is_zero(buf));
  std::vector<std::byte> same(16, std::byte{7});
  EXPECT_FALSE(is_zero(same));
}

TEST(ChunkData, SplitRuns) {
  std::vector<std::byte> buf(10 * 4);
  buf[4] = std::byte{1};   // granule 1
  buf[8] = std::byte{1};   // granule 2
  buf[36] = std::byte{1};  // granule 9
  const auto runs = split_runs(buf, 4);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_TRUE(runs[0].zero);
  EXPECT_EQ(runs[0].length, 4u);
  EXPECT_FALSE(runs[1].zero);
  EXPECT_EQ(runs[1].offset, 4u);
  EXPECT_EQ(runs[1].length, 8u);
  EXPECT_TRUE(runs[2].zero);
  EXPECT_EQ(runs[2].length, 24u);
  EXPECT_FALSE(runs[3].zero);
  EXPECT_EQ(runs[3].offset, 36u);
  // A tail shorter than a granule.
  std::vector<std::byte> odd(6);
  odd[5] = std::byte{1};
  const auto tail = split_runs(odd, 4);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[1].length, 2u);
}

TEST(ChunkData, FingerprintAndDifference) {
  std::vector<std::byte> a(1000, std::byte{3});
  auto b = a;
  EXPECT_EQ(fingerprint(a), fingerprint(b));
  EXPECT_EQ(first_difference(a, b), a.size());
  b[777] = std::byte{4};
  EXPECT_NE(fingerprint(a), fingerprint(b));
  EXPECT_EQ(first_difference(a, b), 777u);
  std::vector<std::byte> z1(512), z2(1024);
  EXPECT_NE(fingerprint(z1), fingerprint(std::span(z2)));
}

TEST(AllocationMap, ZeroRanges) {
  using client::Extent;
  constexpr std::uint32_t kZero = common::nbd::kStateZero | common::nbd::kStateHole;
  const auto map = AllocationMap::from_extents({Extent{0, 100, kZero}, Extent{100, 50, 0}, Extent{150, 50, kZero},
                                                Extent{200, 50, common::nbd::kStateZero}, Extent{250, 10, 1}});
  EXPECT_TRUE(map.all_zero(0, 100));
  EXPECT_TRUE(map.all_zero(10, 20));
  EXPECT_FALSE(map.all_zero(90, 20));
  EXPECT_TRUE(map.all_zero(150, 100));  // adjacent zero extents merge
  EXPECT_FALSE(map.all_zero(240, 20));  // HOLE without ZERO is not known zero
  EXPECT_EQ(map.zero_bytes(), 200u);
  const auto parts = map.maybe_data(50, 250);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], (std::pair<std::uint64_t, std::uint64_t>{100, 50}));
  EXPECT_EQ(parts[1], (std::pair<std::uint64_t, std::uint64_t>{250, 50}));
  EXPECT_EQ(AllocationMap{}.maybe_data(5, 10).size(), 1u);
}

}  // namespace
}  // namespace blockd::tools
