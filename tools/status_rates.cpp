#include "tools/status_rates.h"

#include <charconv>
#include <cmath>

namespace blockd::tools {

namespace {

// Reads `name{k="v",...} value` (value as a Prometheus float; counters are integral).
// Returns false for anything else.
bool parse_line(std::string_view line, std::string_view& name, std::map<std::string, std::string>& labels,
                double& value) {
  labels.clear();
  std::size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
  name = line.substr(0, i);
  if (name.empty()) return false;
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i >= line.size()) return false;
      if (line[i] == '}') {
        ++i;
        break;
      }
      const std::size_t eq = line.find('=', i);
      if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return false;
      std::string key(line.substr(i, eq - i));
      std::string val;
      i = eq + 2;
      for (;;) {
        if (i >= line.size()) return false;
        char c = line[i++];
        if (c == '"') break;
        if (c == '\\' && i < line.size()) {
          c = line[i++];
          if (c == 'n') c = '\n';
        }
        val += c;
      }
      labels[std::move(key)] = std::move(val);
    }
  }
  while (i < line.size() && line[i] == ' ') ++i;
  std::size_t end = line.find(' ', i);  // an optional timestamp follows
  if (end == std::string_view::npos) end = line.size();
  const std::string_view number = line.substr(i, end - i);
  if (number.empty()) return false;
  const auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  return ec == std::errc() && ptr == number.data() + number.size() && std::isfinite(value) && value >= 0;
}

bool went_down(const VolumeCounters& a, const VolumeCounters& b) {
  return b.reads < a.reads || b.writes < a.writes || b.read_bytes < a.read_bytes || b.write_bytes < a.write_bytes ||
         b.errors < a.errors;
}

}  // namespace

CounterSample parse_metrics(std::string_view text) {
  CounterSample sample;
  std::map<std::string, std::string> labels;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    std::string_view name;
    double value = 0;
    if (!parse_line(line, name, labels, value)) continue;
    const auto volume = labels.find("volume");
    if (volume == labels.end()) continue;
    const auto count = static_cast<std::uint64_t>(value);
    if (name == "blockd_requests_total") {
      const std::string& op = labels["op"];
      if (op == "read") sample[volume->second].reads += count;
      else if (op == "write") sample[volume->second].writes += count;
      else sample[volume->second];  // the volume exists, with other operations
    } else if (name == "blockd_bytes_total") {
      const std::string& direction = labels["direction"];
      if (direction == "read") sample[volume->second].read_bytes += count;
      else if (direction == "write") sample[volume->second].write_bytes += count;
    } else if (name == "blockd_request_errors_total") {
      sample[volume->second].errors += count;
    }
  }
  return sample;
}

RateResult compute_rates(const CounterSample& previous, const CounterSample& now, double seconds) {
  RateResult result;
  if (previous.empty() || !(seconds > 0) || seconds > kMaxSampleAgeSeconds) return result;
  for (const auto& [name, before] : previous) {
    const auto after = now.find(name);
    // A counter that went down: blockd restarted (a deleted and re-created volume too).
    if (after != now.end() && went_down(before, after->second)) return result;
  }
  result.valid = true;
  for (const auto& [name, after] : now) {
    const auto before = previous.find(name);
    if (before == previous.end()) continue;
    const VolumeCounters& b = before->second;
    VolumeRates r;
    r.reads_per_second = static_cast<double>(after.reads - b.reads) / seconds;
    r.writes_per_second = static_cast<double>(after.writes - b.writes) / seconds;
    r.read_bytes_per_second = static_cast<double>(after.read_bytes - b.read_bytes) / seconds;
    r.write_bytes_per_second = static_cast<double>(after.write_bytes - b.write_bytes) / seconds;
    r.errors = after.errors - b.errors;
    result.rates[name] = r;
  }
  return result;
}

}  // namespace blockd::tools
