// SingleWriterCounter: a counter written by one thread (its worker) and read by any
// (the /metrics scrape). The data path pays a plain load and store, no lock and no
// locked instruction; a reader sees a value that was true at some moment (DESIGN.md §6:
// counters from per-worker storage, no lock on the data path).
//
// Thread affinity: add() from the one owning thread only; get() from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace blockd::server::metrics {

class SingleWriterCounter {
 public:
  void add(std::uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

}  // namespace blockd::server::metrics
