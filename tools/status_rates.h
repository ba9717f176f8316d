// `blockctl status` rates: parse blockd's /metrics (Prometheus text) into per-volume
// counters, and turn two samples into rates. Pure functions, no I/O (the state file
// that keeps the previous sample is status_command.cpp's).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace blockd::tools {

struct VolumeCounters {
  std::uint64_t reads = 0;        // blockd_requests_total{op="read"}
  std::uint64_t writes = 0;       // blockd_requests_total{op="write"}
  std::uint64_t read_bytes = 0;   // blockd_bytes_total{direction="read"}
  std::uint64_t write_bytes = 0;  // blockd_bytes_total{direction="write"}
  std::uint64_t errors = 0;       // blockd_request_errors_total, every op and error summed
  bool operator==(const VolumeCounters&) const = default;
};

// Volume name → counters. Lines of other families, comments and lines that do not
// parse are ignored.
using CounterSample = std::map<std::string, VolumeCounters>;
CounterSample parse_metrics(std::string_view prometheus_text);

struct VolumeRates {
  double reads_per_second = 0;
  double writes_per_second = 0;
  double read_bytes_per_second = 0;
  double write_bytes_per_second = 0;
  std::uint64_t errors = 0;  // since the previous sample
};

struct RateResult {
  // false: no usable previous sample (none, too old, not after `now`, or a counter went
  // down: blockd restarted); `rates` is then empty.
  bool valid = false;
  // Volumes present in both samples; a volume new since the previous one has none.
  std::map<std::string, VolumeRates> rates;
};

// Samples more than this apart give no rates.
inline constexpr double kMaxSampleAgeSeconds = 3600;

RateResult compute_rates(const CounterSample& previous, const CounterSample& now, double seconds);

}  // namespace blockd::tools
