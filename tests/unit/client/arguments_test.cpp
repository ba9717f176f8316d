// blockctl's argument checks: sizes, names, labels, access modes, --nbd targets.
#include <gtest/gtest.h>

#include "tests/unit/client/usage_message.h"
#include "tools/arguments.h"
#include "tools/nbd_target.h"
#include "tools/usage_error.h"

namespace blockd::tools {
namespace {

TEST(Arguments, Sizes) {
  EXPECT_EQ(parse_volume_size("10GiB"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("10G"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("10GB"), 10ULL << 30);
  EXPECT_EQ(parse_volume_size("512"), 512u);
  EXPECT_EQ(parse_volume_size("64MiB"), 64ULL << 20);
  EXPECT_NE(usage_message([] { parse_volume_size("10QB"); }).find("e.g. 10GiB"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_volume_size("abc"); }).find("bad size"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_volume_size("-1G"); }).find("bad size"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_volume_size("0"); }).find("cannot be empty"), std::string::npos);
  std::string note;
  EXPECT_EQ(parse_volume_size("1000", &note), 1024u);
  EXPECT_EQ(note, "size 1000 is not a multiple of 512 bytes; rounded up to 1024 bytes");
  note.clear();
  EXPECT_EQ(parse_volume_size("1KiB", &note), 1024u);
  EXPECT_EQ(note, "");
  EXPECT_NE(usage_message([] { parse_volume_size("99999999999EiB"); }).find("bad size"), std::string::npos);
}

TEST(Arguments, Names) {
  check_volume_name("db-0");
  check_volume_name(std::string(63, 'a'));
  for (const char* bad : {"", "DB", "-db", "db-", "d_b", "d.b", "db/x"}) {
    EXPECT_NE(usage_message([&] { check_volume_name(bad); }).find("bad volume name"), std::string::npos) << bad;
  }
  EXPECT_THROW(check_volume_name(std::string(64, 'a')), UsageError);
}

TEST(Arguments, Labels) {
  const auto labels = parse_labels({"app=pg", "tier=", "k=a=b"});
  ASSERT_EQ(labels.size(), 3u);
  EXPECT_EQ(labels.at("app"), "pg");
  EXPECT_EQ(labels.at("tier"), "");
  EXPECT_EQ(labels.at("k"), "a=b");
  EXPECT_NE(usage_message([] { parse_labels({"novalue"}); }).find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_labels({"=v"}); }).find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_labels({"a=1", "a=2"}); }).find("given twice"), std::string::npos);
}

TEST(Arguments, AccessModes) {
  EXPECT_EQ(parse_access_modes({"ReadWriteOnce,ReadOnlyMany"}),
            (std::vector<v1::AccessMode>{v1::READ_WRITE_ONCE, v1::READ_ONLY_MANY}));
  EXPECT_EQ(parse_access_modes({"rox", "RWO", "ReadOnlyMany"}),
            (std::vector<v1::AccessMode>{v1::READ_ONLY_MANY, v1::READ_WRITE_ONCE}));
  EXPECT_TRUE(parse_access_modes({}).empty());
  EXPECT_NE(usage_message([] { parse_access_modes({"ReadWriteMany"}); }).find("ReadWriteOnce (RWO)"),
            std::string::npos);
}

TEST(NbdTarget, PrefersUnixListener) {
  v1::StatusResponse status;
  status.add_nbd_listen("[::]:10809");
  status.add_nbd_listen("unix:/run/blockd/nbd.sock");
  auto a = nbd_target_from_status(status, "db");
  EXPECT_EQ(a.kind(), client::NbdAddress::Kind::kUnix);
  EXPECT_EQ(a.export_name(), "db");
  v1::StatusResponse tcp_only;
  tcp_only.add_nbd_listen("[::]:10809");
  tcp_only.add_nbd_listen("127.0.0.1:7");
  auto b = nbd_target_from_status(tcp_only, "db");
  EXPECT_EQ(b.host(), "::1");
  EXPECT_EQ(b.port(), 10809);
  EXPECT_THROW(nbd_target_from_status(v1::StatusResponse{}, "db"), std::runtime_error);
}

TEST(NbdTarget, Override) {
  EXPECT_EQ(nbd_target_from_uri("nbd://h:1", "db").export_name(), "db");
  EXPECT_EQ(nbd_target_from_uri("nbd://h:1/other", "db").export_name(), "other");
  EXPECT_THROW(nbd_target_from_uri("http://h", "db"), UsageError);
}

}  // namespace
}  // namespace blockd::tools
