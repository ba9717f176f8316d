// Backend: where a volume's bytes live. Implementations: UringFileBackend (files and
// block devices through io_uring) and MemoryBackend (sparse RAM, tests and demos).
//
// A Backend does the I/O and nothing else: bounds, flags, durability rules (FUA,
// poisoning) and the unsafe test mode are the Volume's job, in one place.
//
// Thread affinity: one Backend is shared by every worker serving its volume; each
// call gets the calling worker's Ring. Implementations must be safe for concurrent
// calls from several workers.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "server/io/ring.h"

namespace blockd::server::storage {

namespace asio = boost::asio;
using common::Result;

// One run of the base:allocation context: `flags` is a combination of
// nbd::kStateHole and nbd::kStateZero (nbd-proto.md "base:allocation metadata context").
struct Extent {
  std::uint64_t length = 0;
  std::uint32_t flags = 0;
};

enum class ZeroMode {
  kMayTrim,   // the range may be deallocated (no NBD_CMD_FLAG_NO_HOLE)
  kNoHole,    // the range must stay allocated (NBD_CMD_FLAG_NO_HOLE)
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::uint64_t size() const = 0;
  virtual std::string describe() const = 0;  // for logs: "file /var/lib/blockd/x.img"

  virtual asio::awaitable<Result<void>> read(io::Ring& ring, std::span<std::byte> out,
                                             std::uint64_t offset) = 0;
  // `durable`: the data is on stable storage when this returns (NBD_CMD_FLAG_FUA).
  virtual asio::awaitable<Result<void>> write(io::Ring& ring, std::span<const std::byte> data,
                                              std::uint64_t offset, bool durable) = 0;
  // Every write completed before this call is on stable storage when it returns.
  virtual asio::awaitable<Result<void>> flush(io::Ring& ring) = 0;
  // Advisory deallocation; the range's contents become unspecified (NBD_CMD_TRIM).
  virtual asio::awaitable<Result<void>> trim(io::Ring& ring, std::uint64_t offset,
                                             std::uint64_t length) = 0;
  // The range reads back as zeroes. `fast_only`: fail with ENOTSUP rather than
  // fall back to writing zero buffers (NBD_CMD_FLAG_FAST_ZERO).
  virtual asio::awaitable<Result<void>> write_zeroes(io::Ring& ring, std::uint64_t offset,
                                                     std::uint64_t length, ZeroMode mode,
                                                     bool fast_only) = 0;
  // Prefetch hint (NBD_CMD_CACHE).
  virtual asio::awaitable<Result<void>> cache(io::Ring& ring, std::uint64_t offset,
                                              std::uint64_t length) = 0;
  // Allocation map starting at `offset`, covering at most `length` bytes in at most
  // `max_extents` extents (at least one, unless an error occurs).
  virtual Result<std::vector<Extent>> extents(std::uint64_t offset, std::uint64_t length,
                                              std::size_t max_extents) = 0;
  // The storage underneath has been grown to `new_size` (the catalog's resize): serve
  // up to there from now on. ENOTSUP for backends that cannot grow.
  virtual Result<void> grow(std::uint64_t new_size) {
    (void)new_size;
    return common::Errno{ENOTSUP};
  }
};

}  // namespace blockd::server::storage
