// common::is_dns_label (common/names.h) and its agreement with the command line's
// server::is_valid_volume_name, which must accept exactly the same names.
#include "common/names.h"

#include <gtest/gtest.h>

#include <string>

#include "server/config.h"

namespace {

TEST(DnsLabel, AgreesWithTheCommandLineRule) {
  const std::string long_ok(63, 'a');
  const std::string too_long(64, 'a');
  for (const std::string name : {"a", "0", "demo", "demo-1", "0abc", "a-b-c", "pg-data-01", "", "-a", "a-", "-", "A",
                                 "Demo", "a_b", "a.b", "a b", "a/b", "\xc3\xa9", "a:b", "a,b", "a--b"}) {
    EXPECT_EQ(blockd::common::is_dns_label(name), blockd::server::is_valid_volume_name(name)) << "'" << name << "'";
  }
  EXPECT_TRUE(blockd::common::is_dns_label(long_ok));
  EXPECT_FALSE(blockd::common::is_dns_label(too_long));
  EXPECT_TRUE(blockd::common::is_dns_label("a--b"));
}

}  // namespace
