#include "server/metrics_exporter.h"

#include <array>
#include <string_view>
#include <fmt/format.h>

#include "server/metrics/prometheus_text.h"

namespace blockd::server {

using metrics::kErrorSlots;
using metrics::kLatencyBuckets;
using metrics::kOpCount;
using metrics::Op;

namespace {

constexpr std::array<Op, kOpCount> kOps = {Op::kRead,         Op::kWrite, Op::kFlush,      Op::kTrim,
                                           Op::kWriteZeroes, Op::kCache, Op::kBlockStatus};

std::string bucket_bound(std::size_t index) {
  return index < kLatencyBuckets.size() ? fmt::format("{}", kLatencyBuckets[index]) : "+Inf";
}

// One reading of a volume's per-op counters per render: each op's totals are summed over
// the workers once, and every family shows the same numbers.
struct VolumeReading {
  std::string name;
  std::array<metrics::OpTotals, kOpCount> ops;

  const metrics::OpTotals& operator[](Op op) const { return ops[static_cast<std::size_t>(op)]; }
};

VolumeReading read_counters(const storage::Volume& volume) {
  VolumeReading out{volume.name(), {}};
  for (Op op : kOps) out.ops[static_cast<std::size_t>(op)] = volume.metrics().totals(op);
  return out;
}

}  // namespace

MetricsExporter::MetricsExporter(const storage::VolumeRegistry& volumes, lease::LeaseManager& leases,
                                 const std::vector<std::unique_ptr<Worker>>& workers,
                                 std::chrono::steady_clock::time_point started)
    : volumes_(volumes), leases_(leases), workers_(workers), started_(started) {}

std::string MetricsExporter::render() const {
  const auto volumes = volumes_.list();
  std::vector<VolumeReading> readings;
  for (const auto& v : volumes) readings.push_back(read_counters(*v));
  metrics::PrometheusText out;

  out.family("blockd_requests_total", "counter", "NBD requests answered, by volume and operation.");
  for (const auto& r : readings)
    for (Op op : kOps)
      out.sample("blockd_requests_total", {{"volume", r.name}, {"op", std::string(to_string(op))}}, r[op].requests);

  out.family("blockd_request_errors_total", "counter", "NBD requests answered with an error, by NBD error.");
  for (const auto& r : readings)
    for (Op op : kOps) {
      const auto& totals = r[op];
      for (std::size_t e = 0; e < kErrorSlots; ++e)
        if (totals.errors[e] > 0)
          out.sample("blockd_request_errors_total",
                     {{"volume", r.name},
                      {"op", std::string(to_string(op))},
                      {"error", std::string(metrics::error_label(e))}},
                     totals.errors[e]);
    }

  out.family("blockd_bytes_total", "counter", "Bytes read from and written to the volume by NBD clients.");
  for (const auto& r : readings) {
    out.sample("blockd_bytes_total", {{"volume", r.name}, {"direction", "read"}}, r[Op::kRead].bytes);
    out.sample("blockd_bytes_total", {{"volume", r.name}, {"direction", "write"}}, r[Op::kWrite].bytes);
  }

  out.family("blockd_request_duration_seconds", "histogram",
             "Time from a request's validation to its reply being queued, by operation.");
  for (const auto& r : readings)
    for (Op op : kOps) {
      const auto& totals = r[op];
      std::uint64_t cumulative = 0;
      for (std::size_t b = 0; b < totals.latency.size(); ++b) {
        cumulative += totals.latency[b];
        out.sample("blockd_request_duration_seconds_bucket",
                   {{"volume", r.name}, {"op", std::string(to_string(op))}, {"le", bucket_bound(b)}}, cumulative);
      }
      out.sample("blockd_request_duration_seconds_sum", {{"volume", r.name}, {"op", std::string(to_string(op))}},
                 static_cast<double>(totals.latency_ns) / 1e9);
      out.sample("blockd_request_duration_seconds_count", {{"volume", r.name}, {"op", std::string(to_string(op))}},
                 cumulative);
    }

  out.family("blockd_requests_in_flight", "gauge", "NBD requests being served now.");
  for (const auto& v : volumes) out.sample("blockd_requests_in_flight", {{"volume", v->name()}}, v->metrics().in_flight());
  out.family("blockd_connections", "gauge", "NBD sessions open on the volume.");
  for (const auto& v : volumes)
    out.sample("blockd_connections", {{"volume", v->name()}}, static_cast<std::uint64_t>(std::max(0, v->connections())));
  out.family("blockd_volume_size_bytes", "gauge", "The volume's size for new connections.");
  for (const auto& v : volumes) out.sample("blockd_volume_size_bytes", {{"volume", v->name()}}, v->size());
  out.family("blockd_volume_poisoned", "gauge", "1 when a failed sync poisoned the volume (writes fail until restart).");
  for (const auto& v : volumes)
    out.sample("blockd_volume_poisoned", {{"volume", v->name()}}, static_cast<std::uint64_t>(v->poisoned() ? 1 : 0));
  out.family("blockd_fsync_failures_total", "counter", "Failed syncs (fdatasync, or a FUA write) on the volume.");
  for (const auto& v : volumes) out.sample("blockd_fsync_failures_total", {{"volume", v->name()}}, v->sync_failures());

  out.family("blockd_lease_generation", "gauge", "The volume's lease generation (fencing token).");
  std::vector<lease::LeaseInfo> leases;
  for (const auto& v : volumes) leases.push_back(leases_.show(v->name()));
  for (const auto& info : leases) out.sample("blockd_lease_generation", {{"volume", info.volume}}, info.generation);
  out.family("blockd_lease_holder", "gauge", "1 for each holder of the volume's lease.");
  for (const auto& info : leases)
    for (const auto& holder : info.holders)
      out.sample("blockd_lease_holder",
                 {{"volume", info.volume}, {"holder", holder.holder}, {"mode", std::string(lease::to_string(holder.mode))}},
                 std::uint64_t{1});

  out.family("blockd_uptime_seconds", "gauge", "Seconds since blockd started.");
  out.sample("blockd_uptime_seconds", {},
             std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  out.family("blockd_workers", "gauge", "Worker threads, each with its own io_uring ring.");
  out.sample("blockd_workers", {}, static_cast<std::uint64_t>(workers_.size()));
  // One family per ring counter, a sample for each worker.
  auto per_ring = [&](std::string_view name, std::string_view type, std::string_view help,
                      std::uint64_t (io::Ring::*value)() const) {
    out.family(name, type, help);
    for (const auto& w : workers_) out.sample(name, {{"worker", std::to_string(w->index())}}, (w->ring().*value)());
  };
  per_ring("blockd_uring_submissions_total", "counter", "SQEs handed to the kernel, by worker.",
           &io::Ring::submissions);
  per_ring("blockd_uring_completions_total", "counter", "Completions delivered, by worker.", &io::Ring::completions);
  per_ring("blockd_uring_registered_buffers", "gauge",
           "I/O buffers registered with the ring as fixed buffers, by worker.", &io::Ring::registered_buffers);
  per_ring("blockd_uring_fixed_buffer_ios_total", "counter",
           "Reads and writes submitted as READ_FIXED / WRITE_FIXED, by worker.", &io::Ring::fixed_buffer_ios);
  return out.text();
}

}  // namespace blockd::server
