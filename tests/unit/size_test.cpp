// parse_size() and format_size() (common/size.h): all units binary, G == GB == GiB.
#include "common/size.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

namespace {

using blockd::common::format_size;
using blockd::common::parse_size;

constexpr std::uint64_t kKiB = 1ULL << 10;
constexpr std::uint64_t kMiB = 1ULL << 20;
constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr std::uint64_t kTiB = 1ULL << 40;

TEST(ParseSize, PlainNumbersAreBytes) {
  EXPECT_EQ(parse_size("512"), std::optional<std::uint64_t>(512));
  EXPECT_EQ(parse_size("0"), std::optional<std::uint64_t>(0));
  EXPECT_EQ(parse_size("1"), std::optional<std::uint64_t>(1));
  EXPECT_EQ(parse_size("18446744073709551615"), std::optional<std::uint64_t>(UINT64_MAX));
  EXPECT_EQ(parse_size("512B"), std::optional<std::uint64_t>(512));
  EXPECT_EQ(parse_size("512b"), std::optional<std::uint64_t>(512));
}

TEST(ParseSize, BinaryUnitsInEverySpelling) {
  EXPECT_EQ(parse_size("64KiB"), std::optional<std::uint64_t>(64 * kKiB));
  EXPECT_EQ(parse_size("64K"), std::optional<std::uint64_t>(64 * kKiB));
  EXPECT_EQ(parse_size("64KB"), std::optional<std::uint64_t>(64 * kKiB));
  EXPECT_EQ(parse_size("64k"), std::optional<std::uint64_t>(64 * kKiB));
  EXPECT_EQ(parse_size("64MiB"), std::optional<std::uint64_t>(64 * kMiB));
  EXPECT_EQ(parse_size("1GiB"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("1G"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("1GB"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("1gb"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("1gib"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("1GIB"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("10GiB"), std::optional<std::uint64_t>(10 * kGiB));
  EXPECT_EQ(parse_size("2T"), std::optional<std::uint64_t>(2 * kTiB));
  EXPECT_EQ(parse_size("3PiB"), std::optional<std::uint64_t>(3ULL << 50));
  EXPECT_EQ(parse_size("15EiB"), std::optional<std::uint64_t>(15ULL << 60));
}

TEST(ParseSize, SpacesBetweenNumberAndUnitAreAllowed) {
  EXPECT_EQ(parse_size("1 GiB"), std::optional<std::uint64_t>(kGiB));
  EXPECT_EQ(parse_size("64  KiB"), std::optional<std::uint64_t>(64 * kKiB));
}

TEST(ParseSize, LeadingAndTrailingWhitespaceIsRejected) {
  // "nullopt for anything that is not a whole number with an optional unit".
  EXPECT_EQ(parse_size(" 1 GiB"), std::nullopt);
  EXPECT_EQ(parse_size(" 512"), std::nullopt);
  EXPECT_EQ(parse_size("1GiB "), std::nullopt);
}

TEST(ParseSize, GarbageIsRejected) {
  for (const char* text : {"", " ", "GiB", "abc", "-1", "+1", "1.5G", "1,5G", "0x10", "1GiBx", "1 G B", "1iB",
                           "1bb", "1KiBB", "1X", "1Zi", "12 34", "1e3", "K1"}) {
    EXPECT_EQ(parse_size(text), std::nullopt) << "'" << text << "'";
  }
}

TEST(ParseSize, OverflowIsRejected) {
  EXPECT_EQ(parse_size("18446744073709551616"), std::nullopt);  // 2^64
  EXPECT_EQ(parse_size("99999999999999999999999"), std::nullopt);
  EXPECT_EQ(parse_size("16EiB"), std::nullopt);  // 2^64
  EXPECT_EQ(parse_size("16384PiB"), std::nullopt);
  EXPECT_EQ(parse_size("17179869184GiB"), std::nullopt);  // 2^34 GiB = 2^64
  EXPECT_EQ(parse_size("17179869183GiB"), std::optional<std::uint64_t>((17179869183ULL) << 30));
}

TEST(FormatSize, WholeUnits) {
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(1), "1 B");
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(1023), "1023 B");
  EXPECT_EQ(format_size(kKiB), "1 KiB");
  EXPECT_EQ(format_size(64 * kKiB), "64 KiB");
  EXPECT_EQ(format_size(kMiB), "1 MiB");
  EXPECT_EQ(format_size(kGiB), "1 GiB");
  EXPECT_EQ(format_size(10 * kGiB), "10 GiB");
  EXPECT_EQ(format_size(kTiB), "1 TiB");
  EXPECT_EQ(format_size(1ULL << 50), "1 PiB");
  EXPECT_EQ(format_size(1ULL << 60), "1 EiB");
}

TEST(FormatSize, FractionsGetOneDecimal) {
  EXPECT_EQ(format_size(1536), "1.5 KiB");
  EXPECT_EQ(format_size(kMiB + kMiB / 2), "1.5 MiB");
  EXPECT_EQ(format_size(kGiB + kGiB / 10 * 1), "1.1 GiB");
  EXPECT_EQ(format_size(1000 * kMiB), "1000 MiB");
}

TEST(FormatSize, RoundTripsThroughParseSize) {
  for (std::uint64_t v : {std::uint64_t{512}, 64 * kKiB, 64 * kMiB, kGiB, 10 * kGiB, 3 * kTiB}) {
    const std::string text = format_size(v);
    EXPECT_EQ(parse_size(text), std::optional<std::uint64_t>(v)) << text;
  }
}

}  // namespace
