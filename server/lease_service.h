// LeaseService: the control API's lease operations (DESIGN.md §4, §5) on top of the
// LeaseManager: list, show, acquire, renew, release and break, with the volume checked
// against what NBD exports and the answers in the schema's messages.
//
// break_lease() answers only when the break has finished: the old holder's sessions
// fenced, the writes they had submitted completed, the sessions closed, the lease handed
// to the new holder if one was named. After it returns, no write of the old holder can
// reach the disk. It waits at most kBreakTimeout; the break itself still completes later.
//
// Errors: catalog::CatalogError (the control API's one error vocabulary).
// Thread affinity: the control thread (break_lease blocks it while the old sessions
// drain, which their workers do without it). Ownership: borrows the manager and registry.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/proto/blockd.pb.h"
#include "server/lease/lease_manager.h"
#include "server/storage/volume_registry.h"

namespace blockd::server {

class LeaseService {
 public:
  static constexpr std::chrono::seconds kBreakTimeout{60};

  LeaseService(lease::LeaseManager& leases, const storage::VolumeRegistry& volumes);

  // Every exported volume's lease, sorted by volume.
  std::vector<v1::Lease> list() const;
  v1::Lease show(const std::string& volume) const;
  v1::Lease acquire(const std::string& volume, const v1::AcquireLeaseRequest& request);
  v1::Lease renew(const std::string& volume, const v1::RenewLeaseRequest& request);
  v1::Lease release(const std::string& volume, const v1::ReleaseLeaseRequest& request);
  v1::BreakLeaseResponse break_lease(const std::string& volume, const v1::BreakLeaseRequest& request);

 private:
  std::shared_ptr<storage::Volume> require_volume(const std::string& volume) const;

  lease::LeaseManager& leases_;
  const storage::VolumeRegistry& volumes_;
};

}  // namespace blockd::server
