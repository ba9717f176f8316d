// `blockctl lease list|show|acquire|renew|release|break` (DESIGN.md §4): the control
// API's lease routes, printed as tables (tools/lease_formatting.h), the API's JSON
// (-o json) or volume names (-o name). Like commands.h, each throws UsageError (exit 2)
// for a bad argument before anything is sent, ControlError (exit 1) when the server says no.
#pragma once

#include <optional>
#include <string>

#include "tools/commands.h"

namespace CLI {
class App;
}

namespace blockd::tools {

struct LeaseOptions {
  std::string volume;
  std::string holder;             // acquire/renew/release; empty: host_name()
  std::string mode = "rw";        // acquire
  std::optional<std::string> ttl; // acquire/renew/break: a duration (parse_duration_seconds)
  std::string to_holder;          // break --to
};

// A break answers only when the old holder's sessions are drained and closed; the
// server gives up after 60 s (503 unavailable), so blockctl waits longer than that.
inline constexpr int kBreakTimeoutSeconds = 90;

void lease_list(const GlobalOptions& g);
void lease_show(const GlobalOptions& g, const LeaseOptions& o);
void lease_acquire(const GlobalOptions& g, const LeaseOptions& o);
void lease_renew(const GlobalOptions& g, const LeaseOptions& o);
void lease_release(const GlobalOptions& g, const LeaseOptions& o);
void lease_break(const GlobalOptions& g, const LeaseOptions& o);

// Registers `lease` and its subcommands on `app`; `g` is read when a command runs.
void add_lease_commands(CLI::App& app, const GlobalOptions& g);

}  // namespace blockd::tools
