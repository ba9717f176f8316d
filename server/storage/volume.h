// Volume: one exported disk. It owns its Backend and is the one place where the
// durability rules of DESIGN.md §2 live:
//   - a FUA write is durable before it is acknowledged;
//   - TRIM/WRITE_ZEROES with FUA are followed by a flush;
//   - a failed fsync, or a durable (FUA) write failing with EIO, poisons the volume: every later
//     write and flush fails with EIO until an operator intervenes. An fsync is never
//     retried and reported as success, because the kernel may have dropped the dirty
//     pages it failed to write.
//
// Thread affinity: shared by all workers (std::shared_ptr); all state is atomic or
// immutable, the Backend is safe for concurrent use.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/lease/lease_mode.h"
#include "server/metrics/volume_metrics.h"
#include "server/storage/backend.h"

namespace blockd::server::storage {

class Volume {
 public:
  struct Options {
    std::string name;
    std::string description;
    bool read_only = false;
    // The access policy leases enforce (DESIGN.md §4): which modes a client may ask for.
    lease::AllowedModes allowed{true, false};
    // Worker threads, each with its own block of metrics counters.
    unsigned workers = 1;
    // TEST ONLY (--unsafe-ack-without-sync): FUA and FLUSH are acknowledged without
    // reaching stable storage. Exists so the power-cut test can prove it has teeth.
    bool unsafe_ack_without_sync = false;
  };

  Volume(Options options, std::unique_ptr<Backend> backend);

  const std::string& name() const { return options_.name; }
  const std::string& description() const { return options_.description; }
  std::uint64_t size() const { return backend_->size(); }
  bool read_only() const { return options_.read_only; }
  lease::AllowedModes allowed_modes() const { return options_.allowed; }
  bool poisoned() const { return poisoned_.load(std::memory_order_acquire); }
  // Syncs (fsync, or a FUA write) that failed: each poisons the volume.
  std::uint64_t sync_failures() const { return sync_failures_.load(std::memory_order_relaxed); }
  metrics::VolumeMetrics& metrics() { return metrics_; }
  const metrics::VolumeMetrics& metrics() const { return metrics_; }
  std::string describe() const { return backend_->describe(); }

  asio::awaitable<Result<void>> read(io::Ring& ring, std::span<std::byte> out, std::uint64_t offset);
  asio::awaitable<Result<void>> write(io::Ring& ring, std::span<const std::byte> data,
                                      std::uint64_t offset, bool fua);
  asio::awaitable<Result<void>> flush(io::Ring& ring);
  asio::awaitable<Result<void>> trim(io::Ring& ring, std::uint64_t offset, std::uint64_t length,
                                     bool fua);
  asio::awaitable<Result<void>> write_zeroes(io::Ring& ring, std::uint64_t offset,
                                             std::uint64_t length, ZeroMode mode, bool fast_only,
                                             bool fua);
  asio::awaitable<Result<void>> cache(io::Ring& ring, std::uint64_t offset, std::uint64_t length);
  Result<std::vector<Extent>> extents(std::uint64_t offset, std::uint64_t length,
                                      std::size_t max_extents);

  // The catalog has grown the backing file: new sessions see `new_size`; sessions
  // already open keep the size they negotiated (they validate against their own terms).
  Result<void> grow(std::uint64_t new_size) { return backend_->grow(new_size); }

  // Live connection count, for logs now and for the control API and leases later.
  void connection_opened() { connections_.fetch_add(1, std::memory_order_relaxed); }
  void connection_closed() { connections_.fetch_sub(1, std::memory_order_relaxed); }
  int connections() const { return connections_.load(std::memory_order_relaxed); }

 private:
  // Turns the outcome of a sync into the volume's state: a failure poisons.
  Result<void> record_sync(Result<void> result, const char* what);
  asio::awaitable<Result<void>> sync(io::Ring& ring, const char* what);
  Result<void> check_writable() const;

  const Options options_;
  const std::unique_ptr<Backend> backend_;
  std::atomic<bool> poisoned_{false};
  std::atomic<std::uint64_t> sync_failures_{0};
  metrics::VolumeMetrics metrics_;
  std::atomic<int> connections_{0};
};

}  // namespace blockd::server::storage
