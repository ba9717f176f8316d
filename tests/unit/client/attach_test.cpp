// blockctl attach's small parsers: device names and the default holder.
#include <gtest/gtest.h>

#include "tools/attach_commands.h"

namespace blockd::tools {
namespace {

TEST(AttachDevice, Parses) {
  EXPECT_EQ(parse_nbd_device("/dev/nbd0"), 0U);
  EXPECT_EQ(parse_nbd_device("/dev/nbd15"), 15U);
  EXPECT_EQ(parse_nbd_device("nbd3"), 3U);
  EXPECT_FALSE(parse_nbd_device("/dev/sda").has_value());
  EXPECT_FALSE(parse_nbd_device("/dev/nbd").has_value());
  EXPECT_FALSE(parse_nbd_device("/dev/nbd1p1").has_value());
  EXPECT_FALSE(parse_nbd_device("disk").has_value());
}

TEST(AttachHolder, DefaultIsAValidHolder) {
  const std::string holder = default_holder();
  ASSERT_FALSE(holder.empty());
  for (char c : holder) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    EXPECT_TRUE(ok) << holder;
  }
}

}  // namespace
}  // namespace blockd::tools
