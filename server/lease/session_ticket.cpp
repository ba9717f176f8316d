#include "server/lease/session_ticket.h"

#include "server/lease/lease_manager.h"

namespace blockd::server::lease {

SessionTicket::SessionTicket(Key, LeaseManager& manager, std::uint64_t id, std::string volume, std::string holder,
                             LeaseMode mode, std::uint64_t generation)
    : manager_(manager),
      id_(id),
      volume_(std::move(volume)),
      holder_(std::move(holder)),
      mode_(mode),
      generation_(generation) {}

SessionTicket::~SessionTicket() { manager_.close_session(*this); }

void SessionTicket::on_fenced(std::function<void()> handler) { manager_.set_fence_handler(*this, std::move(handler)); }

}  // namespace blockd::server::lease
