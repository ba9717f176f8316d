// UringFileBackend (server/storage/uring_file_backend.h) on a real io_uring Ring and
// real files: data, FUA, flush, trim/holes, write zeroes in both modes, fast zero,
// cache, block status from SEEK_DATA/SEEK_HOLE, and every open() error.
//
// /tmp is where the tests' files live; the fast-zero fallback is exercised on
// /dev/shm (tmpfs has PUNCH_HOLE but no ZERO_RANGE). Block devices are not tested
// here (that needs a loop device; tests/integration covers the disk path).
#include "server/storage/uring_file_backend.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/nbd_protocol.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
namespace wire = blockd::common::nbd;
using blockd::common::Result;
using blockd::server::io::Ring;
using blockd::server::storage::Extent;
using blockd::server::storage::UringFileBackend;
using blockd::server::storage::ZeroMode;
using blockd::test::all_zero;
using blockd::test::pattern;
using blockd::test::run_coroutine;
using blockd::test::TempFile;
using testing::HasSubstr;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint32_t kHoleZero = wire::kStateHole | wire::kStateZero;

std::string open_error(const UringFileBackend::Options& options) {
  try {
    UringFileBackend::open(options);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

class UringFileBackendTest : public testing::Test {
 protected:
  // Opens a fresh sparse file of `size` bytes in `dir`, created by the backend itself.
  void open_new(std::uint64_t size, const std::string& dir = "/tmp") {
    file_ = std::make_unique<TempFile>(dir);
    file_->remove();
    backend_ = UringFileBackend::open({file_->path(), size, false});
  }

  Result<void> write(const std::vector<std::byte>& data, std::uint64_t offset, bool durable = false) {
    return run_coroutine(context_, backend_->write(ring_, data, offset, durable));
  }
  Result<void> read(std::vector<std::byte>& out, std::uint64_t offset) {
    return run_coroutine(context_, backend_->read(ring_, out, offset));
  }
  std::vector<std::byte> read_back(std::size_t size, std::uint64_t offset) {
    std::vector<std::byte> out(size);
    auto r = read(out, offset);
    EXPECT_TRUE(r.ok()) << std::strerror(r.error());
    return out;
  }
  Result<void> zero(std::uint64_t offset, std::uint64_t length, ZeroMode mode, bool fast_only) {
    return run_coroutine(context_, backend_->write_zeroes(ring_, offset, length, mode, fast_only));
  }
  std::vector<Extent> extents(std::uint64_t offset, std::uint64_t length, std::size_t max = 1024) {
    auto r = backend_->extents(offset, length, max);
    EXPECT_TRUE(r.ok()) << std::strerror(r.error());
    return r.ok() ? r.value() : std::vector<Extent>{};
  }

  asio::io_context context_;
  Ring ring_{context_, 16};
  std::unique_ptr<TempFile> file_;
  std::unique_ptr<UringFileBackend> backend_;
};

// ---------------------------------------------------------------- open

TEST_F(UringFileBackendTest, CreatesAMissingFileSparseWithTheGivenSize) {
  open_new(4 * kMiB);
  EXPECT_EQ(backend_->size(), 4 * kMiB);
  EXPECT_EQ(backend_->describe(), "file " + file_->path());
  struct stat st {};
  ASSERT_EQ(::stat(file_->path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 4 * kMiB);
  EXPECT_EQ(st.st_blocks, 0);  // sparse: nothing allocated
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  EXPECT_EQ(extents(0, 4 * kMiB), (std::vector<Extent>{{4 * kMiB, kHoleZero}}));
}

TEST_F(UringFileBackendTest, OpensAnExistingFileAtItsOwnSize) {
  TempFile file;
  file.resize(2 * kMiB);
  auto backend = UringFileBackend::open({file.path(), std::nullopt, false});
  EXPECT_EQ(backend->size(), 2 * kMiB);
  // Giving the same size again is fine.
  backend = UringFileBackend::open({file.path(), 2 * kMiB, false});
  EXPECT_EQ(backend->size(), 2 * kMiB);
}

TEST_F(UringFileBackendTest, ExistingDataIsKept) {
  TempFile file;
  file.resize(kMiB);
  {
    const auto data = pattern(4096, 77);
    const int fd = ::open(file.path().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 8192), 4096);
    ::close(fd);
  }
  backend_ = UringFileBackend::open({file.path(), std::nullopt, false});
  EXPECT_EQ(read_back(4096, 8192), pattern(4096, 77));
}

TEST(UringFileBackendOpen, MissingFileWithoutSize) {
  TempFile file;
  file.remove();
  const std::string message = open_error({file.path(), std::nullopt, false});
  EXPECT_THAT(message, HasSubstr(file.path() + ": does not exist; give size=... to create it"));
  EXPECT_FALSE(file.exists());
}

TEST(UringFileBackendOpen, MissingFileOnAReadOnlyVolume) {
  TempFile file;
  file.remove();
  const std::string message = open_error({file.path(), kMiB, true});
  EXPECT_THAT(message, HasSubstr(file.path() + ": does not exist and the volume is read-only"));
  EXPECT_FALSE(file.exists());
}

TEST(UringFileBackendOpen, SizeMismatch) {
  TempFile file;
  file.resize(kMiB);
  const std::string message = open_error({file.path(), 2 * kMiB, false});
  EXPECT_THAT(message, HasSubstr(file.path() + ": exists with size 1048576 bytes but size=2097152 was given"));
  EXPECT_THAT(message, HasSubstr("omit size="));
  struct stat st {};
  ASSERT_EQ(::stat(file.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(kMiB));  // left alone
}

TEST(UringFileBackendOpen, ExistingSizeNotAMultipleOf512) {
  TempFile file;
  file.resize(1000);
  EXPECT_THAT(open_error({file.path(), std::nullopt, false}),
              HasSubstr(file.path() + ": size 1000 is not a multiple of 512 bytes"));
}

TEST(UringFileBackendOpen, EmptyFile) {
  TempFile file;  // mkstemp: 0 bytes
  EXPECT_THAT(open_error({file.path(), std::nullopt, false}), HasSubstr(file.path() + ": has size 0"));
}

TEST(UringFileBackendOpen, Directory) {
  std::string dir = "/tmp/blockd-unit-dir-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string message = open_error({dir, std::nullopt, true});
  ::rmdir(dir.c_str());
  EXPECT_THAT(message, HasSubstr(dir + ": "));
  // O_RDWR on a directory fails at open (EISDIR); read-only gets as far as the type check.
  EXPECT_THAT(message, HasSubstr("is neither a regular file nor a block device"));
}

TEST(UringFileBackendOpen, DirectoryReadWrite) {
  std::string dir = "/tmp/blockd-unit-dir-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string message = open_error({dir, std::nullopt, false});
  ::rmdir(dir.c_str());
  EXPECT_THAT(message, HasSubstr(dir + ": cannot open: Is a directory"));
}

TEST(UringFileBackendOpen, CharacterDevice) {
  EXPECT_THAT(open_error({"/dev/null", std::nullopt, true}),
              HasSubstr("/dev/null: is neither a regular file nor a block device"));
}

TEST(UringFileBackendOpen, MissingDirectory) {
  EXPECT_THAT(open_error({"/nonexistent-blockd-dir/x.img", kMiB, false}),
              HasSubstr("/nonexistent-blockd-dir/x.img: cannot open: No such file or directory"));
}

TEST(UringFileBackendOpen, CreatingWithAnUnusableSizeLeavesNoFileBehind) {
  // open() creates the file before it checks the size; when it then refuses the
  // size, the file it created must not be left on disk.
  TempFile file;
  file.remove();
  EXPECT_THAT(open_error({file.path(), 1000, false}), HasSubstr("is not a multiple of 512 bytes"));
  EXPECT_FALSE(file.exists()) << "a failed open() left " << file.path() << " behind";
}

// ---------------------------------------------------------------- read / write

TEST_F(UringFileBackendTest, WriteReadRoundTripAtOffsets) {
  open_new(4 * kMiB);
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{512}, std::uint64_t{65536}, std::uint64_t{1000000}, 4 * kMiB - 4096}) {
    const auto data = pattern(4096, static_cast<unsigned>(offset));
    ASSERT_TRUE(write(data, offset).ok()) << offset;
    EXPECT_EQ(read_back(4096, offset), data) << offset;
  }
  // An unwritten region reads as zeroes.
  EXPECT_TRUE(all_zero(read_back(4096, 2 * kMiB)));
}

TEST_F(UringFileBackendTest, LargeWriteAndRead) {
  open_new(64 * kMiB);
  const auto data = pattern(32 * kMiB, 5);
  ASSERT_TRUE(write(data, 16 * kMiB).ok());
  EXPECT_EQ(read_back(32 * kMiB, 16 * kMiB), data);
}

TEST_F(UringFileBackendTest, DurableWrite) {
  open_new(kMiB);
  const auto data = pattern(8192, 11);
  ASSERT_TRUE(write(data, 4096, true).ok());
  EXPECT_EQ(read_back(8192, 4096), data);
  // What it wrote is in the file itself, for any other reader.
  std::vector<std::byte> direct(8192);
  const int fd = ::open(file_->path().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, direct.data(), direct.size(), 4096), 8192);
  ::close(fd);
  EXPECT_EQ(direct, data);
}

TEST_F(UringFileBackendTest, Flush) {
  open_new(kMiB);
  ASSERT_TRUE(write(pattern(4096), 0).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_->flush(ring_)).ok());
}

TEST_F(UringFileBackendTest, ReadPastTheEndOfTheFileIsEio) {
  // The validator keeps clients inside the export; if the file shrank underneath,
  // the short read is an I/O error, never stale or missing bytes reported as data.
  open_new(kMiB);
  std::vector<std::byte> out(8192);
  auto r = read(out, kMiB - 4096);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EIO);
}

TEST_F(UringFileBackendTest, WriteToAReadOnlyFileFails) {
  TempFile file;
  file.resize(kMiB);
  backend_ = UringFileBackend::open({file.path(), std::nullopt, true});
  auto r = write(pattern(512), 0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EBADF);
  EXPECT_TRUE(all_zero(read_back(512, 0)));
}

// ---------------------------------------------------------------- trim

TEST_F(UringFileBackendTest, TrimMakesAHole) {
  open_new(kMiB);
  const auto data = pattern(kMiB);
  ASSERT_TRUE(write(data, 0).ok());
  ASSERT_EQ(extents(0, kMiB), (std::vector<Extent>{{kMiB, 0}}));
  const auto allocated_before = file_->allocated_bytes();
  ASSERT_TRUE(run_coroutine(context_, backend_->trim(ring_, 256 * kKiB, 256 * kKiB)).ok());
  EXPECT_EQ(extents(0, kMiB),
            (std::vector<Extent>{{256 * kKiB, 0}, {256 * kKiB, kHoleZero}, {512 * kKiB, 0}}));
  EXPECT_LE(file_->allocated_bytes(), allocated_before - 256 * kKiB);
  // Only the trimmed range changed.
  EXPECT_TRUE(all_zero(read_back(256 * kKiB, 256 * kKiB)));
  EXPECT_EQ(read_back(256 * kKiB, 0), std::vector<std::byte>(data.begin(), data.begin() + 256 * kKiB));
  EXPECT_EQ(read_back(512 * kKiB, 512 * kKiB), std::vector<std::byte>(data.begin() + 512 * kKiB, data.end()));
}

// ---------------------------------------------------------------- write zeroes

TEST_F(UringFileBackendTest, WriteZeroesMayTrimPunchesAHole) {
  open_new(kMiB);
  const auto data = pattern(kMiB, 3);
  ASSERT_TRUE(write(data, 0).ok());
  const auto allocated_before = file_->allocated_bytes();
  auto r = zero(128 * kKiB, 128 * kKiB, ZeroMode::kMayTrim, false);
  ASSERT_TRUE(r.ok()) << std::strerror(r.error());
  EXPECT_TRUE(all_zero(read_back(128 * kKiB, 128 * kKiB)));
  EXPECT_EQ(read_back(128 * kKiB, 0), std::vector<std::byte>(data.begin(), data.begin() + 128 * kKiB));
  EXPECT_EQ(read_back(768 * kKiB, 256 * kKiB), std::vector<std::byte>(data.begin() + 256 * kKiB, data.end()));
  EXPECT_EQ(extents(0, kMiB),
            (std::vector<Extent>{{128 * kKiB, 0}, {128 * kKiB, kHoleZero}, {768 * kKiB, 0}}));
  EXPECT_LE(file_->allocated_bytes(), allocated_before - 128 * kKiB);
}

TEST_F(UringFileBackendTest, WriteZeroesNoHoleKeepsTheBlocksAllocated) {
  open_new(kMiB);
  const auto data = pattern(kMiB, 4);
  ASSERT_TRUE(write(data, 0).ok());
  ASSERT_TRUE(run_coroutine(context_, backend_->flush(ring_)).ok());
  const auto allocated_before = file_->allocated_bytes();
  ASSERT_GE(allocated_before, kMiB);
  auto r = zero(128 * kKiB, 128 * kKiB, ZeroMode::kNoHole, false);
  ASSERT_TRUE(r.ok()) << std::strerror(r.error());
  EXPECT_TRUE(all_zero(read_back(128 * kKiB, 128 * kKiB)));
  EXPECT_EQ(read_back(128 * kKiB, 0), std::vector<std::byte>(data.begin(), data.begin() + 128 * kKiB));
  EXPECT_EQ(read_back(768 * kKiB, 256 * kKiB), std::vector<std::byte>(data.begin() + 256 * kKiB, data.end()));
  EXPECT_GE(file_->allocated_bytes(), allocated_before);  // NO_HOLE: still provisioned
}

TEST_F(UringFileBackendTest, WriteZeroesOnAHoleStaysZero) {
  open_new(kMiB);
  ASSERT_TRUE(zero(0, kMiB, ZeroMode::kMayTrim, false).ok());
  EXPECT_TRUE(all_zero(read_back(kMiB, 0)));
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{kMiB, kHoleZero}}));
}

TEST_F(UringFileBackendTest, FastZeroSucceedsWhereTheFileSystemCanZeroQuickly) {
  // ext4 (/tmp here) has both PUNCH_HOLE and ZERO_RANGE.
  open_new(kMiB);
  struct statfs fs {};
  ASSERT_EQ(::statfs(file_->path().c_str(), &fs), 0);
  if (fs.f_type != EXT4_SUPER_MAGIC) GTEST_SKIP() << "/tmp is not ext4";
  const auto data = pattern(kMiB, 6);
  ASSERT_TRUE(write(data, 0).ok());
  for (ZeroMode mode : {ZeroMode::kMayTrim, ZeroMode::kNoHole}) {
    ASSERT_TRUE(write(data, 0).ok());
    auto r = zero(64 * kKiB, 64 * kKiB, mode, true);
    EXPECT_TRUE(r.ok()) << std::strerror(r.error());
    EXPECT_TRUE(all_zero(read_back(64 * kKiB, 64 * kKiB)));
  }
}

class TmpfsBackendTest : public UringFileBackendTest {
 protected:
  void SetUp() override {
    struct statfs fs {};
    if (::statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) GTEST_SKIP() << "/dev/shm is not tmpfs";
    open_new(4 * kMiB, "/dev/shm");
  }
};

TEST_F(TmpfsBackendTest, FastZeroWithoutAFastWayFailsWithEnotsupAndChangesNothing) {
  // tmpfs cannot ZERO_RANGE: "NBD_CMD_FLAG_FAST_ZERO ... MUST fail quickly with
  // NBD_ENOTSUP ... SHOULD NOT alter the contents of the export".
  const auto data = pattern(4 * kMiB, 8);
  ASSERT_TRUE(write(data, 0).ok());
  auto r = zero(kMiB, kMiB, ZeroMode::kNoHole, true);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ENOTSUP);
  EXPECT_EQ(read_back(4 * kMiB, 0), data);
}

TEST_F(TmpfsBackendTest, WithoutFastOnlyItFallsBackToWritingZeroes) {
  // More than one 1 MiB zero buffer, and not a multiple of it.
  const auto data = pattern(4 * kMiB, 9);
  ASSERT_TRUE(write(data, 0).ok());
  const std::uint64_t offset = 512 * kKiB, length = 2 * kMiB + 4096;
  auto r = zero(offset, length, ZeroMode::kNoHole, false);
  ASSERT_TRUE(r.ok()) << std::strerror(r.error());
  EXPECT_TRUE(all_zero(read_back(length, offset)));
  EXPECT_EQ(read_back(offset, 0), std::vector<std::byte>(data.begin(), data.begin() + offset));
  EXPECT_EQ(read_back(4 * kMiB - offset - length, offset + length),
            std::vector<std::byte>(data.begin() + static_cast<std::ptrdiff_t>(offset + length), data.end()));
  // Written zeroes are data, not holes: NO_HOLE was honoured.
  EXPECT_EQ(extents(0, 4 * kMiB), (std::vector<Extent>{{4 * kMiB, 0}}));
}

TEST_F(TmpfsBackendTest, MayTrimPunchesEvenOnTmpfsAndIsFast) {
  const auto data = pattern(4 * kMiB, 10);
  ASSERT_TRUE(write(data, 0).ok());
  auto r = zero(kMiB, kMiB, ZeroMode::kMayTrim, true);
  ASSERT_TRUE(r.ok()) << std::strerror(r.error());
  EXPECT_TRUE(all_zero(read_back(kMiB, kMiB)));
  EXPECT_EQ(extents(0, 4 * kMiB), (std::vector<Extent>{{kMiB, 0}, {kMiB, kHoleZero}, {2 * kMiB, 0}}));
}

// ---------------------------------------------------------------- cache

TEST_F(UringFileBackendTest, Cache) {
  open_new(4 * kMiB);
  ASSERT_TRUE(write(pattern(kMiB, 12), 0).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_->cache(ring_, 0, 4 * kMiB)).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_->cache(ring_, 4096, 512)).ok());
  EXPECT_TRUE(run_coroutine(context_, backend_->cache(ring_, 0, 0)).ok());
  EXPECT_EQ(read_back(kMiB, 0), pattern(kMiB, 12));  // no difference in semantics
}

// ---------------------------------------------------------------- block status

class SparseFileTest : public UringFileBackendTest {
 protected:
  // 1 MiB: hole [0, 256K), data [256K, 320K), hole [320K, 1M).
  void SetUp() override {
    open_new(kMiB);
    ASSERT_TRUE(write(pattern(64 * kKiB, 13), 256 * kKiB).ok());
  }
};

TEST_F(SparseFileTest, HoleDataHole) {
  EXPECT_EQ(extents(0, kMiB),
            (std::vector<Extent>{{256 * kKiB, kHoleZero}, {64 * kKiB, 0}, {704 * kKiB, kHoleZero}}));
}

TEST_F(SparseFileTest, StartingInsideARun) {
  EXPECT_EQ(extents(128 * kKiB, 256 * kKiB),
            (std::vector<Extent>{{128 * kKiB, kHoleZero}, {64 * kKiB, 0}, {64 * kKiB, kHoleZero}}));
  EXPECT_EQ(extents(288 * kKiB, 4096), (std::vector<Extent>{{4096, 0}}));
  EXPECT_EQ(extents(288 * kKiB, 64 * kKiB), (std::vector<Extent>{{32 * kKiB, 0}, {32 * kKiB, kHoleZero}}));
  EXPECT_EQ(extents(512 * kKiB, 512 * kKiB), (std::vector<Extent>{{512 * kKiB, kHoleZero}}));
}

TEST_F(SparseFileTest, MaxExtentsIsHonoured) {
  EXPECT_EQ(extents(0, kMiB, 1), (std::vector<Extent>{{256 * kKiB, kHoleZero}}));  // REQ_ONE
  EXPECT_EQ(extents(0, kMiB, 2), (std::vector<Extent>{{256 * kKiB, kHoleZero}, {64 * kKiB, 0}}));
}

TEST_F(SparseFileTest, ClippedToTheFileSize) {
  EXPECT_EQ(extents(768 * kKiB, kMiB), (std::vector<Extent>{{256 * kKiB, kHoleZero}}));
}

TEST_F(SparseFileTest, FullyWrittenFileIsOneDataExtent) {
  ASSERT_TRUE(write(pattern(kMiB, 14), 0).ok());
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{kMiB, 0}}));
  EXPECT_EQ(extents(0, kMiB, 1), (std::vector<Extent>{{kMiB, 0}}));
}

TEST_F(SparseFileTest, DataAtTheVeryEnd) {
  ASSERT_TRUE(write(pattern(4096, 15), kMiB - 4096).ok());
  EXPECT_EQ(extents(0, kMiB), (std::vector<Extent>{{256 * kKiB, kHoleZero},
                                                   {64 * kKiB, 0},
                                                   {kMiB - 320 * kKiB - 4096, kHoleZero},
                                                   {4096, 0}}));
}

}  // namespace
