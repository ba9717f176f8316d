// VolumeMetrics: what a volume's NBD requests did, counted per worker (each worker
// writes only its own block, so the data path takes no lock) and summed at scrape time.
//
// Per operation: requests, bytes, errors by NBD error, and a latency histogram (fixed
// buckets, Prometheus style: the scrape makes them cumulative). Plus requests started and
// finished, whose difference is the in-flight gauge.
//
// Thread affinity: worker(i) is used by worker i only; the snapshot functions by anyone.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/nbd_protocol.h"
#include "server/metrics/counter.h"

namespace blockd::server::metrics {

enum class Op { kRead, kWrite, kFlush, kTrim, kWriteZeroes, kCache, kBlockStatus };
inline constexpr std::size_t kOpCount = 7;
std::string_view to_string(Op op);

// The NBD errors (nbd-proto.md "Error values") a request can end with, in the order
// of the per-error counters; one more counter takes any other value.
inline constexpr std::array<common::nbd::Error, 8> kCountedErrors = {
    common::nbd::Error::kPerm,  common::nbd::Error::kIo,       common::nbd::Error::kNoMem,
    common::nbd::Error::kInval, common::nbd::Error::kNoSpc,    common::nbd::Error::kOverflow,
    common::nbd::Error::kNotSup, common::nbd::Error::kShutdown};
inline constexpr std::size_t kErrorSlots = kCountedErrors.size() + 1;
// The counter that counts `error` (not kOk), and a counter's label: "EPERM", ... "other".
std::size_t error_slot(common::nbd::Error error);
std::string_view error_label(std::size_t slot);

// Upper bounds in seconds; a last, implicit bucket is +Inf.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0};

struct OpCounters {
  SingleWriterCounter requests;
  SingleWriterCounter bytes;
  std::array<SingleWriterCounter, kErrorSlots> errors;
  std::array<SingleWriterCounter, kLatencyBuckets.size() + 1> latency;  // per bucket, not cumulative
  SingleWriterCounter latency_ns;                                        // the histogram's sum
};

struct WorkerCounters {
  std::array<OpCounters, kOpCount> ops;
  SingleWriterCounter started;
  SingleWriterCounter finished;
};

// Sums over every worker, for the scrape.
struct OpTotals {
  std::uint64_t requests = 0, bytes = 0, latency_ns = 0;
  std::array<std::uint64_t, kErrorSlots> errors{};
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> latency{};
};

class VolumeMetrics {
 public:
  explicit VolumeMetrics(unsigned workers);

  // Data path: the calling worker's counters. An index past the worker count (a test
  // without workers) shares the last block.
  WorkerCounters& worker(unsigned index) { return *per_worker_[index < per_worker_.size() ? index : per_worker_.size() - 1]; }
  // Records one finished request; `outcome` kOk, or the error it was answered with.
  static void record(WorkerCounters& counters, Op op, std::uint64_t bytes, std::chrono::nanoseconds latency,
                     common::nbd::Error outcome);

  OpTotals totals(Op op) const;
  std::uint64_t in_flight() const;

 private:
  // Separate allocations: two workers never write the same cache line.
  std::vector<std::unique_ptr<WorkerCounters>> per_worker_;
};

}  // namespace blockd::server::metrics
