// Durations as refusal messages and logs spell them.
#include "server/lease/duration_text.h"

#include <gtest/gtest.h>

namespace blockd::server::lease {
namespace {

using namespace std::chrono_literals;

TEST(DurationText, WholeSecondsLargestUnitFirst) {
  EXPECT_EQ(duration_text(0s), "0s");
  EXPECT_EQ(duration_text(999ms), "0s");
  EXPECT_EQ(duration_text(45s), "45s");
  EXPECT_EQ(duration_text(3min + 12s), "3m12s");
  EXPECT_EQ(duration_text(2h + 5s), "2h0m5s");
  EXPECT_EQ(duration_text(24h + 3h), "1d3h0m0s");
  EXPECT_EQ(duration_text(-5s), "0s");
}

}  // namespace
}  // namespace blockd::server::lease
