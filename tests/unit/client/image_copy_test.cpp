// Import and export through FakeNbdServer: sparse handling (what is and is not sent),
// byte-identical results, size refusal, and verification that catches a server that
// acknowledges writes it did not do.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <random>

#include "client/nbd_client.h"
#include "fake_nbd_server.h"
#include "tools/image_exporter.h"
#include "tools/chunk_data.h"
#include "tools/image_importer.h"

namespace blockd::tools {
namespace {

using test::FakeNbdServer;
namespace nbd = common::nbd;
constexpr std::size_t MiB = 1 << 20;

class TempFile {
 public:
  TempFile() {
    char name[] = "/tmp/blockctl-test-XXXXXX";
    fd_ = ::mkstemp(name);
    path_ = name;
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  void pwrite_at(std::uint64_t offset, const std::vector<std::byte>& data) {
    ASSERT_EQ(::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset)), static_cast<ssize_t>(data.size()));
  }
  std::vector<std::byte> contents() const {
    struct stat st{};
    ::fstat(fd_, &st);
    std::vector<std::byte> out(static_cast<std::size_t>(st.st_size));
    EXPECT_EQ(::pread(fd_, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
  }
  std::uint64_t allocated() const {
    struct stat st{};
    ::fstat(fd_, &st);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }

 private:
  int fd_;
  std::string path_;
};

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() | 1);  // never zero
  return out;
}

client::NbdClient open(FakeNbdServer& server) {
  common::UniqueFd fd = server.take_client();
  server.start();
  client::NegotiateOptions o;
  o.structured_replies = true;
  o.base_allocation = true;
  auto info = client::nbd_negotiate(fd.get(), "disk", o);
  return client::NbdClient(std::move(fd), info);
}

std::size_t count(const std::vector<test::SeenRequest>& seen, nbd::Command type) {
  return static_cast<std::size_t>(std::count_if(seen.begin(), seen.end(), [&](const test::SeenRequest& r) {
    return r.type == static_cast<std::uint16_t>(type);
  }));
}

TEST(ImageImport, SparseSourceOntoZeroTargetSendsOnlyData) {
  FakeNbdServer::Config config;
  config.size = 8 * MiB;
  FakeNbdServer server(config);
  TempFile image;
  ASSERT_EQ(::ftruncate(image.fd(), 6 * MiB), 0);
  const auto a = random_bytes(100000, 1);
  const auto b = random_bytes(4096, 2);
  image.pwrite_at(MiB + 12345 - 12345 % 512, a);
  image.pwrite_at(5 * MiB, b);
  CopyStats stats;
  {
    client::NbdClient c = open(server);
    stats = ImageImporter(c, image.fd(), {image.path(), "disk", true, Progress::Mode::kQuiet}).run();
    c.disconnect();
  }
  server.join();
  EXPECT_TRUE(stats.verified);
  EXPECT_EQ(count(server.seen, nbd::Command::kWriteZeroes), 0u);  // the target was all zero
  EXPECT_GE(count(server.seen, nbd::Command::kFlush), 1u);
  EXPECT_LE(stats.data_bytes, 4 * kZeroGranule);  // only granules with data went as data
  auto expected = image.contents();
  expected.resize(config.size);
  EXPECT_TRUE(server.data() == expected);
}

TEST(ImageImport, OldDataIsZeroedWhereTheImageHasHoles) {
  FakeNbdServer::Config config;
  config.size = 4 * MiB;
  FakeNbdServer server(config);
  std::fill(server.data().begin(), server.data().end(), std::byte{0xaa});  // old contents
  TempFile image;
  ASSERT_EQ(::ftruncate(image.fd(), 2 * MiB), 0);
  image.pwrite_at(0, random_bytes(4096, 3));
  CopyStats stats;
  {
    client::NbdClient c = open(server);
    stats = ImageImporter(c, image.fd(), {image.path(), "disk", true, Progress::Mode::kQuiet}).run();
  }
  server.join();
  EXPECT_TRUE(stats.verified);
  EXPECT_GE(count(server.seen, nbd::Command::kWriteZeroes), 1u);
  auto expected = image.contents();
  expected.resize(config.size);  // the tail past the image reads as zeroes too
  EXPECT_TRUE(server.data() == expected);
}

TEST(ImageImport, RefusesAnImageLargerThanTheVolume) {
  FakeNbdServer::Config config;
  config.size = 1 * MiB;
  FakeNbdServer server(config);
  TempFile image;
  ASSERT_EQ(::ftruncate(image.fd(), 2 * MiB), 0);
  client::NbdClient c = open(server);
  try {
    ImageImporter(c, image.fd(), {"big.raw", "db", true, Progress::Mode::kQuiet}).run();
    FAIL();
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("big.raw is 2 MiB (2097152 bytes), larger than volume \"db\" (1 MiB (1048576 bytes))"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("nothing was written"), std::string::npos) << what;
  }
  c.disconnect();
  server.join();
  EXPECT_EQ(count(server.seen, nbd::Command::kWrite), 0u);
}

TEST(ImageImport, VerificationCatchesAServerThatLies) {
  FakeNbdServer::Config config;
  config.size = 2 * MiB;
  config.ack_zeroes_without_zeroing = true;  // and reports old data as data
  FakeNbdServer server(config);
  std::fill(server.data().begin() + MiB, server.data().end(), std::byte{0x11});
  TempFile image;
  ASSERT_EQ(::ftruncate(image.fd(), 2 * MiB), 0);
  image.pwrite_at(0, random_bytes(4096, 4));
  client::NbdClient c = open(server);
  try {
    ImageImporter(c, image.fd(), {"img.raw", "disk", true, Progress::Mode::kQuiet}).run();
    FAIL() << "verification passed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("verification failed: volume \"disk\" differs from img.raw at byte 1048576 "
                                         "(0x11 on the volume, 0x00 in the image)"),
              std::string::npos)
        << e.what();
  }
}

TEST(ImageImport, WriteErrorSaysWhere) {
  FakeNbdServer::Config config;
  config.size = 2 * MiB;
  config.fail_writes_at = MiB;
  FakeNbdServer server(config);
  TempFile image;
  image.pwrite_at(0, random_bytes(2 * MiB, 5));
  client::NbdClient c = open(server);
  try {
    ImageImporter(c, image.fd(), {"img.raw", "disk", true, Progress::Mode::kQuiet}).run();
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NBD_CMD_WRITE at byte 1048576 of volume \"disk\" failed: EIO"),
              std::string::npos)
        << e.what();
  }
}

TEST(ImageExport, FileGetsHolesAndIdenticalBytes) {
  FakeNbdServer::Config config;
  config.size = 6 * MiB;
  FakeNbdServer server(config);
  const auto a = random_bytes(70000, 6);
  std::copy(a.begin(), a.end(), server.data().begin() + 3 * MiB);
  TempFile out;
  out.pwrite_at(0, random_bytes(8 * MiB, 7));  // an old, larger file is replaced
  CopyStats stats;
  {
    client::NbdClient c = open(server);
    stats = ImageExporter(c, out.fd(), {out.path(), "disk", true, Progress::Mode::kQuiet}).run();
  }
  server.join();
  EXPECT_TRUE(stats.verified);
  EXPECT_TRUE(out.contents() == server.data());
  EXPECT_LT(out.allocated(), 1 * MiB) << "holes were written as data";
  // Only the chunk with data was read.
  EXPECT_EQ(count(server.seen, nbd::Command::kRead), 1u);
}

TEST(ImageExport, PipeGetsEveryByteInOrder) {
  FakeNbdServer::Config config;
  config.size = 5 * MiB + 512;
  FakeNbdServer server(config);
  const auto a = random_bytes(config.size, 8);
  std::copy(a.begin(), a.end(), server.data().begin());
  std::fill(server.data().begin() + 2 * MiB, server.data().begin() + 3 * MiB, std::byte{0});
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::vector<std::byte> received;
  std::thread reader([&] {
    std::byte buf[65536];
    for (;;) {
      const ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n <= 0) break;
      received.insert(received.end(), buf, buf + n);
    }
  });
  CopyStats stats;
  {
    client::NbdClient c = open(server);
    stats = ImageExporter(c, p[1], {"stdout", "disk", true, Progress::Mode::kQuiet}).run();
  }
  ::close(p[1]);
  reader.join();
  ::close(p[0]);
  server.join();
  EXPECT_FALSE(stats.verified);  // a pipe cannot be read back
  EXPECT_TRUE(received == server.data());
}

TEST(ImageExport, AReaderThatGoesAwayEndsWithASoftDisconnect) {
  // "The client ... SHOULD wait until there are no inflight requests" before NBD_CMD_DISC:
  // a local failure (EPIPE on stdout) must not drop requests on the floor.
  std::signal(SIGPIPE, SIG_IGN);
  FakeNbdServer::Config config;
  config.size = 8 * MiB;
  FakeNbdServer server(config);
  const auto a = random_bytes(config.size, 9);
  std::copy(a.begin(), a.end(), server.data().begin());
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::close(p[0]);
  {
    client::NbdClient c = open(server);
    try {
      ImageExporter(c, p[1], {"stdout", "disk", true, Progress::Mode::kQuiet}).run();
      FAIL() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("writing stdout at byte 0: Broken pipe"), std::string::npos) << e.what();
    }
    EXPECT_EQ(c.in_flight(), 0u);
  }
  ::close(p[1]);
  server.join();
  ASSERT_FALSE(server.seen.empty());
  EXPECT_EQ(server.seen.back().type, static_cast<std::uint16_t>(nbd::Command::kDisc));
}

}  // namespace
}  // namespace blockd::tools
