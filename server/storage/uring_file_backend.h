// UringFileBackend: a regular file or a block device, every data operation through
// the calling worker's io_uring ring (DESIGN.md §3):
//   READ/WRITE -> IORING_OP_READ/WRITE, FUA -> RWF_DSYNC, FLUSH -> fdatasync,
//   TRIM -> fallocate(PUNCH_HOLE), WRITE_ZEROES -> fallocate(PUNCH_HOLE or ZERO_RANGE),
//   CACHE -> fadvise(WILLNEED). Block status uses lseek(SEEK_DATA/SEEK_HOLE).
//
// Thread affinity: any worker; the fd is shared and has no private cache, which is
// what makes CAN_MULTI_CONN true.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "common/unique_fd.h"
#include "server/storage/backend.h"

namespace blockd::server::storage {

class UringFileBackend final : public Backend {
 public:
  struct Options {
    std::string path;
    std::optional<std::uint64_t> size;  // required to create a missing file
    bool read_only = false;
    // O_DIRECT for requests aligned to kDirectAlignment (offset, length and buffer); any
    // other request goes through a second, buffered descriptor of the same file (the
    // kernel keeps the two coherent: a direct write invalidates cached pages, a direct
    // read first writes back dirty ones). NBD clients that did not negotiate block sizes
    // may send any alignment (nbd-proto.md "Block size constraints").
    bool direct = false;
  };
  static constexpr std::uint64_t kDirectAlignment = 4096;
  // Opens (creating a sparse file when missing and a size is given). Throws
  // std::runtime_error with a message that names the path and the problem.
  static std::unique_ptr<UringFileBackend> open(const Options& options);

  std::uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  std::string describe() const override;

  asio::awaitable<Result<void>> read(io::Ring& ring, std::span<std::byte> out,
                                     std::uint64_t offset) override;
  asio::awaitable<Result<void>> write(io::Ring& ring, std::span<const std::byte> data,
                                      std::uint64_t offset, bool durable) override;
  asio::awaitable<Result<void>> flush(io::Ring& ring) override;
  asio::awaitable<Result<void>> trim(io::Ring& ring, std::uint64_t offset,
                                     std::uint64_t length) override;
  asio::awaitable<Result<void>> write_zeroes(io::Ring& ring, std::uint64_t offset,
                                             std::uint64_t length, ZeroMode mode,
                                             bool fast_only) override;
  asio::awaitable<Result<void>> cache(io::Ring& ring, std::uint64_t offset,
                                      std::uint64_t length) override;
  Result<std::vector<Extent>> extents(std::uint64_t offset, std::uint64_t length,
                                      std::size_t max_extents) override;
  Result<void> grow(std::uint64_t new_size) override;

 private:
  UringFileBackend(std::string path, common::UniqueFd fd, common::UniqueFd direct_fd, std::uint64_t size,
                   bool block_device);
  // The descriptor for a data transfer: the O_DIRECT one when the request allows it.
  int fd_for(const void* buffer, std::size_t length, std::uint64_t offset) const;
  asio::awaitable<Result<void>> write_zero_buffers(io::Ring& ring, std::uint64_t offset,
                                                   std::uint64_t length);

  std::string path_;
  common::UniqueFd fd_;
  common::UniqueFd direct_fd_;  // invalid unless Options::direct
  std::atomic<std::uint64_t> size_;
  bool block_device_;
};

}  // namespace blockd::server::storage
