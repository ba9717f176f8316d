// MetricsExporter: /metrics (Prometheus text format), read from what the data path
// already counts without a lock (per-worker counters, atomics) and from the lease
// manager. Families (every name starts blockd_):
//   per volume: requests_total{op}, request_errors_total{op,error}, bytes_total{direction},
//     request_duration_seconds{op} (histogram), requests_in_flight, connections,
//     volume_size_bytes, volume_poisoned, fsync_failures_total, lease_generation,
//     lease_holder{holder,mode} (1 per holder);
//   per process: uptime_seconds, workers, uring_submissions_total{worker},
//     uring_completions_total{worker}.
//
// Thread affinity: the control thread; reads atomics other threads write.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/lease/lease_manager.h"
#include "server/storage/volume_registry.h"
#include "server/worker.h"

namespace blockd::server {

class MetricsExporter {
 public:
  MetricsExporter(const storage::VolumeRegistry& volumes, lease::LeaseManager& leases,
                  const std::vector<std::unique_ptr<Worker>>& workers, std::chrono::steady_clock::time_point started);

  std::string render() const;

 private:
  const storage::VolumeRegistry& volumes_;
  lease::LeaseManager& leases_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  const std::chrono::steady_clock::time_point started_;
};

}  // namespace blockd::server
