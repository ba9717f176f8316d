// Tables, sizes, ages, labels and progress lines as blockctl prints them.
#include <gtest/gtest.h>

#include "tools/formatting.h"
#include "tools/progress.h"
#include "tools/table.h"

namespace blockd::tools {
namespace {

TEST(Table, AlignsColumnsAndTrims) {
  Table t({"NAME", "SIZE", "X"}, {Table::Align::kLeft, Table::Align::kRight});
  t.add_row({"db", "10 GiB", ""});
  t.add_row({"a-longer-name", "512 B", "y"});
  EXPECT_EQ(t.render(),
            "NAME              SIZE   X\n"
            "db              10 GiB\n"
            "a-longer-name    512 B   y\n");
}

TEST(Table, CountsUtf8CodePoints) {
  Table t({"A", "B"});
  t.add_row({"\xc3\xa9t\xc3\xa9", "x"});  // "été": 3 columns, 5 bytes
  t.add_row({"abc", "y"});
  const std::string out = t.render();
  EXPECT_NE(out.find("\xc3\xa9t\xc3\xa9   x\n"), std::string::npos) << out;
  EXPECT_NE(out.find("abc   y\n"), std::string::npos) << out;
}

TEST(Formatting, Ages) {
  EXPECT_EQ(format_age(-5), "0s");
  EXPECT_EQ(format_age(45), "45s");
  EXPECT_EQ(format_age(119), "119s");
  EXPECT_EQ(format_age(120), "2m");
  EXPECT_EQ(format_age(7199), "119m");
  EXPECT_EQ(format_age(7200), "2h");
  EXPECT_EQ(format_age(3 * 86400), "3d");
}

v1::Volume sample_volume() {
  v1::Volume v;
  v.set_name("db");
  v.set_size_bytes(10ULL << 30);
  v.set_storage_class("fast");
  v.add_access_modes(v1::READ_WRITE_ONCE);
  v.add_access_modes(v1::READ_ONLY_MANY);
  (*v.mutable_labels())["tier"] = "db";
  (*v.mutable_labels())["app"] = "pg";
  v.mutable_created_at()->set_seconds(1000);
  v.mutable_status()->set_connections(2);
  return v;
}

TEST(Formatting, VolumeTable) {
  v1::ListVolumesResponse list;
  *list.add_volumes() = sample_volume();
  v1::Volume small;
  small.set_name("scratch-1");
  small.set_size_bytes(1536ULL << 20);
  small.set_storage_class("default");
  small.mutable_status()->set_poisoned(true);
  *list.add_volumes() = small;
  EXPECT_EQ(render_volume_table(list, 1000 + 3 * 3600),
            "NAME           SIZE   CLASS     ACCESS     CONNECTIONS   HOLDER   AGE   LABELS\n"
            "db           10 GiB   fast      RWO,ROX              2   -         3h   app=pg,tier=db\n"
            "scratch-1   1.5 GiB   default   -         0 (POISONED)   -          -   -\n");
}

TEST(Formatting, VolumeDetails) {
  const std::string text = render_volume_details(sample_volume(), 1060);
  EXPECT_NE(text.find("Name:           db\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Size:           10 GiB (10737418240 bytes)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Created:        1970-01-01T00:16:40Z (60s ago)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Labels:         app=pg,tier=db\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Poisoned:       no\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Lease:"), std::string::npos) << text;  // an older server sends none
  v1::Volume leased = sample_volume();
  auto* lease = leased.mutable_status()->mutable_lease();
  lease->set_state("write");
  lease->set_generation(3);
  auto* holder = lease->add_holders();
  holder->set_holder("node-a");
  holder->set_mode("rw");
  holder->set_connections(2);
  const std::string with_lease = render_volume_details(leased, 1060);
  EXPECT_NE(with_lease.find("Lease:          write by node-a (rw, 2 connections), generation 3\n"), std::string::npos)
      << with_lease;
}

TEST(Formatting, ClassesAndStatus) {
  v1::ListStorageClassesResponse classes;
  auto* c = classes.add_storage_classes();
  c->set_name("default");
  c->set_is_default(true);
  c->set_allocation(v1::StorageClass::SPARSE);
  c->set_io(v1::StorageClass::DIRECT);
  c->set_directory("/var/lib/blockd/volumes");
  EXPECT_EQ(render_class_table(classes),
            "NAME      DEFAULT   ALLOCATION   IO       DIRECTORY\n"
            "default   yes       sparse       direct   /var/lib/blockd/volumes\n");
  v1::StatusResponse status;
  status.set_version("0.1.0");
  status.add_nbd_listen("[::]:10809");
  status.add_nbd_listen("unix:/run/blockd/nbd.sock");
  status.set_uptime_seconds(7300);
  *status.add_volumes() = sample_volume();
  const std::string text = render_status(status, 1000);
  EXPECT_NE(text.find("NBD listen:   [::]:10809, unix:/run/blockd/nbd.sock\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Uptime:       2h\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Volumes:      1 (10 GiB), 2 connection(s)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("NAME "), std::string::npos) << text;
}

TEST(Progress, Lines) {
  EXPECT_EQ(Progress::line("importing db", 512ULL << 20, 1ULL << 30, 2.0, false),
            "importing db: 50% (512 MiB of 1 GiB), 256.0 MiB/s, ETA 0:02");
  const std::string bar = Progress::line("x", 1ULL << 30, 1ULL << 30, 4.0, true);
  EXPECT_EQ(bar, "x [##############################] 100%     256.0 MiB/s  ETA 0:00");
  EXPECT_NE(Progress::line("x", 0, 100, 0.0, false).find("ETA --:--"), std::string::npos);
  EXPECT_NE(Progress::line("x", 1, 7200, 1.0, false).find("ETA 1:59:59"), std::string::npos);
}

TEST(Progress, PlainModeWritesLinesQuietWritesNothing) {
  char* text = nullptr;
  std::size_t size = 0;
  std::FILE* out = open_memstream(&text, &size);
  {
    Progress p("copy", 100, Progress::Mode::kPlain, out, std::chrono::seconds(0));
    p.update(50);
    p.finish();
  }
  Progress q("copy", 100, Progress::Mode::kQuiet, out);
  q.update(50);
  q.finish();
  std::fclose(out);
  const std::string s(text, size);
  std::free(text);
  EXPECT_NE(s.find("copy: 50%"), std::string::npos) << s;
  EXPECT_EQ(s.find('\r'), std::string::npos) << s;
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 2) << s;
}

}  // namespace
}  // namespace blockd::tools
