#include "server/metrics/volume_metrics.h"

#include <algorithm>

namespace blockd::server::metrics {

std::string_view to_string(Op op) {
  switch (op) {
    case Op::kRead: return "read";
    case Op::kWrite: return "write";
    case Op::kFlush: return "flush";
    case Op::kTrim: return "trim";
    case Op::kWriteZeroes: return "write_zeroes";
    case Op::kCache: return "cache";
    case Op::kBlockStatus: return "block_status";
  }
  return "other";
}

std::size_t error_slot(common::nbd::Error error) {
  const auto* it = std::find(kCountedErrors.begin(), kCountedErrors.end(), error);
  return static_cast<std::size_t>(it - kCountedErrors.begin());  // kCountedErrors.size(): other
}

std::string_view error_label(std::size_t slot) {
  return slot < kCountedErrors.size() ? common::nbd::to_string(kCountedErrors[slot]) : "other";
}

VolumeMetrics::VolumeMetrics(unsigned workers) {
  for (unsigned i = 0; i < std::max(1U, workers); ++i) per_worker_.push_back(std::make_unique<WorkerCounters>());
}

void VolumeMetrics::record(WorkerCounters& counters, Op op, std::uint64_t bytes, std::chrono::nanoseconds latency,
                           common::nbd::Error outcome) {
  OpCounters& c = counters.ops[static_cast<std::size_t>(op)];
  c.requests.add();
  if (outcome == common::nbd::Error::kOk) {
    c.bytes.add(bytes);
  } else {
    c.errors[error_slot(outcome)].add();
  }
  const double seconds = std::chrono::duration<double>(latency).count();
  const auto bucket = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds) - kLatencyBuckets.begin();
  c.latency[static_cast<std::size_t>(bucket)].add();
  c.latency_ns.add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency.count())));
  counters.finished.add();
}

OpTotals VolumeMetrics::totals(Op op) const {
  OpTotals out;
  for (const auto& worker : per_worker_) {
    const OpCounters& c = worker->ops[static_cast<std::size_t>(op)];
    out.requests += c.requests.get();
    out.bytes += c.bytes.get();
    out.latency_ns += c.latency_ns.get();
    for (std::size_t i = 0; i < kErrorSlots; ++i) out.errors[i] += c.errors[i].get();
    for (std::size_t i = 0; i < out.latency.size(); ++i) out.latency[i] += c.latency[i].get();
  }
  return out;
}

std::uint64_t VolumeMetrics::in_flight() const {
  std::uint64_t started = 0, finished = 0;
  for (const auto& worker : per_worker_) {
    finished += worker->finished.get();  // finished first: never more finished than started
    started += worker->started.get();
  }
  return started > finished ? started - finished : 0;
}

}  // namespace blockd::server::metrics
