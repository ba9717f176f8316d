// VolumeService: the one place where the catalog (what volumes exist, on disk) and the
// VolumeRegistry (what NBD serves) are changed together, so that the two never
// disagree: a volume is exported once the catalog has it and its file is whole, and
// stops being exported before its file goes.
//
// - create: catalog first, then the backend is opened and the volume exported.
// - resize (grow only): the catalog grows the file, then the live Volume is told; new
//   sessions see the new size, sessions already open keep the size they negotiated.
// - delete: the volume leaves the registry first (no new session can find it), then is
//   refused, and put back, if it is leased or any client is connected; otherwise the
//   catalog deletes it and the lease manager forgets it.
// - resize and delete are refused while the volume is leased (DESIGN.md §4), with the
//   holder's name and how to release or break the lease.
//
// Lock order: the lease manager is never called from inside a catalog callback (the
// manager calls the catalog with its own lock held).
//
// Volumes named with --volume are served but are not the catalog's: they cannot be
// resized or deleted through the API, and the catalog cannot create a volume of the
// same name.
//
// Errors are catalog::CatalogError (a code the control API maps to an HTTP status).
// Thread affinity: any thread (the control API's); one mutex orders every change, the
// catalog and registry lock for themselves. Ownership: borrows the catalog and registry.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/blockd.pb.h"
#include "server/catalog/catalog.h"
#include "server/lease/lease_manager.h"
#include "server/lease/lease_mode.h"
#include "server/storage/volume_registry.h"

namespace blockd::server {

// The lease manager's view of a volume's access modes.
lease::AllowedModes allowed_modes(const v1::Volume& volume);

// The one path by which a volume, the catalog's or one given with --volume, is served:
// wraps the backend, logs what is served (with its storage class when it has one) and
// adds it to the registry. Throws std::invalid_argument when the name is taken.
void serve_volume(storage::VolumeRegistry& registry, storage::Volume::Options options,
                  std::unique_ptr<storage::Backend> backend,
                  std::optional<std::string_view> storage_class = std::nullopt);

class VolumeService {
 public:
  VolumeService(catalog::Catalog& catalog, storage::VolumeRegistry& registry, unsigned workers,
                bool unsafe_ack_without_sync);

  // Start-up: exports every volume of the catalog. A volume whose file cannot be opened
  // is logged and left out (the others are served); returns how many were exported.
  std::size_t export_catalog_volumes();
  // Start-up: the lease manager, consulted before a delete or a resize (a leased volume
  // is refused) and shown in every volume's status. Borrowed; may stay null in tests.
  void set_leases(lease::LeaseManager* leases) { leases_ = leases; }
  // Start-up: remembers the volumes exported from the command line.
  void add_command_line_volume(const std::string& name) { command_line_.insert(name); }

  v1::Volume create(const v1::CreateVolumeRequest& request);
  v1::Volume resize(const v1::ResizeVolumeRequest& request);
  void remove(const std::string& name);

  // Catalog volumes with their status filled in.
  std::optional<v1::Volume> find(const std::string& name) const;
  std::vector<v1::Volume> list(const catalog::VolumeFilter& filter) const;
  // Everything NBD serves, command-line volumes included, sorted by name.
  std::vector<v1::Volume> exported() const;
  std::vector<v1::StorageClass> storage_classes() const;
  // Names of poisoned volumes (a failed sync), and the catalog if a failed change could
  // not be undone: /readyz is not ready while there are any.
  std::vector<std::string> poisoned() const;

 private:
  void export_volume(const v1::Volume& volume);
  v1::Volume register_device(const v1::CreateVolumeRequest& request);
  v1::Volume with_status(v1::Volume volume) const;
  void refuse_command_line_volume(const std::string& name, const char* what) const;
  // Throws kFailedPrecondition, naming the holder, while the volume is leased.
  void refuse_leased(const std::string& name, const char* what) const;

  catalog::Catalog& catalog_;
  storage::VolumeRegistry& registry_;
  const unsigned workers_;
  const bool unsafe_ack_without_sync_;
  lease::LeaseManager* leases_ = nullptr;
  std::set<std::string> command_line_;
  std::mutex changes_;
};

}  // namespace blockd::server
