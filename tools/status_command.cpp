#include "tools/status_command.h"

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <iterator>
#include <optional>
#include <vector>

#include "client/control_client.h"
#include "common/size.h"
#include "tools/formatting.h"
#include "tools/lease_formatting.h"
#include "tools/table.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

double wall_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string fixed(double v, int decimals) {
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", decimals, v);
  return out;
}

std::string holders(const v1::Volume& v) {
  if (!v.status().has_lease()) return "-";
  std::string out;
  for (const v1::LeaseHolder& h : v.status().lease().holders()) out += (out.empty() ? "" : ",") + h.holder();
  return out.empty() ? "-" : out;
}

// The state file: {"servers": {"unix:///run/blockd/control.sock": {"time": 1764581593.1,
// "volumes": {"db": {"reads": 1, "writes": 2, "readBytes": 3, "writeBytes": 4, "errors": 0}}}}}
Struct read_state(const std::string& path) {
  Struct state;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return state;
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0 || text.size() > (1u << 20)) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(text, &state, options).ok()) state.Clear();
  return state;
}

// Temp file + rename, so a reader never sees half a file; failures are ignored.
void write_state(const std::string& path, const Struct& state) {
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(state, &text).ok()) return;
  text += "\n";
  std::string temp = path + ".XXXXXX";
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) return;
  bool ok = ::fchmod(fd, 0600) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) ok = false;
    else done += static_cast<std::size_t>(n);
  }
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) ::unlink(temp.c_str());
}

double number(const Struct& s, const char* key) {
  const auto it = s.fields().find(key);
  return it == s.fields().end() || it->second.kind_case() != Value::kNumberValue ? -1 : it->second.number_value();
}

std::optional<CounterSample> sample_from(const Struct& entry) {
  const auto volumes = entry.fields().find("volumes");
  if (volumes == entry.fields().end() || !volumes->second.has_struct_value()) return std::nullopt;
  CounterSample sample;
  for (const auto& [name, value] : volumes->second.struct_value().fields()) {
    if (!value.has_struct_value()) return std::nullopt;
    const Struct& v = value.struct_value();
    const double fields[] = {number(v, "reads"), number(v, "writes"), number(v, "readBytes"), number(v, "writeBytes"),
                             number(v, "errors")};
    for (double f : fields)
      if (f < 0) return std::nullopt;
    sample[name] = {static_cast<std::uint64_t>(fields[0]), static_cast<std::uint64_t>(fields[1]),
                    static_cast<std::uint64_t>(fields[2]), static_cast<std::uint64_t>(fields[3]),
                    static_cast<std::uint64_t>(fields[4])};
  }
  return sample;
}

Value entry_for(const CounterSample& sample, double time) {
  Value entry;
  Struct& e = *entry.mutable_struct_value();
  (*e.mutable_fields())["time"].set_number_value(time);
  Struct& volumes = *(*e.mutable_fields())["volumes"].mutable_struct_value();
  for (const auto& [name, c] : sample) {
    Struct& v = *(*volumes.mutable_fields())[name].mutable_struct_value();
    (*v.mutable_fields())["reads"].set_number_value(static_cast<double>(c.reads));
    (*v.mutable_fields())["writes"].set_number_value(static_cast<double>(c.writes));
    (*v.mutable_fields())["readBytes"].set_number_value(static_cast<double>(c.read_bytes));
    (*v.mutable_fields())["writeBytes"].set_number_value(static_cast<double>(c.write_bytes));
    (*v.mutable_fields())["errors"].set_number_value(static_cast<double>(c.errors));
  }
  return entry;
}

// Compares with the previous sample of `server` and keeps `now` for the next call.
StatusRates rates_since_last_call(const std::string& server, const CounterSample& now, double time) {
  StatusRates out;
  const std::string path = status_state_path();
  Struct state = read_state(path);
  Struct& servers = *(*state.mutable_fields())["servers"].mutable_struct_value();
  const auto previous = servers.fields().find(server);
  if (previous == servers.fields().end() || !previous->second.has_struct_value()) {
    out.why_none = "first call";
  } else {
    const double then = number(previous->second.struct_value(), "time");
    const auto sample = sample_from(previous->second.struct_value());
    out.seconds = time - then;
    if (then < 0 || !sample) {
      out.why_none = "no usable previous sample";
    } else if (out.seconds > kMaxSampleAgeSeconds) {
      out.why_none = "the previous sample is " + format_age(static_cast<std::int64_t>(out.seconds)) + " old";
    } else if (!(out.seconds > 0)) {
      out.why_none = "the previous sample is not older than this one";
    } else {
      out.result = compute_rates(*sample, now, out.seconds);
      if (!out.result.valid) out.why_none = "counters went down: blockd restarted";
    }
  }
  // Forget other servers' samples that can no longer give rates.
  for (auto it = servers.mutable_fields()->begin(); it != servers.mutable_fields()->end();) {
    const bool stale = !it->second.has_struct_value() ||
                       time - number(it->second.struct_value(), "time") > kMaxSampleAgeSeconds;
    it = stale ? servers.mutable_fields()->erase(it) : std::next(it);
  }
  (*servers.mutable_fields())[server] = entry_for(now, time);
  write_state(path, state);
  return out;
}

}  // namespace

std::string status_state_path() {
  std::string dir;
  if (const char* d = std::getenv("BLOCKCTL_STATE_DIR"); d != nullptr && *d != '\0') dir = d;
  else if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0') dir = x;
  else dir = "/tmp";
  return dir + "/blockctl-status-" + std::to_string(::getuid()) + ".json";
}

std::string render_status_with_rates(const v1::StatusResponse& s, const StatusRates& rates, std::int64_t now_seconds) {
  std::string text = render_status_summary(
      s, now_seconds,
      {{"Rates:", rates.result.valid ? "over the " + fixed(rates.seconds, 1) + "s since the last call"
                                     : "- (" + rates.why_none + "); rates from the next call on"}});
  if (s.volumes_size() == 0) return text;
  using A = Table::Align;
  Table table({"NAME", "SIZE", "HOLDER(S)", "CONNECTIONS", "READ/s", "WRITE/s", "READ MB/s", "WRITE MB/s", "ERRORS"},
              {A::kLeft, A::kRight, A::kLeft, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight});
  for (const v1::Volume& v : s.volumes()) {
    std::string connections = std::to_string(v.status().connections());
    if (v.status().poisoned()) connections += " (POISONED)";
    std::vector<std::string> row = {v.name(), common::format_size(v.size_bytes()), holders(v), connections};
    const auto r = rates.result.rates.find(v.name());
    if (r == rates.result.rates.end()) {
      row.insert(row.end(), {"-", "-", "-", "-", "-"});
    } else {
      row.insert(row.end(), {fixed(r->second.reads_per_second, 1), fixed(r->second.writes_per_second, 1),
                             fixed(r->second.read_bytes_per_second / 1e6, 2),
                             fixed(r->second.write_bytes_per_second / 1e6, 2), std::to_string(r->second.errors)});
    }
    table.add_row(row);
  }
  return text + "\n" + table.render();
}

std::string status_json_with_rates(const v1::StatusResponse& s, const StatusRates& rates) {
  Struct root;
  client::from_json(client::to_json(s, false), root);
  auto volumes = root.mutable_fields()->find("volumes");
  if (volumes != root.mutable_fields()->end() && volumes->second.has_list_value()) {
    for (Value& v : *volumes->second.mutable_list_value()->mutable_values()) {
      if (!v.has_struct_value()) continue;
      auto& fields = *v.mutable_struct_value()->mutable_fields();
      const auto name = fields.find("name");
      const auto r = name == fields.end() ? rates.result.rates.end() : rates.result.rates.find(name->second.string_value());
      Value& out = fields["rates"];
      if (r == rates.result.rates.end()) {
        out.set_null_value(google::protobuf::NULL_VALUE);
        continue;
      }
      auto& f = *out.mutable_struct_value()->mutable_fields();
      f["intervalSeconds"].set_number_value(rates.seconds);
      f["readsPerSecond"].set_number_value(r->second.reads_per_second);
      f["writesPerSecond"].set_number_value(r->second.writes_per_second);
      f["readBytesPerSecond"].set_number_value(r->second.read_bytes_per_second);
      f["writeBytesPerSecond"].set_number_value(r->second.write_bytes_per_second);
      f["errors"].set_number_value(static_cast<double>(r->second.errors));
    }
  }
  return client::to_json(root, true);
}

void show_status(const GlobalOptions& g) {
  std::string error;
  auto address = client::ServerAddress::resolve(g.server, error);
  if (!address) throw UsageError(error);
  client::ControlClient api(*address);
  const auto status = api.status();
  StatusRates rates;
  // /metrics is best effort: without it (an older blockd) there are no rates.
  std::optional<CounterSample> sample;
  try {
    const auto metrics = api.get("/metrics");
    if (metrics.status == 200) sample = parse_metrics(metrics.body);
  } catch (const std::exception&) {
  }
  if (sample) rates = rates_since_last_call(address->to_string(), *sample, wall_seconds());
  else rates.why_none = "no /metrics from the server";
  if (g.output == OutputFormat::kJson) {
    std::cout << status_json_with_rates(status, rates) << "\n";
    return;
  }
  std::cout << render_status_with_rates(status, rates, static_cast<std::int64_t>(std::time(nullptr)));
}

}  // namespace blockd::tools
