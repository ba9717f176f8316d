// MemoryBackend: a sparse volume in RAM, for tests, demos and the benchmark's
// "protocol cost only" row. Unwritten 64 KiB chunks are holes that read as zeroes.
// Nothing survives the process, so flush has nothing to do.
//
// Thread affinity: any worker; a mutex guards the chunk map (not a hot path in production).
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "server/storage/backend.h"

namespace blockd::server::storage {

class MemoryBackend final : public Backend {
 public:
  explicit MemoryBackend(std::uint64_t size);

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
  static constexpr std::uint64_t kChunk = 64 * 1024;
  using Chunk = std::unique_ptr<std::byte[]>;

  // Zeroes [offset, offset+length), dropping whole chunks. Caller holds mutex_.
  void zero_locked(std::uint64_t offset, std::uint64_t length);

  const std::uint64_t size_;
  std::mutex mutex_;
  std::unordered_map<std::uint64_t, Chunk> chunks_;  // chunk index -> 64 KiB
};

}  // namespace blockd::server::storage
