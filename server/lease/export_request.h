// ExportRequest: what a client asks for in the NBD export name (the name sent with
// NBD_OPT_GO, NBD_OPT_INFO or NBD_OPT_EXPORT_NAME; nbd-proto.md lets a server give the
// name any structure it likes).
//
// Grammar (see README.md):
//   export-name = volume [ "?" param *( "&" param ) ]
//   param       = "holder=" holder | "mode=" ( "rw" | "ro" )
//   holder      = 1*253( ALPHA / DIGIT / "." / "_" / ":" / "-" )
// Each key at most once, in any order; mode defaults to rw; without holder, the caller
// uses the client's address (default_holder()). "?" is a safe separator because volume
// names are DNS labels. There is NO percent-decoding: "%" is not a holder character, so
// "node%2Da" is refused rather than silently read as something else; holder names never
// need escaping in practice (node names, pod UIDs, IPv4/IPv6 addresses).
//
// Thread affinity: pure functions, any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/names.h"
#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

// The holder rule is common's (common/names.h), so blockctl refuses what the server would.
using common::is_valid_holder;
using common::kMaxHolderLength;

// Quoted in every parse error, so the client's user learns the grammar from the refusal.
inline constexpr std::string_view kExportNameGrammar =
    "VOLUME or VOLUME?KEY=VALUE[&KEY=VALUE], keys: holder=HOLDER (1-253 characters of "
    "A-Z a-z 0-9 . _ : -) and mode=rw|ro (default rw), each at most once, no percent-encoding";

struct ExportRequest {
  std::string volume;
  std::optional<std::string> holder;  // nullopt: not given, use default_holder(peer)
  LeaseMode mode = LeaseMode::kReadWrite;
  // Whether the name said mode=...; without it, a volume that allows only ReadOnlyMany
  // is opened read-only rather than refused (mode_for()).
  bool mode_given = false;

  // The mode to ask the lease manager for on a volume with this policy.
  LeaseMode mode_for(AllowedModes allowed) const {
    if (!mode_given && !allowed.read_write_once && allowed.read_only_many) return LeaseMode::kReadOnly;
    return mode;
  }

  // Parses an export name. On failure returns nullopt and sets `error` to a message that
  // names the problem and quotes kExportNameGrammar.
  static std::optional<ExportRequest> parse(std::string_view export_name, std::string& error);
};

// The holder of a client that names none: its IP address without the port, as
// nbd::ClientInfo::peer spells it ("10.0.0.5:51234" -> "10.0.0.5", "[fd00::5]:4000" ->
// "fd00::5", an IPv6 zone "%eth0" dropped). Anything else (e.g. "unix", a Unix-socket
// client) is returned as it is when it is a valid holder, else "unknown". All clients on
// one address therefore share one lease, which is what a node-level ReadWriteOnce means.
std::string default_holder(std::string_view peer);

}  // namespace blockd::server::lease
