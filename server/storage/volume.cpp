#include "server/storage/volume.h"

#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace blockd::server::storage {

using common::Errno;

Volume::Volume(Options options, std::unique_ptr<Backend> backend)
    : options_(std::move(options)), backend_(std::move(backend)), metrics_(options_.workers) {}

Result<void> Volume::check_writable() const {
  if (options_.read_only) return Errno{EPERM};
  if (poisoned()) return Errno{EIO};
  return {};
}

Result<void> Volume::record_sync(Result<void> result, const char* what) {
  if (result.ok()) return result;
  sync_failures_.fetch_add(1, std::memory_order_relaxed);
  if (!poisoned_.exchange(true)) {
    common::logger("storage")->critical(
        "volume poisoned volume={} backend=\"{}\" cause={} error=\"{}\": every further write "
        "and flush fails with EIO; data acknowledged since the last successful flush may be "
        "lost. Check the disk, then restart blockd to clear the state.",
        name(), describe(), what, std::strerror(result.error()));
  }
  return Errno{EIO};
}

asio::awaitable<Result<void>> Volume::sync(io::Ring& ring, const char* what) {
  if (options_.unsafe_ack_without_sync) co_return Result<void>{};
  co_return record_sync(co_await backend_->flush(ring), what);
}

asio::awaitable<Result<void>> Volume::read(io::Ring& ring, std::span<std::byte> out,
                                           std::uint64_t offset) {
  return backend_->read(ring, out, offset);
}

asio::awaitable<Result<void>> Volume::write(io::Ring& ring, std::span<const std::byte> data,
                                            std::uint64_t offset, bool fua) {
  if (auto ok = check_writable(); !ok) co_return ok;
  const bool durable = fua && !options_.unsafe_ack_without_sync;
  auto result = co_await backend_->write(ring, data, offset, durable);
  // A durable write that failed with EIO may have left dirty pages the kernel will
  // never write: the same hazard as a failed fsync.
  if (durable && result.error() == EIO) co_return record_sync(result, "fua-write");
  co_return result;
}

asio::awaitable<Result<void>> Volume::flush(io::Ring& ring) {
  if (poisoned()) co_return Errno{EIO};
  co_return co_await sync(ring, "flush");
}

asio::awaitable<Result<void>> Volume::trim(io::Ring& ring, std::uint64_t offset,
                                           std::uint64_t length, bool fua) {
  if (auto ok = check_writable(); !ok) co_return ok;
  auto result = co_await backend_->trim(ring, offset, length);
  if (!result.ok() || !fua) co_return result;
  co_return co_await sync(ring, "fua-trim");
}

asio::awaitable<Result<void>> Volume::write_zeroes(io::Ring& ring, std::uint64_t offset,
                                                   std::uint64_t length, ZeroMode mode,
                                                   bool fast_only, bool fua) {
  if (auto ok = check_writable(); !ok) co_return ok;
  auto result = co_await backend_->write_zeroes(ring, offset, length, mode, fast_only);
  if (!result.ok() || !fua) co_return result;
  co_return co_await sync(ring, "fua-write-zeroes");
}

asio::awaitable<Result<void>> Volume::cache(io::Ring& ring, std::uint64_t offset,
                                            std::uint64_t length) {
  return backend_->cache(ring, offset, length);
}

Result<std::vector<Extent>> Volume::extents(std::uint64_t offset, std::uint64_t length,
                                            std::size_t max_extents) {
  return backend_->extents(offset, length, max_extents);
}

}  // namespace blockd::server::storage
