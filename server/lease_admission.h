// LeaseAdmission: blockd's AdmissionPolicy. A session is admitted at GO only under a
// lease from the LeaseManager (DESIGN.md §4): the holder is the one the export name
// names (`db?holder=node-a`) or the client's IP address, the mode the one it names
// (`mode=ro`) or, by default, rw (ro on a volume that allows only ReadOnlyMany).
//
// Thread affinity: any worker; the LeaseManager synchronises. Ownership: borrows it.
#pragma once

#include "server/lease/lease_manager.h"
#include "server/nbd/admission.h"

namespace blockd::server {

class LeaseAdmission final : public nbd::AdmissionPolicy {
 public:
  explicit LeaseAdmission(lease::LeaseManager& leases) : leases_(leases) {}

  nbd::Admission admit(const storage::Volume& volume, const lease::ExportRequest& request,
                       const nbd::ClientInfo& client) override;
  std::optional<std::string> probe(const storage::Volume& volume, const lease::ExportRequest& request,
                                   const nbd::ClientInfo& client, bool& read_only) override;

 private:
  lease::LeaseManager& leases_;
};

}  // namespace blockd::server
