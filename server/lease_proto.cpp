#include "server/lease_proto.h"

#include <chrono>

#include "common/proto/timestamp.h"

namespace blockd::server {

using common::proto::to_timestamp;

v1::Lease to_proto(const lease::LeaseInfo& info) {
  const auto now = std::chrono::system_clock::now();
  v1::Lease out;
  out.set_volume(info.volume);
  out.set_state(std::string(lease::to_string(info.state)));
  out.set_generation(info.generation);
  for (const auto& holder : info.holders) {
    auto* h = out.add_holders();
    h->set_holder(holder.holder);
    h->set_mode(std::string(lease::to_string(holder.mode)));
    h->set_connections(static_cast<std::uint32_t>(holder.connections));
    *h->mutable_held_since() =
        to_timestamp(now - std::chrono::duration_cast<std::chrono::system_clock::duration>(holder.held_for));
    if (holder.expires_in)
      *h->mutable_expires_at() =
          to_timestamp(now + std::chrono::duration_cast<std::chrono::system_clock::duration>(*holder.expires_in));
    h->set_restart_grace(holder.restart_grace);
    h->set_released(holder.released);
  }
  out.set_fenced_connections(static_cast<std::uint32_t>(info.fenced_connections));
  if (info.break_to) out.set_break_to(*info.break_to);
  return out;
}

}  // namespace blockd::server
