// How blockctl shows leases (DESIGN.md §4): the table of `lease list` / `lease show`,
// the HOLDER cell of `volume list`, and the one-line reports of acquire, renew, release
// and break. Pure functions of their input and of `now_seconds` (Unix time), so tests
// are repeatable.
#pragma once

#include <cstdint>
#include <string>

#include "common/proto/blockd.pb.h"

namespace blockd::tools {

// "45s", "1m48s", "2h5m", "3d4h": a remaining time, to the second below an hour.
std::string format_duration(std::int64_t seconds);

// EXPIRES of one holder: "connected" (a connected lease does not expire), "in 1m48s",
// "expired" (the server has not noticed yet), "at last disconnect" when released while
// connected.
std::string format_expiry(const v1::LeaseHolder& holder, std::int64_t now_seconds);

// The holders of a lease, comma-separated ("node-a", "node-b,node-c"); "-" when free.
// While a break drains: "-> node-b" (who gets it).
std::string format_lease_holders(const v1::Lease& lease);

// VOLUME STATE HOLDER MODE GENERATION CONNECTIONS HELD EXPIRES; one row per holder
// (shared readers get one each), one row with "-" for a free lease.
std::string render_lease_table(const v1::ListLeasesResponse& list, std::int64_t now_seconds);

// `lease acquire` / `renew` / `release`: what the lease is now, in one line.
std::string describe_lease_change(const char* verb, const std::string& holder, const v1::Lease& lease,
                                  std::int64_t now_seconds);

// `lease break`: the generation before and after, who was fenced, how many connections
// were closed, who holds it now.
std::string describe_break(const v1::BreakLeaseResponse& response, std::uint64_t generation_before,
                           std::int64_t now_seconds);

}  // namespace blockd::tools
