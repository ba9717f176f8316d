// UringFileBackend: a regular file or a block device, every data operation through
// the calling worker's io_uring ring (DESIGN.md §3):
//   READ/WRITE -> IORING_OP_READ/WRITE, FUA -> RWF_DSYNC, FLUSH -> fdatasync,
//   TRIM -> fallocate(PUNCH_HOLE), WRITE_ZEROES -> fallocate(PUNCH_HOLE or ZERO_RANGE),
//   CACHE -> fadvise(WILLNEED). Block status uses lseek(SEEK_DATA/SEEK_HOLE).
//
// Thread affinity: any worker; the fd is shared and has no private cache, which is
// what makes CAN_MULTI_CONN true.
#pragma once

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
  };
  // Opens (creating a sparse file when missing and a size is given). Throws
  // std::runtime_error with a message that names the path and the problem.
  static std::unique_ptr<UringFileBackend> open(const Options& options);

  std::uint64_t size() const override { return size_; }
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

 private:
  UringFileBackend(std::string path, common::UniqueFd fd, std::uint64_t size, bool block_device);
  asio::awaitable<Result<void>> write_zero_buffers(io::Ring& ring, std::uint64_t offset,
                                                   std::uint64_t length);

  std::string path_;
  common::UniqueFd fd_;
  std::uint64_t size_;
  bool block_device_;
};

}  // namespace blockd::server::storage
