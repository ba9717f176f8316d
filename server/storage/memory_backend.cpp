#include "server/storage/memory_backend.h"

#include <algorithm>
#include <cstring>

#include "common/nbd_protocol.h"
#include "common/size.h"

namespace blockd::server::storage {

MemoryBackend::MemoryBackend(std::uint64_t size) : size_(size) {}

std::string MemoryBackend::describe() const { return "memory " + common::format_size(size_); }

asio::awaitable<Result<void>> MemoryBackend::read(io::Ring&, std::span<std::byte> out,
                                                  std::uint64_t offset) {
  std::lock_guard lock(mutex_);
  while (!out.empty()) {
    const std::uint64_t within = offset % kChunk;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), kChunk - within));
    auto it = chunks_.find(offset / kChunk);
    if (it == chunks_.end()) {
      std::memset(out.data(), 0, n);
    } else {
      std::memcpy(out.data(), it->second.get() + within, n);
    }
    out = out.subspan(n);
    offset += n;
  }
  co_return Result<void>{};
}

asio::awaitable<Result<void>> MemoryBackend::write(io::Ring&, std::span<const std::byte> data,
                                                   std::uint64_t offset, bool) {
  std::lock_guard lock(mutex_);
  while (!data.empty()) {
    const std::uint64_t within = offset % kChunk;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(data.size(), kChunk - within));
    Chunk& chunk = chunks_[offset / kChunk];
    if (!chunk) {
      chunk = std::make_unique<std::byte[]>(kChunk);  // value-initialised: zeroes
    }
    std::memcpy(chunk.get() + within, data.data(), n);
    data = data.subspan(n);
    offset += n;
  }
  co_return Result<void>{};
}

asio::awaitable<Result<void>> MemoryBackend::flush(io::Ring&) { co_return Result<void>{}; }

void MemoryBackend::zero_locked(std::uint64_t offset, std::uint64_t length) {
  const std::uint64_t end = offset + length;
  while (offset < end) {
    const std::uint64_t index = offset / kChunk;
    const std::uint64_t within = offset % kChunk;
    const std::uint64_t n = std::min(end - offset, kChunk - within);
    auto it = chunks_.find(index);
    if (it != chunks_.end()) {
      if (n == kChunk) {
        chunks_.erase(it);
      } else {
        std::memset(it->second.get() + within, 0, static_cast<std::size_t>(n));
      }
    }
    offset += n;
  }
}

asio::awaitable<Result<void>> MemoryBackend::trim(io::Ring&, std::uint64_t offset,
                                                  std::uint64_t length) {
  std::lock_guard lock(mutex_);
  zero_locked(offset, length);
  co_return Result<void>{};
}

asio::awaitable<Result<void>> MemoryBackend::write_zeroes(io::Ring&, std::uint64_t offset,
                                                          std::uint64_t length, ZeroMode, bool) {
  // In RAM a hole is as good as allocated zeroes, and always fast.
  std::lock_guard lock(mutex_);
  zero_locked(offset, length);
  co_return Result<void>{};
}

asio::awaitable<Result<void>> MemoryBackend::cache(io::Ring&, std::uint64_t, std::uint64_t) {
  co_return Result<void>{};
}

Result<std::vector<Extent>> MemoryBackend::extents(std::uint64_t offset, std::uint64_t length,
                                                   std::size_t max_extents) {
  std::lock_guard lock(mutex_);
  std::vector<Extent> out;
  const std::uint64_t end = std::min(size_, offset + length);
  while (offset < end) {
    const bool present = chunks_.count(offset / kChunk) != 0;
    const std::uint32_t flags = present ? 0 : (common::nbd::kStateHole | common::nbd::kStateZero);
    const std::uint64_t n = std::min(end - offset, kChunk - offset % kChunk);
    if (!out.empty() && out.back().flags == flags) {
      out.back().length += n;
    } else if (out.size() == max_extents) {
      break;
    } else {
      out.push_back({n, flags});
    }
    offset += n;
  }
  return out;
}

}  // namespace blockd::server::storage
