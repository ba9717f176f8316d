// PrometheusText: writes the Prometheus text exposition format (version 0.0.4): one
// HELP and TYPE line per metric family, then its samples, label values escaped.
//
// Thread affinity: a plain value; the scrape's thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace blockd::server::metrics {

using Labels = std::vector<std::pair<std::string_view, std::string>>;

class PrometheusText {
 public:
  // Starts a family; its samples follow. `type`: counter, gauge, histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, const Labels& labels, std::uint64_t value);

  const std::string& text() const { return out_; }

 private:
  void labels(const Labels& labels);
  std::string out_;
};

}  // namespace blockd::server::metrics
