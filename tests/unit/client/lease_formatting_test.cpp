// blockctl lease: --ttl durations, --holder checks, and how leases are printed.
#include <gtest/gtest.h>

#include "tests/unit/client/usage_message.h"
#include "tools/arguments.h"
#include "tools/formatting.h"
#include "tools/lease_formatting.h"
#include "tools/usage_error.h"

namespace blockd::tools {
namespace {

TEST(LeaseArguments, Durations) {
  EXPECT_EQ(parse_duration_seconds("30s"), 30u);
  EXPECT_EQ(parse_duration_seconds("5m"), 300u);
  EXPECT_EQ(parse_duration_seconds("1h"), 3600u);
  EXPECT_EQ(parse_duration_seconds("2d"), 2u * 86400);
  EXPECT_EQ(parse_duration_seconds("90"), 90u);
  EXPECT_EQ(parse_duration_seconds("1h30m"), 5400u);
  EXPECT_EQ(parse_duration_seconds("1m48s"), 108u);
  EXPECT_EQ(parse_duration_seconds("4294967295"), 4294967295u);
  for (const char* bad : {"", "0", "0s", "-5s", "5x", "m", "5 m", "1.5h", "5M", "1h30", "s5", "4294967296",
                          "99999999999999999999s", "50000d"}) {
    EXPECT_NE(usage_message([&] { parse_duration_seconds(bad); }).find("bad duration"), std::string::npos) << bad;
  }
  EXPECT_NE(usage_message([] { parse_duration_seconds("5x"); }).find("unknown unit \"x\""), std::string::npos);
  EXPECT_NE(usage_message([] { parse_duration_seconds("0"); }).find("positive"), std::string::npos);
  EXPECT_NE(usage_message([] { parse_duration_seconds("1h30"); }).find("\"30\" has no unit"), std::string::npos);
}

TEST(LeaseArguments, Holders) {
  check_holder("node-a");
  check_holder("10.0.0.5");
  check_holder("fd00::5");
  check_holder("pod_1.x");
  check_holder(std::string(253, 'h'));
  for (const std::string& bad : {std::string(), std::string("a b"), std::string("node%2Da"), std::string("a/b"),
                                std::string("a?b"), std::string(254, 'h')}) {
    EXPECT_NE(usage_message([&] { check_holder(bad); }).find("bad holder"), std::string::npos) << bad;
  }
  EXPECT_FALSE(host_name().empty());
}

TEST(LeaseFormatting, Durations) {
  EXPECT_EQ(format_duration(-3), "0s");
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(60), "1m");
  EXPECT_EQ(format_duration(108), "1m48s");
  EXPECT_EQ(format_duration(3600), "1h");
  EXPECT_EQ(format_duration(3600 + 5 * 60 + 7), "1h5m");
  EXPECT_EQ(format_duration(3 * 86400 + 4 * 3600), "3d4h");
}

constexpr std::int64_t kNow = 1'000'000;

v1::LeaseHolder* add_holder(v1::Lease& lease, const std::string& name, const std::string& mode,
                            std::uint32_t connections, std::int64_t held_for, std::int64_t expires_in) {
  auto* h = lease.add_holders();
  h->set_holder(name);
  h->set_mode(mode);
  h->set_connections(connections);
  h->mutable_held_since()->set_seconds(kNow - held_for);
  if (expires_in != 0) h->mutable_expires_at()->set_seconds(kNow + expires_in);
  return h;
}

v1::ListLeasesResponse sample_leases() {
  v1::ListLeasesResponse list;
  v1::Lease* db = list.add_leases();
  db->set_volume("db");
  db->set_state("write");
  db->set_generation(7);
  add_holder(*db, "node-a", "rw", 2, 3 * 3600, 0);  // connected: no expiry
  v1::Lease* shared = list.add_leases();
  shared->set_volume("shared");
  shared->set_state("read");
  shared->set_generation(2);
  add_holder(*shared, "node-b", "ro", 1, 45, 0);
  add_holder(*shared, "node-c", "ro", 0, 600, 108);  // in its grace period
  v1::Lease* idle = list.add_leases();
  idle->set_volume("idle");
  idle->set_state("free");
  idle->set_generation(12345678901234ULL);
  v1::Lease* breaking = list.add_leases();
  breaking->set_volume("moving");
  breaking->set_state("breaking");
  breaking->set_generation(4);
  breaking->set_fenced_connections(3);
  breaking->set_break_to("node-d");
  return list;
}

TEST(LeaseFormatting, Table) {
  EXPECT_EQ(render_lease_table(sample_leases(), kNow),
            "VOLUME   STATE      HOLDER      MODE       GENERATION   CONNECTIONS   HELD   EXPIRES\n"
            "db       write      node-a      rw                  7             2     3h   connected\n"
            "shared   read       node-b      ro                  2             1    45s   connected\n"
            "shared   read       node-c      ro                  2             0    10m   in 1m48s\n"
            "idle     free       -           -      12345678901234             0      -   -\n"
            "moving   breaking   -> node-d   -                   4      3 fenced      -   when drained\n");
}

TEST(LeaseFormatting, ExpiryCells) {
  v1::Lease lease;
  v1::LeaseHolder* h = add_holder(lease, "n", "rw", 0, 10, -5);
  EXPECT_EQ(format_expiry(*h, kNow), "expired");
  h->mutable_expires_at()->set_seconds(kNow + 7200);
  EXPECT_EQ(format_expiry(*h, kNow), "in 2h");
  h->clear_expires_at();
  h->set_connections(1);
  EXPECT_EQ(format_expiry(*h, kNow), "connected");
  h->set_released(true);
  EXPECT_EQ(format_expiry(*h, kNow), "at last disconnect");
}

TEST(LeaseFormatting, RestartGraceIsShown) {
  v1::ListLeasesResponse list;
  v1::Lease* l = list.add_leases();
  l->set_volume("db");
  l->set_state("write");
  l->set_generation(3);
  add_holder(*l, "node-a", "rw", 0, 5, 115)->set_restart_grace(true);
  const std::string text = render_lease_table(list, kNow);
  EXPECT_NE(text.find("db       write (restart grace)   node-a   rw"), std::string::npos) << text;
  EXPECT_NE(text.find("in 1m55s"), std::string::npos) << text;
}

TEST(LeaseFormatting, Holders) {
  const auto list = sample_leases();
  EXPECT_EQ(format_lease_holders(list.leases(0)), "node-a");
  EXPECT_EQ(format_lease_holders(list.leases(1)), "node-b,node-c");
  EXPECT_EQ(format_lease_holders(list.leases(2)), "-");
  EXPECT_EQ(format_lease_holders(list.leases(3)), "-> node-d");
}

TEST(LeaseFormatting, VolumeListHasHolderColumn) {
  v1::ListVolumesResponse volumes;
  v1::Volume* v = volumes.add_volumes();
  v->set_name("db");
  v->set_size_bytes(1ULL << 30);
  v->mutable_status()->set_connections(2);
  *v->mutable_status()->mutable_lease() = sample_leases().leases(0);
  v1::Volume* old = volumes.add_volumes();  // a server without leases
  old->set_name("x");
  old->set_size_bytes(1ULL << 30);
  EXPECT_EQ(render_volume_table(volumes, 0),
            "NAME    SIZE   CLASS   ACCESS   CONNECTIONS   HOLDER   AGE   LABELS\n"
            "db     1 GiB   -       -                  2   node-a     -   -\n"
            "x      1 GiB   -       -                  0   -          -   -\n");
}

TEST(LeaseFormatting, Changes) {
  v1::Lease lease;
  lease.set_volume("db");
  lease.set_state("write");
  lease.set_generation(3);
  v1::LeaseHolder* h = add_holder(lease, "node-a", "rw", 0, 0, 300);
  EXPECT_EQ(describe_lease_change("acquired", "node-a", lease, kNow),
            "lease on volume \"db\" acquired by \"node-a\": write (rw), generation 3, 0 connections; expires in 5m "
            "unless it connects\n");
  h->clear_expires_at();
  h->set_connections(1);
  EXPECT_EQ(describe_lease_change("renewed", "node-a", lease, kNow),
            "lease on volume \"db\" renewed by \"node-a\": write (rw), generation 3, 1 connection; it does not expire "
            "while connected\n");
  h->set_released(true);
  EXPECT_NE(describe_lease_change("released", "node-a", lease, kNow).find("ends when the last connection closes"),
            std::string::npos);
  v1::Lease free;
  free.set_volume("db");
  free.set_state("free");
  free.set_generation(3);
  EXPECT_EQ(describe_lease_change("released", "node-a", free, kNow),
            "lease on volume \"db\" released by \"node-a\": it is free, generation 3\n");
}

TEST(LeaseFormatting, Break) {
  v1::BreakLeaseResponse r;
  r.mutable_lease()->set_volume("db");
  r.mutable_lease()->set_state("write");
  r.mutable_lease()->set_generation(8);
  add_holder(*r.mutable_lease(), "node-b", "rw", 0, 0, 120);
  r.add_fenced_holders("node-a");
  r.set_fenced_connections(2);
  EXPECT_EQ(describe_break(r, 7, kNow),
            "lease on volume \"db\" broken: generation 7 \u2192 8\n"
            "  fenced:   \"node-a\"; 2 connections closed\n"
            "  now:      held by \"node-b\" (rw, 0 connections, expires in 2m)\n");
  v1::BreakLeaseResponse nobody;
  nobody.mutable_lease()->set_volume("db");
  nobody.mutable_lease()->set_state("free");
  nobody.mutable_lease()->set_generation(1);
  EXPECT_EQ(describe_break(nobody, 0, kNow),
            "lease on volume \"db\" broken: generation 0 \u2192 1\n"
            "  fenced:   nobody (no holder); 0 connections closed\n"
            "  now:      free\n");
}

}  // namespace
}  // namespace blockd::tools
