#include "server/volume_service.h"

#include <algorithm>
#include <cstring>

#include "common/logging.h"
#include "common/quote.h"
#include "common/size.h"
#include "server/catalog/volume_rules.h"
#include "server/lease_proto.h"
#include "server/storage/uring_file_backend.h"

namespace blockd::server {

using catalog::CatalogError;
using catalog::ErrorCode;
using common::quote;

namespace {

bool read_only(const v1::Volume& volume) {
  // A volume that allows only ReadOnlyMany is never written.
  return std::find(volume.access_modes().begin(), volume.access_modes().end(), v1::READ_WRITE_ONCE) ==
         volume.access_modes().end();
}

}  // namespace

lease::AllowedModes allowed_modes(const v1::Volume& volume) {
  const auto& modes = volume.access_modes();
  const bool rwo = std::find(modes.begin(), modes.end(), v1::READ_WRITE_ONCE) != modes.end();
  const bool rox = std::find(modes.begin(), modes.end(), v1::READ_ONLY_MANY) != modes.end();
  // An empty list is ReadWriteOnce (the catalog's default).
  return modes.empty() ? lease::AllowedModes{true, false} : lease::AllowedModes{rwo, rox};
}

void serve_volume(storage::VolumeRegistry& registry, storage::Volume::Options options,
                  std::unique_ptr<storage::Backend> backend, std::optional<std::string_view> storage_class) {
  auto volume = std::make_shared<storage::Volume>(std::move(options), std::move(backend));
  const std::string cls = storage_class ? " class=" + std::string(*storage_class) : "";
  common::logger("server")->info("volume name={} size={} ({} bytes) backend=\"{}\"{} read_only={}", volume->name(),
                                 common::format_size(volume->size()), volume->size(), volume->describe(), cls,
                                 volume->read_only());
  registry.add(std::move(volume));
}

VolumeService::VolumeService(catalog::Catalog& catalog, storage::VolumeRegistry& registry, unsigned workers,
                             bool unsafe_ack_without_sync)
    : catalog_(catalog), registry_(registry), workers_(workers), unsafe_ack_without_sync_(unsafe_ack_without_sync) {}

void VolumeService::export_volume(const v1::Volume& volume) {
  const storage::StorageClassSet classes = catalog_.storage_classes();
  const storage::StorageClass* cls = volume.block_device() ? nullptr : classes.find(volume.storage_class());
  storage::UringFileBackend::Options options{volume.backing_path(), std::nullopt, read_only(volume),
                                             cls != nullptr && cls->io == storage::IoMode::kDirect};
  auto backend = storage::UringFileBackend::open(options);
  if (backend->size() != volume.size_bytes())
    throw std::runtime_error(volume.backing_path() + " is " + std::to_string(backend->size()) +
                             " bytes but the catalog says " + std::to_string(volume.size_bytes()));
  storage::Volume::Options volume_options{volume.name(), volume.description(), read_only(volume),
                                          allowed_modes(volume), workers_, unsafe_ack_without_sync_};
  serve_volume(registry_, std::move(volume_options), std::move(backend), volume.storage_class());
}

std::size_t VolumeService::export_catalog_volumes() {
  std::lock_guard lock(changes_);
  std::size_t count = 0;
  for (const v1::Volume& volume : catalog_.list_volumes()) {
    if (command_line_.count(volume.name())) {
      common::logger("server")->error(
          "volume name={} is in the catalog and also given with --volume; serving the --volume one. "
          "Rename or drop the --volume to serve the catalog's", volume.name());
      continue;
    }
    try {
      export_volume(volume);
      ++count;
    } catch (const std::exception& e) {
      common::logger("server")->error("volume name={} is not served: {}", volume.name(), e.what());
    }
  }
  return count;
}

v1::Volume VolumeService::register_device(const v1::CreateVolumeRequest& request) {
  // Opened first: that proves it is a block device this process can use and reads its
  // size (BLKGETSIZE64).
  std::unique_ptr<storage::UringFileBackend> device;
  try {
    device = storage::UringFileBackend::open({request.device_path(), std::nullopt, false, false});
  } catch (const std::exception& e) {
    throw CatalogError(ErrorCode::kInvalidArgument, std::string("cannot register the block device: ") + e.what());
  }
  if (device->describe().rfind("device ", 0) != 0)
    throw CatalogError(ErrorCode::kInvalidArgument,
                       request.device_path() + " is not a block device; volumes in files are created with a size "
                       "(and a storage class), not registered");
  return catalog_.register_device(request, device->size());
}

void VolumeService::refuse_command_line_volume(const std::string& name, const char* what) const {
  if (command_line_.count(name))
    throw CatalogError(ErrorCode::kFailedPrecondition,
                       "volume " + quote(name) + " was given on blockd's command line (--volume), not created "
                       "through the API; " + what + " it by changing blockd's command line");
}

void VolumeService::refuse_leased(const std::string& name, const char* what) const {
  if (!leases_) return;
  if (auto reason = leases_->busy_reason(name))
    throw CatalogError(ErrorCode::kFailedPrecondition, std::string("cannot ") + what + " volume " + quote(name) +
                                                           ": " + *reason);
}

v1::Volume VolumeService::create(const v1::CreateVolumeRequest& request) {
  std::lock_guard lock(changes_);
  if (command_line_.count(request.name()))
    throw CatalogError(ErrorCode::kAlreadyExists, "volume " + quote(request.name()) +
                                                      " already exists (given on blockd's command line)");
  v1::Volume volume = request.device_path().empty() ? catalog_.create_volume(request) : register_device(request);
  try {
    export_volume(volume);
  } catch (const std::exception& e) {
    // The catalog has it and the file is whole; only serving it failed. Keep the volume
    // (it is served after a restart) and say so rather than pretend it is usable.
    common::logger("server")->error("volume name={} was created but cannot be served: {}", volume.name(), e.what());
    throw CatalogError(ErrorCode::kInternal, "volume " + quote(volume.name()) +
                                                 " was created but cannot be served: " + e.what());
  }
  return with_status(std::move(volume));
}

v1::Volume VolumeService::resize(const v1::ResizeVolumeRequest& request) {
  std::lock_guard lock(changes_);
  refuse_command_line_volume(request.name(), "resize");
  if (catalog_.find_volume(request.name())) {
    (void)catalog::parse_volume_size(request.size());  // a bad size is the first thing to say
    refuse_leased(request.name(), "resize");
  }
  auto live = registry_.find(request.name());
  if (live && live->poisoned())
    throw CatalogError(ErrorCode::kFailedPrecondition,
                       "volume " + quote(request.name()) + " is poisoned by a failed sync; restart blockd first");
  v1::Volume volume = catalog_.resize_volume(request);
  if (live && volume.size_bytes() != live->size()) {
    if (auto grown = live->grow(volume.size_bytes()); !grown) {
      common::logger("server")->error("volume name={} was grown on disk but the live volume could not be: {}",
                                      volume.name(), std::strerror(grown.error()));
      throw CatalogError(ErrorCode::kInternal, "volume " + quote(volume.name()) +
                                                   " was grown on disk; new connections see the new size after "
                                                   "blockd restarts");
    }
  }
  return with_status(std::move(volume));
}

void VolumeService::remove(const std::string& name) {
  std::lock_guard lock(changes_);
  refuse_command_line_volume(name, "delete");
  if (!catalog_.find_volume(name))
    throw CatalogError(ErrorCode::kNotFound, "volume " + quote(name) + " does not exist");
  // Out of the registry first: no new session can open it while the checks run.
  auto live = registry_.remove(name);
  try {
    refuse_leased(name, "delete");
    catalog_.delete_volume(name, [&](const v1::Volume&) {
      const int connections = live ? live->connections() : 0;
      if (connections > 0)
        throw CatalogError(ErrorCode::kFailedPrecondition,
                           "volume " + quote(name) + " has " + std::to_string(connections) + " client" +
                               (connections == 1 ? "" : "s") +
                               " connected; disconnect them (nbd-client -d, or stop the application) and retry");
    });
  } catch (...) {
    if (live) registry_.add(std::move(live));
    throw;
  }
  if (leases_) leases_->forget(name);
}

v1::Volume VolumeService::with_status(v1::Volume volume) const {
  if (auto live = registry_.find(volume.name())) {
    volume.mutable_status()->set_connections(static_cast<std::uint32_t>(std::max(0, live->connections())));
    volume.mutable_status()->set_poisoned(live->poisoned());
  }
  if (leases_) *volume.mutable_status()->mutable_lease() = to_proto(leases_->show(volume.name()));
  return volume;
}

std::optional<v1::Volume> VolumeService::find(const std::string& name) const {
  auto volume = catalog_.find_volume(name);
  if (!volume) return std::nullopt;
  return with_status(std::move(*volume));
}

std::vector<v1::Volume> VolumeService::list(const catalog::VolumeFilter& filter) const {
  std::vector<v1::Volume> out;
  for (auto& volume : catalog_.list_volumes(filter)) out.push_back(with_status(std::move(volume)));
  return out;
}

std::vector<v1::Volume> VolumeService::exported() const {
  std::vector<v1::Volume> out;
  for (const auto& live : registry_.list()) {
    if (auto volume = catalog_.find_volume(live->name()); volume && !command_line_.count(live->name())) {
      out.push_back(with_status(std::move(*volume)));
      continue;
    }
    v1::Volume volume;  // a --volume one: what the registry knows
    volume.set_name(live->name());
    volume.set_size_bytes(live->size());
    volume.set_description(live->description());
    volume.set_backing_path(live->describe());
    volume.add_access_modes(live->read_only() ? v1::READ_ONLY_MANY : v1::READ_WRITE_ONCE);
    out.push_back(with_status(std::move(volume)));
  }
  return out;
}

std::vector<v1::StorageClass> VolumeService::storage_classes() const {
  std::vector<v1::StorageClass> out;
  const storage::StorageClassSet classes = catalog_.storage_classes();
  for (const auto& cls : classes.all()) out.push_back(catalog::to_proto(cls));
  return out;
}

std::vector<std::string> VolumeService::poisoned() const {
  std::vector<std::string> out;
  if (auto why = catalog_.poisoned()) out.push_back("the catalog (" + *why + ")");
  for (const auto& live : registry_.list())
    if (live->poisoned()) out.push_back(live->name());
  return out;
}

}  // namespace blockd::server
