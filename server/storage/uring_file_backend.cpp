#include "server/storage/uring_file_backend.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/nbd_protocol.h"
#include "common/size.h"

namespace blockd::server::storage {

using common::Errno;

namespace {

// fallocate/fadvise take 32-bit or bounded lengths per request; split long ranges.
constexpr std::uint64_t kZeroChunk = 1 << 20;

const std::array<std::byte, kZeroChunk>& zero_chunk() {
  static const std::array<std::byte, kZeroChunk> zeroes{};
  return zeroes;
}

[[noreturn]] void fail(const std::string& path, const std::string& what, int err = 0) {
  std::string message = path + ": " + what;
  if (err != 0) message += ": " + std::string(std::strerror(err));
  throw std::runtime_error(message);
}

}  // namespace

std::unique_ptr<UringFileBackend> UringFileBackend::open(const Options& options) {
  const std::string& path = options.path;
  int flags = O_CLOEXEC | (options.read_only ? O_RDONLY : O_RDWR);
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists) {
    if (errno != ENOENT) fail(path, "cannot stat", errno);
    if (!options.size) fail(path, "does not exist; give size=... to create it");
    if (options.read_only) fail(path, "does not exist and the volume is read-only");
    // Checked before creating, so a refused size leaves nothing behind.
    if (*options.size == 0 || *options.size % 512 != 0)
      fail(path, "size " + std::to_string(*options.size) + " is zero or is not a multiple of 512 bytes");
    flags |= O_CREAT | O_EXCL;
  }
  common::UniqueFd fd(::open(path.c_str(), flags, 0600));
  if (!fd.valid()) fail(path, "cannot open", errno);
  if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat", errno);

  const bool block_device = S_ISBLK(st.st_mode);
  std::uint64_t size = 0;
  if (block_device) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) fail(path, "BLKGETSIZE64 failed", errno);
    if (options.size && *options.size != size)
      fail(path, "is a block device of " + common::format_size(size) + " but size=" +
                     common::format_size(*options.size) + " was given; omit size= for devices");
  } else if (S_ISREG(st.st_mode)) {
    if (!exists) {
      // Sparse: only the size is set, nothing is allocated.
      if (::ftruncate(fd.get(), static_cast<off_t>(*options.size)) != 0) {
        const int err = errno;
        ::unlink(path.c_str());
        fail(path, "cannot set size", err);
      }
      size = *options.size;
    } else {
      size = static_cast<std::uint64_t>(st.st_size);
      if (options.size && *options.size != size)
        fail(path, "exists with size " + std::to_string(size) + " bytes but size=" +
                       std::to_string(*options.size) +
                       " was given; omit size= to use the file as it is");
    }
  } else {
    fail(path, "is neither a regular file nor a block device");
  }
  if (size == 0) fail(path, "has size 0");
  if (size % 512 != 0)
    fail(path, "size " + std::to_string(size) + " is not a multiple of 512 bytes");
  common::UniqueFd direct_fd;
  if (options.direct) {
    direct_fd = common::UniqueFd(::open(path.c_str(), (flags & ~(O_CREAT | O_EXCL)) | O_DIRECT));
    if (!direct_fd.valid())
      fail(path, "cannot open with O_DIRECT (the class has io = \"direct\"; use \"buffered\" on file "
                 "systems without direct I/O, such as tmpfs)", errno);
  }
  return std::unique_ptr<UringFileBackend>(
      new UringFileBackend(path, std::move(fd), std::move(direct_fd), size, block_device));
}

UringFileBackend::UringFileBackend(std::string path, common::UniqueFd fd, common::UniqueFd direct_fd,
                                   std::uint64_t size, bool block_device)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      direct_fd_(std::move(direct_fd)),
      size_(size),
      block_device_(block_device) {}

std::string UringFileBackend::describe() const {
  return (block_device_ ? "device " : "file ") + path_ + (direct_fd_.valid() ? " (O_DIRECT)" : "");
}

int UringFileBackend::fd_for(const void* buffer, std::size_t length, std::uint64_t offset) const {
  if (!direct_fd_.valid()) return fd_.get();
  const bool aligned = reinterpret_cast<std::uintptr_t>(buffer) % kDirectAlignment == 0 &&
                       length % kDirectAlignment == 0 && offset % kDirectAlignment == 0;
  return aligned ? direct_fd_.get() : fd_.get();
}

Result<void> UringFileBackend::grow(std::uint64_t new_size) {
  if (block_device_) return Errno{ENOTSUP};
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return Errno{errno};
  // The catalog grows the file before it tells the volume; never serve past its end.
  if (static_cast<std::uint64_t>(st.st_size) < new_size) return Errno{EIO};
  size_.store(new_size, std::memory_order_release);
  return Result<void>{};
}

asio::awaitable<Result<void>> UringFileBackend::read(io::Ring& ring, std::span<std::byte> out,
                                                     std::uint64_t offset) {
  while (!out.empty()) {
    const int n = co_await ring.read(fd_for(out.data(), out.size(), offset), out, offset);
    if (n < 0) co_return Errno{-n};
    if (n == 0) co_return Errno{EIO};  // the file shrank under us
    out = out.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  co_return Result<void>{};
}

asio::awaitable<Result<void>> UringFileBackend::write(io::Ring& ring, std::span<const std::byte> data,
                                                      std::uint64_t offset, bool durable) {
  const int rw_flags = durable ? RWF_DSYNC : 0;
  while (!data.empty()) {
    const int n = co_await ring.write(fd_for(data.data(), data.size(), offset), data, offset, rw_flags);
    if (n < 0) co_return Errno{-n};
    if (n == 0) co_return Errno{EIO};
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  co_return Result<void>{};
}

asio::awaitable<Result<void>> UringFileBackend::flush(io::Ring& ring) {
  co_return common::from_syscall(co_await ring.fdatasync(fd_.get()));
}

asio::awaitable<Result<void>> UringFileBackend::trim(io::Ring& ring, std::uint64_t offset,
                                                     std::uint64_t length) {
  const int ret =
      co_await ring.fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  // TRIM is advisory (nbd-proto.md "NBD_CMD_TRIM"): a file system that cannot punch
  // holes simply keeps the data.
  if (ret == -EOPNOTSUPP || ret == -ENOSYS) co_return Result<void>{};
  co_return common::from_syscall(ret);
}

asio::awaitable<Result<void>> UringFileBackend::write_zeroes(io::Ring& ring, std::uint64_t offset,
                                                             std::uint64_t length, ZeroMode mode,
                                                             bool fast_only) {
  // Punching a hole reads back as zeroes on files and devices alike; ZERO_RANGE keeps
  // the blocks allocated, as NBD_CMD_FLAG_NO_HOLE asks.
  const int fl_mode = mode == ZeroMode::kMayTrim ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                                 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
  const int ret = co_await ring.fallocate(fd_.get(), fl_mode, offset, length);
  if (ret >= 0) co_return Result<void>{};
  if (ret != -EOPNOTSUPP && ret != -ENOSYS && ret != -EINVAL) co_return Errno{-ret};
  // No fast way: "NBD_CMD_FLAG_FAST_ZERO ... MUST fail quickly with NBD_ENOTSUP".
  if (fast_only) co_return Errno{ENOTSUP};
  co_return co_await write_zero_buffers(ring, offset, length);
}

asio::awaitable<Result<void>> UringFileBackend::write_zero_buffers(io::Ring& ring,
                                                                   std::uint64_t offset,
                                                                   std::uint64_t length) {
  while (length > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min(length, kZeroChunk));
    auto result = co_await write(ring, std::span<const std::byte>(zero_chunk().data(), n), offset, false);
    if (!result) co_return result;
    offset += n;
    length -= n;
  }
  co_return Result<void>{};
}

asio::awaitable<Result<void>> UringFileBackend::cache(io::Ring& ring, std::uint64_t offset,
                                                      std::uint64_t length) {
  while (length > 0) {
    const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(length, 1U << 30));
    const int ret = co_await ring.fadvise(fd_.get(), offset, n, POSIX_FADV_WILLNEED);
    if (ret < 0) co_return Errno{-ret};
    offset += n;
    length -= n;
  }
  co_return Result<void>{};
}

Result<std::vector<Extent>> UringFileBackend::extents(std::uint64_t offset, std::uint64_t length,
                                                      std::size_t max_extents) {
  std::vector<Extent> out;
  const std::uint64_t end = std::min(size(), offset + length);
  if (block_device_) {
    out.push_back({end - offset, 0});  // a device reports no holes
    return out;
  }
  while (offset < end && out.size() < max_extents) {
    const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0 && errno != ENXIO) {
      if (out.empty() && (errno == EINVAL || errno == EOPNOTSUPP)) {
        out.push_back({end - offset, 0});  // the file system cannot tell: all data
        return out;
      }
      return Errno{errno};
    }
    const std::uint64_t data_start = data < 0 ? end : std::min<std::uint64_t>(end, static_cast<std::uint64_t>(data));
    if (data_start > offset) {  // a hole up to data_start
      out.push_back({data_start - offset, common::nbd::kStateHole | common::nbd::kStateZero});
      offset = data_start;
      continue;
    }
    const off_t hole = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_HOLE);
    if (hole < 0) return Errno{errno};
    const std::uint64_t hole_start = std::min<std::uint64_t>(end, static_cast<std::uint64_t>(hole));
    if (hole_start <= offset) {  // raced with a write or punch: report the rest as data
      out.push_back({end - offset, 0});
      break;
    }
    out.push_back({hole_start - offset, 0});
    offset = hole_start;
  }
  return out;
}

}  // namespace blockd::server::storage
