#include "tools/formatting.h"

#include <ctime>
#include <vector>

#include "common/size.h"
#include "tools/lease_formatting.h"
#include "tools/table.h"

namespace blockd::tools {

namespace {

std::string dash_if_empty(const std::string& s) { return s.empty() ? "-" : s; }

std::string age_since(const google::protobuf::Timestamp& t, std::int64_t now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return format_age(now - t.seconds());
}

// "write by node-a (rw, 2 connections), generation 3"; "free".
std::string format_lease(const v1::Lease& lease) {
  if (lease.state().empty()) return "-";
  std::string text = lease.state();
  std::string holders;
  for (const v1::LeaseHolder& h : lease.holders()) {
    if (!holders.empty()) holders += ", ";
    holders += h.holder() + " (" + h.mode() + ", " + std::to_string(h.connections()) + " connection" +
               (h.connections() == 1 ? "" : "s") + ")";
  }
  if (!holders.empty()) text += " by " + holders;
  if (!lease.break_to().empty()) text += ", to " + lease.break_to() + " when fenced sessions end";
  return text + ", generation " + std::to_string(lease.generation());
}

std::string size_with_bytes(std::uint64_t bytes) {
  return common::format_size(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

const char* allocation_name(v1::StorageClass::Allocation a) {
  switch (a) {
    case v1::StorageClass::SPARSE: return "sparse";
    case v1::StorageClass::PREALLOCATE: return "preallocate";
    default: return "-";
  }
}

const char* io_name(v1::StorageClass::Io io) {
  switch (io) {
    case v1::StorageClass::BUFFERED: return "buffered";
    case v1::StorageClass::DIRECT: return "direct";
    default: return "-";
  }
}

}  // namespace

std::string format_age(std::int64_t seconds) {
  if (seconds < 0) seconds = 0;  // a clock a little behind the server's
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 120 * 60) return std::to_string(seconds / 60) + "m";
  if (seconds < 48 * 3600) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

std::string format_timestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

std::string format_access_modes(const v1::Volume& volume) {
  std::string out;
  for (int mode : volume.access_modes()) {
    if (!out.empty()) out += ',';
    out += mode == v1::READ_WRITE_ONCE ? "RWO" : mode == v1::READ_ONLY_MANY ? "ROX" : "?";
  }
  return dash_if_empty(out);
}

std::string format_labels(const google::protobuf::Map<std::string, std::string>& labels) {
  // protobuf's Map is unordered: sort for stable output.
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  std::string out;
  for (const auto& [k, v] : sorted) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return dash_if_empty(out);
}

std::string render_volume_table(const v1::ListVolumesResponse& list, std::int64_t now_seconds) {
  using A = Table::Align;
  Table table({"NAME", "SIZE", "CLASS", "ACCESS", "CONNECTIONS", "HOLDER", "AGE", "LABELS"},
              {A::kLeft, A::kRight, A::kLeft, A::kLeft, A::kRight, A::kLeft, A::kRight, A::kLeft});
  for (const v1::Volume& v : list.volumes()) {
    std::string connections = std::to_string(v.status().connections());
    if (v.status().poisoned()) connections += " (POISONED)";
    table.add_row({v.name(), common::format_size(v.size_bytes()), dash_if_empty(v.storage_class()),
                   format_access_modes(v), connections,
                   v.status().has_lease() ? format_lease_holders(v.status().lease()) : "-",
                   age_since(v.created_at(), now_seconds),
                   format_labels(v.labels())});
  }
  return table.render();
}

std::string render_volume_details(const v1::Volume& v, std::int64_t now_seconds) {
  Table table({"", ""});
  auto row = [&](const std::string& key, const std::string& value) { table.add_row({key + ":", value}); };
  row("Name", v.name());
  row("UUID", dash_if_empty(v.uuid()));
  row("Size", size_with_bytes(v.size_bytes()));
  row("Class", dash_if_empty(v.storage_class()));
  row("Access modes", format_access_modes(v));
  row("Description", dash_if_empty(v.description()));
  row("Labels", format_labels(v.labels()));
  row("Created", format_timestamp(v.created_at()) + " (" + age_since(v.created_at(), now_seconds) + " ago)");
  row("Backing path", dash_if_empty(v.backing_path()));
  row("Generation", std::to_string(v.generation()));
  row("Connections", std::to_string(v.status().connections()));
  if (v.status().has_lease()) row("Lease", format_lease(v.status().lease()));
  row("Poisoned", v.status().poisoned() ? "YES: a sync failed; writes fail until blockd restarts" : "no");
  // The header row of a two-column listing is empty: drop it.
  std::string text = table.render();
  return text.substr(text.find('\n') + 1);
}

std::string render_class_table(const v1::ListStorageClassesResponse& list) {
  Table table({"NAME", "DEFAULT", "ALLOCATION", "IO", "DIRECTORY"});
  for (const v1::StorageClass& c : list.storage_classes()) {
    table.add_row({c.name(), c.is_default() ? "yes" : "", allocation_name(c.allocation()), io_name(c.io()),
                   dash_if_empty(c.directory())});
  }
  return table.render();
}

std::string render_status_summary(const v1::StatusResponse& s, std::int64_t,
                                  const std::vector<std::pair<std::string, std::string>>& extra_rows) {
  std::string listen;
  for (const std::string& a : s.nbd_listen()) listen += (listen.empty() ? "" : ", ") + a;
  std::uint64_t total = 0;
  std::uint32_t connections = 0;
  for (const v1::Volume& v : s.volumes()) {
    total += v.size_bytes();
    connections += v.status().connections();
  }
  Table table({"", ""});
  table.add_row({"Version:", dash_if_empty(s.version())});
  table.add_row({"NBD listen:", dash_if_empty(listen)});
  table.add_row({"State dir:", dash_if_empty(s.state_dir())});
  table.add_row({"Uptime:", format_age(static_cast<std::int64_t>(s.uptime_seconds()))});
  table.add_row({"Workers:", std::to_string(s.workers())});
  table.add_row({"Volumes:", std::to_string(s.volumes_size()) + " (" + common::format_size(total) + "), " +
                                 std::to_string(connections) + " connection(s)"});
  for (const auto& [key, value] : extra_rows) table.add_row({key, value});
  std::string text = table.render();
  return text.substr(text.find('\n') + 1);
}

std::string render_status(const v1::StatusResponse& s, std::int64_t now_seconds) {
  std::string text = render_status_summary(s, now_seconds);
  if (s.volumes_size() > 0) {
    v1::ListVolumesResponse list;
    *list.mutable_volumes() = s.volumes();
    text += "\n" + render_volume_table(list, now_seconds);
  }
  return text;
}

}  // namespace blockd::tools
