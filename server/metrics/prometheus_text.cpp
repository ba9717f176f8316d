#include "server/metrics/prometheus_text.h"

#include <fmt/format.h>

namespace blockd::server::metrics {

void PrometheusText::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusText::labels(const Labels& labels) {
  if (labels.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [key, value] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += key;
    out_ += "=\"";
    // The format's escapes: backslash, double quote and newline.
    for (char c : value) {
      if (c == '\\') out_ += "\\\\";
      else if (c == '"') out_ += "\\\"";
      else if (c == '\n') out_ += "\\n";
      else out_ += c;
    }
    out_ += '"';
  }
  out_ += '}';
}

void PrometheusText::sample(std::string_view name, const Labels& labels_of, double value) {
  out_ += name;
  labels(labels_of);
  out_ += fmt::format(" {}\n", value);
}

void PrometheusText::sample(std::string_view name, const Labels& labels_of, std::uint64_t value) {
  out_ += name;
  labels(labels_of);
  out_ += fmt::format(" {}\n", value);
}

}  // namespace blockd::server::metrics
