#include "server/lease_admission.h"

#include "common/logging.h"

namespace blockd::server {

namespace {

std::string holder_of(const lease::ExportRequest& request, const nbd::ClientInfo& client) {
  return request.holder ? *request.holder : lease::default_holder(client.peer);
}

}  // namespace

nbd::Admission LeaseAdmission::admit(const storage::Volume& volume, const lease::ExportRequest& request,
                                     const nbd::ClientInfo& client) {
  const lease::LeaseMode mode = request.mode_for(volume.allowed_modes());
  auto result = leases_.admit(volume.name(), holder_of(request, client), mode, volume.allowed_modes());
  nbd::Admission admission;
  if (!result.admitted()) {
    admission.refusal = result.refusal.message;
    return admission;
  }
  admission.read_only = volume.read_only() || !result.ticket->writable();
  admission.ticket = std::move(result.ticket);
  return admission;
}

std::optional<std::string> LeaseAdmission::probe(const storage::Volume& volume, const lease::ExportRequest& request,
                                                 const nbd::ClientInfo& client, bool& read_only) {
  const lease::LeaseMode mode = request.mode_for(volume.allowed_modes());
  read_only = volume.read_only() || mode == lease::LeaseMode::kReadOnly;
  if (auto refusal = leases_.probe(volume.name(), holder_of(request, client), mode, volume.allowed_modes()))
    return refusal->message;
  return std::nullopt;
}

}  // namespace blockd::server
