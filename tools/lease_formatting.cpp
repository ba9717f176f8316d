#include "tools/lease_formatting.h"

#include "tools/formatting.h"
#include "tools/table.h"

namespace blockd::tools {

namespace {

bool is_set(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string plural(std::uint64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

const v1::LeaseHolder* find_holder(const v1::Lease& lease, const std::string& holder) {
  for (const v1::LeaseHolder& h : lease.holders())
    if (h.holder() == holder) return &h;
  return nullptr;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

std::string format_duration(std::int64_t seconds) {
  if (seconds < 0) seconds = 0;
  const std::int64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60, s = seconds % 60;
  if (d > 0) return std::to_string(d) + "d" + (h > 0 ? std::to_string(h) + "h" : "");
  if (h > 0) return std::to_string(h) + "h" + (m > 0 ? std::to_string(m) + "m" : "");
  if (m > 0) return std::to_string(m) + "m" + (s > 0 ? std::to_string(s) + "s" : "");
  return std::to_string(s) + "s";
}

std::string format_expiry(const v1::LeaseHolder& holder, std::int64_t now_seconds) {
  if (!is_set(holder.expires_at())) {
    if (holder.released()) return "at last disconnect";
    return holder.connections() > 0 ? "connected" : "-";
  }
  const std::int64_t left = holder.expires_at().seconds() - now_seconds;
  return left < 0 ? "expired" : "in " + format_duration(left);
}

std::string format_lease_holders(const v1::Lease& lease) {
  std::string out;
  for (const v1::LeaseHolder& h : lease.holders()) out += (out.empty() ? "" : ",") + h.holder();
  if (!lease.break_to().empty()) out += (out.empty() ? "-> " : ",-> ") + lease.break_to();
  return out.empty() ? "-" : out;
}

std::string render_lease_table(const v1::ListLeasesResponse& list, std::int64_t now_seconds) {
  using A = Table::Align;
  Table table({"VOLUME", "STATE", "HOLDER", "MODE", "GENERATION", "CONNECTIONS", "HELD", "EXPIRES"},
              {A::kLeft, A::kLeft, A::kLeft, A::kLeft, A::kRight, A::kRight, A::kRight, A::kLeft});
  for (const v1::Lease& lease : list.leases()) {
    const std::string generation = std::to_string(lease.generation());
    if (lease.state() == "breaking") {
      // The fenced holders have lost the lease already; what is left is the drain.
      const std::string to = lease.break_to().empty() ? "-" : "-> " + lease.break_to();
      table.add_row({lease.volume(), "breaking", to, "-", generation,
                     std::to_string(lease.fenced_connections()) + " fenced", "-", "when drained"});
      continue;
    }
    if (lease.holders_size() == 0) {
      table.add_row({lease.volume(), lease.state().empty() ? "-" : lease.state(), "-", "-", generation, "0", "-", "-"});
      continue;
    }
    for (const v1::LeaseHolder& h : lease.holders()) {
      std::string state = lease.state();
      if (h.restart_grace()) state += " (restart grace)";
      table.add_row({lease.volume(), state, h.holder(), h.mode(), generation, std::to_string(h.connections()),
                     is_set(h.held_since()) ? format_age(now_seconds - h.held_since().seconds()) : "-",
                     format_expiry(h, now_seconds)});
    }
  }
  return table.render();
}

std::string describe_lease_change(const char* verb, const std::string& holder, const v1::Lease& lease,
                                  std::int64_t now_seconds) {
  std::string text = "lease on volume " + quoted(lease.volume()) + " " + verb + " by " + quoted(holder) + ": ";
  const v1::LeaseHolder* h = find_holder(lease, holder);
  if (h == nullptr) {
    text += "it is " + lease.state();
    if (lease.holders_size() > 0) text += " (held by " + format_lease_holders(lease) + ")";
    return text + ", generation " + std::to_string(lease.generation()) + "\n";
  }
  text += lease.state() + " (" + h->mode() + "), generation " + std::to_string(lease.generation()) + ", " +
          plural(h->connections(), "connection");
  if (h->released()) return text + "; it ends when the last connection closes\n";
  const std::string expiry = format_expiry(*h, now_seconds);
  if (expiry == "connected") return text + "; it does not expire while connected\n";
  return text + "; expires " + expiry + (h->connections() == 0 ? " unless it connects" : "") + "\n";
}

std::string describe_break(const v1::BreakLeaseResponse& r, std::uint64_t generation_before,
                           std::int64_t now_seconds) {
  const v1::Lease& lease = r.lease();
  std::string text = "lease on volume " + quoted(lease.volume()) + " broken: generation " +
                     std::to_string(generation_before) + " \u2192 " + std::to_string(lease.generation()) + "\n";
  std::string fenced;
  for (const std::string& h : r.fenced_holders()) fenced += (fenced.empty() ? "" : ", ") + quoted(h);
  text += "  fenced:   " + (fenced.empty() ? std::string("nobody (no holder)") : fenced) + "; " +
          plural(r.fenced_connections(), "connection") + " closed\n";
  if (lease.holders_size() == 0) return text + "  now:      free\n";
  for (const v1::LeaseHolder& h : lease.holders()) {
    const std::string expiry = format_expiry(h, now_seconds);
    text += "  now:      held by " + quoted(h.holder()) + " (" + h.mode() + ", " + plural(h.connections(), "connection") +
            (expiry == "connected" ? "" : ", expires " + expiry) + ")\n";
  }
  return text;
}

}  // namespace blockd::tools
