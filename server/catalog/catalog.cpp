#include "server/catalog/catalog.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <system_error>

#include "common/logging.h"
#include "common/proto/timestamp.h"
#include "common/quote.h"
#include "common/size.h"
#include "server/catalog/uuid.h"
#include "server/catalog/volume_rules.h"

namespace blockd::server::catalog {

using common::quote;

namespace {

google::protobuf::Timestamp now() { return common::proto::to_timestamp(std::chrono::system_clock::now()); }

// An I/O failure, as the caller should see it: ENOSPC and EDQUOT are the one thing a
// person can act on directly.
CatalogError io_error(const std::string& what, const std::system_error& e) {
  const int error = e.code().value();
  const bool full = e.code().category() == std::generic_category() && (error == ENOSPC || error == EDQUOT);
  return CatalogError(full ? ErrorCode::kResourceExhausted : ErrorCode::kInternal, what + ": " + e.what());
}

bool inside(const std::string& path, const std::string& directory) {
  return path.size() > directory.size() && path.compare(0, directory.size(), directory) == 0 &&
         path[directory.size()] == '/';
}

}  // namespace

v1::StorageClass to_proto(const storage::StorageClass& storage_class) {
  v1::StorageClass out;
  out.set_name(storage_class.name);
  out.set_directory(storage_class.directory);
  out.set_allocation(storage_class.allocation == storage::Allocation::kPreallocate ? v1::StorageClass::PREALLOCATE
                                                                                   : v1::StorageClass::SPARSE);
  out.set_io(storage_class.io == storage::IoMode::kDirect ? v1::StorageClass::DIRECT : v1::StorageClass::BUFFERED);
  out.set_is_default(storage_class.is_default);
  return out;
}

Catalog::Catalog(FileSystem& fs, std::string state_dir, storage::StorageClassSet classes)
    : fs_(fs), classes_(std::move(classes)), store_(fs, storage::normalize_directory(state_dir)) {
  try {
    fs_.make_directories(store_.state_dir());
  } catch (const std::system_error& e) {
    throw CatalogError(ErrorCode::kInternal, "cannot create the state directory: " + std::string(e.what()));
  }
  state_ = store_.load();
  last_version_ = state_.version();
}

// ------------------------------------------------------------------------ helpers

void Catalog::require_writable_locked() const {
  if (!recovered_)
    throw CatalogError(ErrorCode::kUnavailable, "the catalog has not been recovered yet; blockd is still starting");
  if (poisoned_)
    throw CatalogError(ErrorCode::kUnavailable, "volumes cannot be changed: " + *poisoned_ +
                                                    ". Restart blockd: at start it finishes or rolls back the "
                                                    "interrupted operation");
}

void Catalog::save_locked(v1::Catalog& next) {
  next.set_version(++last_version_);
  store_.save(next);
}

void Catalog::save_intent_locked(v1::Catalog& intent, const std::string& what) {
  try {
    save_locked(intent);
  } catch (const std::system_error& e) {
    // The intent may be on disk all the same (the rename done, the directory fsync
    // failed), and recovery would then finish a resize or delete the caller was told
    // failed. Writing the unchanged catalog again settles it; if even that fails, the
    // disk decides at restart.
    const CatalogError error = io_error("cannot " + what + ": cannot save the catalog", e);
    try {
      save_locked(state_);
    } catch (const std::system_error& again) {
      poison_locked("cannot " + what + ": the catalog cannot be saved", again);
    }
    throw error;
  }
}

void Catalog::poison_locked(const std::string& what, const std::exception& error) {
  poisoned_ = what + " (" + error.what() + ")";
  common::logger("catalog")->error("catalog poisoned: {}; changes are refused until blockd restarts", *poisoned_);
  throw CatalogError(ErrorCode::kInternal,
                     *poisoned_ + "; whether the operation took effect is settled when blockd restarts");
}

int Catalog::index_of_locked(const std::string& name) const {
  for (int i = 0; i < state_.volumes_size(); ++i)
    if (state_.volumes(i).name() == name) return i;
  return -1;
}

// ------------------------------------------------------------------------ create

void Catalog::require_new_name_locked(const std::string& name) const {
  validate_volume_name(name);
  if (const int existing = index_of_locked(name); existing >= 0) {
    const v1::Volume& v = state_.volumes(existing);
    throw CatalogError(ErrorCode::kAlreadyExists,
                       "volume " + quote(v.name()) + " already exists (" + common::format_size(v.size_bytes()) +
                           (v.block_device() ? ", block device " + v.backing_path() : ", class " + v.storage_class()) +
                           "); choose another name or delete it first");
  }
}

v1::Volume Catalog::register_device(const v1::CreateVolumeRequest& request, std::uint64_t device_size) {
  std::lock_guard lock(mutex_);
  require_writable_locked();
  require_new_name_locked(request.name());
  const std::string& path = request.device_path();
  if (path.empty() || path.front() != '/')
    throw CatalogError(ErrorCode::kInvalidArgument, "device path " + quote(path) + " must be absolute, e.g. /dev/vg0/db");
  if (!request.size().empty() || !request.storage_class().empty())
    throw CatalogError(ErrorCode::kInvalidArgument,
                       "a registered block device has the device's size and no storage class; omit size and "
                       "storage class");
  for (const v1::Volume& v : state_.volumes())
    if (v.backing_path() == path)
      throw CatalogError(ErrorCode::kAlreadyExists, "block device " + path + " is already volume " + quote(v.name()));
  if (device_size == 0 || device_size % kVolumeSizeAlignment != 0)
    throw CatalogError(ErrorCode::kInvalidArgument, "block device " + path + " is " + std::to_string(device_size) +
                                                        " bytes; a volume must be a non-zero multiple of 512");
  const auto modes = normalize_access_modes(request.access_modes());
  validate_description(request.description());
  validate_labels(request.labels());

  v1::Volume volume;
  volume.set_name(request.name());
  volume.set_uuid(generate_uuid_v4());
  volume.set_size_bytes(device_size);
  volume.set_backing_path(path);
  volume.set_block_device(true);
  for (auto mode : modes) volume.add_access_modes(mode);
  volume.set_description(request.description());
  *volume.mutable_labels() = request.labels();
  *volume.mutable_created_at() = now();

  // Nothing on disk changes but the catalog: one atomic save is the whole operation.
  v1::Catalog done = state_;
  *done.add_volumes() = volume;
  try {
    save_locked(done);
  } catch (const std::system_error& e) {
    throw io_error("cannot register block device " + path, e);
  }
  state_ = std::move(done);
  common::logger("catalog")->info("block device registered name={} size={} path={}", volume.name(),
                                  volume.size_bytes(), path);
  return volume;
}

v1::Volume Catalog::create_volume(const v1::CreateVolumeRequest& request) {
  std::lock_guard lock(mutex_);
  require_writable_locked();
  require_new_name_locked(request.name());
  if (!request.device_path().empty())
    throw CatalogError(ErrorCode::kInvalidArgument, "a block device is registered with register_device");
  if (request.size().empty()) throw CatalogError(ErrorCode::kInvalidArgument, "the size is required, e.g. 10GiB");
  const std::uint64_t size = parse_volume_size(request.size());
  const storage::StorageClass* cls =
      request.storage_class().empty() ? &classes_.default_class() : classes_.find(request.storage_class());
  if (cls == nullptr) {
    std::string names;
    for (const auto& c : classes_.all()) names += (names.empty() ? "" : ", ") + c.name;
    throw CatalogError(ErrorCode::kInvalidArgument, "storage class " + quote(request.storage_class()) +
                                                        " does not exist; the classes are " + names);
  }
  const auto modes = normalize_access_modes(request.access_modes());
  validate_description(request.description());
  validate_labels(request.labels());

  const bool preallocate = cls->allocation == storage::Allocation::kPreallocate;
  try {
    const auto dir = fs_.stat(cls->directory);
    if (!dir || dir->type != FileInfo::Type::kDirectory)
      throw CatalogError(ErrorCode::kFailedPrecondition,
                         "storage class " + quote(cls->name) + ": directory " + cls->directory +
                             " does not exist; create it (and mount its file system) or fix the config file");
    if (preallocate) {
      const std::uint64_t free = fs_.free_bytes(cls->directory);
      if (free < size)
        throw CatalogError(ErrorCode::kResourceExhausted,
                           "storage class " + quote(cls->name) + " preallocates, and " + cls->directory + " has " +
                               common::format_size(free) + " free: a " + common::format_size(size) +
                               " volume does not fit; free some space or choose a smaller size or a sparse class");
    }
  } catch (const std::system_error& e) {
    throw io_error("cannot check storage class " + quote(cls->name), e);
  }

  v1::Volume volume;
  volume.set_name(request.name());
  volume.set_uuid(generate_uuid_v4());
  volume.set_size_bytes(size);
  volume.set_storage_class(cls->name);
  volume.set_backing_path(cls->directory + "/" + volume.name() + "-" + volume.uuid() + ".img");
  for (auto mode : modes) volume.add_access_modes(mode);
  volume.set_description(request.description());
  *volume.mutable_labels() = request.labels();
  *volume.mutable_created_at() = now();

  // 1. Intent.
  v1::Catalog intent = state_;
  intent.mutable_pending()->set_kind(v1::PendingOperation::CREATE);
  *intent.mutable_pending()->mutable_volume() = volume;
  *intent.mutable_pending()->mutable_started_at() = volume.created_at();
  save_intent_locked(intent, "create volume " + quote(volume.name()));

  // 2. The file.
  try {
    fs_.create_volume_file(volume.backing_path(), size, preallocate);
  } catch (const std::system_error& e) {
    const CatalogError error = io_error("cannot create volume " + quote(volume.name()), e);
    try {
      if (e.code() != std::errc::file_exists) fs_.remove_file(volume.backing_path());
      save_locked(state_);
    } catch (const std::system_error& undo) {
      poison_locked("creating volume " + quote(volume.name()) + " failed and could not be undone", undo);
    }
    throw error;
  }

  // 3. Outcome.
  v1::Catalog done = state_;
  *done.add_volumes() = volume;
  try {
    save_locked(done);
  } catch (const std::system_error& e) {
    poison_locked("volume " + quote(volume.name()) + " was created but the catalog could not be saved", e);
  }
  state_ = std::move(done);
  common::logger("catalog")->info("volume created name={} size={} class={} path={}", volume.name(),
                                  volume.size_bytes(), volume.storage_class(), volume.backing_path());
  return volume;
}

// ------------------------------------------------------------------------ resize

v1::Volume Catalog::resize_volume(const v1::ResizeVolumeRequest& request) {
  std::lock_guard lock(mutex_);
  require_writable_locked();
  const int index = index_of_locked(request.name());
  if (index < 0) throw CatalogError(ErrorCode::kNotFound, "volume " + quote(request.name()) + " does not exist");
  if (request.size().empty()) throw CatalogError(ErrorCode::kInvalidArgument, "the new size is required, e.g. 20GiB");
  const v1::Volume volume = state_.volumes(index);
  if (volume.block_device())
    throw CatalogError(ErrorCode::kFailedPrecondition,
                       "volume " + quote(volume.name()) + " is the block device " + volume.backing_path() +
                           ", whose size is the device's: grow the device (e.g. lvextend), then delete and "
                           "register the volume again");
  const std::uint64_t old_size = volume.size_bytes();
  const std::uint64_t new_size = parse_volume_size(request.size());
  if (new_size < old_size)
    throw CatalogError(ErrorCode::kFailedPrecondition,
                       "volume " + quote(volume.name()) + " is " + common::format_size(old_size) + "; shrinking it to " +
                           common::format_size(new_size) +
                           " is refused because the file system or data at its end would be cut off. Create a "
                           "smaller volume and copy the data instead");
  if (new_size == old_size) return volume;
  const storage::StorageClass* cls = classes_.find(volume.storage_class());
  if (cls == nullptr)
    throw CatalogError(ErrorCode::kFailedPrecondition,
                       "volume " + quote(volume.name()) + " is in storage class " + quote(volume.storage_class()) +
                           ", which the config file no longer declares; add the class back to resize it");
  const bool preallocate = cls->allocation == storage::Allocation::kPreallocate;
  if (preallocate) {
    try {
      const std::uint64_t free = fs_.free_bytes(cls->directory);
      if (free < new_size - old_size)
        throw CatalogError(ErrorCode::kResourceExhausted,
                           "storage class " + quote(cls->name) + " preallocates, and " + cls->directory + " has " +
                               common::format_size(free) + " free: growing " + quote(volume.name()) + " by " +
                               common::format_size(new_size - old_size) + " does not fit");
    } catch (const std::system_error& e) {
      throw io_error("cannot check storage class " + quote(cls->name), e);
    }
  }

  v1::Catalog intent = state_;
  intent.mutable_pending()->set_kind(v1::PendingOperation::RESIZE);
  *intent.mutable_pending()->mutable_volume() = volume;
  intent.mutable_pending()->set_new_size_bytes(new_size);
  *intent.mutable_pending()->mutable_started_at() = now();
  save_intent_locked(intent, "resize volume " + quote(volume.name()));

  try {
    fs_.grow_volume_file(volume.backing_path(), new_size, preallocate);
  } catch (const std::system_error& e) {
    const CatalogError error = io_error("cannot resize volume " + quote(volume.name()), e);
    try {
      // No one has seen the new size yet: cutting the file back loses nothing.
      fs_.truncate_file(volume.backing_path(), old_size);
      save_locked(state_);
    } catch (const std::system_error& undo) {
      poison_locked("resizing volume " + quote(volume.name()) + " failed and could not be undone", undo);
    }
    throw error;
  }

  v1::Catalog done = state_;
  done.mutable_volumes(index)->set_size_bytes(new_size);
  try {
    save_locked(done);
  } catch (const std::system_error& e) {
    poison_locked("volume " + quote(volume.name()) + " was grown but the catalog could not be saved", e);
  }
  state_ = std::move(done);
  common::logger("catalog")->info("volume resized name={} old_size={} new_size={}", volume.name(), old_size, new_size);
  return state_.volumes(index);
}

// ------------------------------------------------------------------------ delete

void Catalog::delete_volume(const std::string& name, const std::function<void(const v1::Volume&)>& check) {
  std::lock_guard lock(mutex_);
  require_writable_locked();
  const int index = index_of_locked(name);
  if (index < 0) throw CatalogError(ErrorCode::kNotFound, "volume " + quote(name) + " does not exist");
  const v1::Volume volume = state_.volumes(index);
  if (check) check(volume);
  if (volume.block_device()) {
    // Forgotten, never touched: the device and its data stay.
    v1::Catalog done = state_;
    done.mutable_volumes()->DeleteSubrange(index, 1);
    try {
      save_locked(done);
    } catch (const std::system_error& e) {
      throw io_error("cannot unregister block device " + volume.backing_path(), e);
    }
    state_ = std::move(done);
    common::logger("catalog")->info("block device unregistered name={} path={}", name, volume.backing_path());
    return;
  }

  // The volume leaves the listing with the intent: from here on it is being deleted.
  v1::Catalog intent = state_;
  intent.mutable_volumes()->DeleteSubrange(index, 1);
  v1::Catalog done = intent;
  intent.mutable_pending()->set_kind(v1::PendingOperation::DELETE);
  *intent.mutable_pending()->mutable_volume() = volume;
  *intent.mutable_pending()->mutable_started_at() = now();
  save_intent_locked(intent, "delete volume " + quote(name));

  try {
    fs_.remove_file(volume.backing_path());
  } catch (const std::system_error& e) {
    const CatalogError error = io_error("cannot delete volume " + quote(name), e);
    try {
      // Still there: the volume stays. Gone (the directory fsync failed): it is deleted.
      if (fs_.stat(volume.backing_path())) {
        save_locked(state_);
      } else {
        save_locked(done);
        state_ = std::move(done);
      }
    } catch (const std::system_error& undo) {
      poison_locked("deleting volume " + quote(name) + " failed and could not be settled", undo);
    }
    throw error;
  }

  try {
    save_locked(done);
  } catch (const std::system_error& e) {
    poison_locked("volume " + quote(name) + " was deleted but the catalog could not be saved", e);
  }
  state_ = std::move(done);
  common::logger("catalog")->info("volume deleted name={} path={}", name, volume.backing_path());
}

// ------------------------------------------------------------------------ leases

void Catalog::record_generation(const std::string& name, std::uint64_t generation, const std::string& writer) {
  std::lock_guard lock(mutex_);
  require_writable_locked();
  const int index = index_of_locked(name);
  if (index < 0) throw CatalogError(ErrorCode::kNotFound, "volume " + quote(name) + " does not exist");
  if (generation < state_.volumes(index).generation())
    throw CatalogError(ErrorCode::kInternal, "volume " + quote(name) + " is at generation " +
                                                 std::to_string(state_.volumes(index).generation()) +
                                                 "; a generation never goes back (asked for " +
                                                 std::to_string(generation) + ")");
  v1::Catalog next = state_;
  next.mutable_volumes(index)->set_generation(generation);
  next.mutable_volumes(index)->set_last_writer(writer);
  try {
    save_locked(next);
  } catch (const std::system_error& e) {
    throw io_error("cannot record generation " + std::to_string(generation) + " of volume " + quote(name), e);
  }
  state_ = std::move(next);
}

// ------------------------------------------------------------------------ queries

std::optional<v1::Volume> Catalog::find_volume(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const int index = index_of_locked(name);
  if (index < 0) return std::nullopt;
  return state_.volumes(index);
}

std::vector<v1::Volume> Catalog::list_volumes(const VolumeFilter& filter) const {
  std::lock_guard lock(mutex_);
  std::vector<v1::Volume> out;
  for (const v1::Volume& v : state_.volumes()) {
    if (!filter.storage_class.empty() && v.storage_class() != filter.storage_class) continue;
    const bool labels_match = std::all_of(filter.labels.begin(), filter.labels.end(), [&](const auto& wanted) {
      const auto it = v.labels().find(wanted.first);
      return it != v.labels().end() && it->second == wanted.second;
    });
    if (labels_match) out.push_back(v);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return out;
}

storage::StorageClassSet Catalog::storage_classes() const {
  std::lock_guard lock(mutex_);
  return classes_;
}

void Catalog::replace_storage_classes(storage::StorageClassSet classes) {
  std::lock_guard lock(mutex_);
  for (const v1::Volume& v : state_.volumes())
    if (!v.block_device() && classes.find(v.storage_class()) == nullptr)
      common::logger("catalog")->warn("volume name={} is in storage class {}, which the new config does not declare; "
                                      "it is served but cannot be resized until the class is back",
                                      v.name(), v.storage_class());
  classes_ = std::move(classes);
}

std::uint64_t Catalog::version() const {
  std::lock_guard lock(mutex_);
  return state_.version();
}

std::optional<std::string> Catalog::poisoned() const {
  std::lock_guard lock(mutex_);
  return poisoned_;
}

// ------------------------------------------------------------------------ recovery

RecoveryReport Catalog::recover() {
  std::lock_guard lock(mutex_);
  RecoveryReport report;
  auto log = common::logger("catalog");
  // From disk, not from memory: after a poisoning, memory may not say what happened.
  state_ = store_.load();
  last_version_ = std::max(last_version_, state_.version());

  for (const storage::StorageClass& c : classes_.all()) {
    try {
      const auto info = fs_.stat(c.directory);
      if (!info && inside(c.directory, store_.state_dir())) {
        fs_.make_directories(c.directory);
        report.actions.push_back("created the directory " + c.directory + " of storage class " + quote(c.name));
        log->info("recovery: {}", report.actions.back());  // expected at a first start: not a warning
      } else if (!info) {
        report.problems.push_back("storage class " + quote(c.name) + ": directory " + c.directory +
                                  " does not exist; create it (and mount its file system) or fix the config file");
      } else if (info->type != FileInfo::Type::kDirectory) {
        report.problems.push_back("storage class " + quote(c.name) + ": " + c.directory + " is not a directory");
      }
    } catch (const std::system_error& e) {
      report.problems.push_back("storage class " + quote(c.name) + ": " + e.what());
    }
  }
  try {
    fs_.unlink(store_.temp_path());  // a save interrupted before its rename; never the catalog
  } catch (const std::system_error& e) {
    report.problems.push_back(std::string("cannot remove a stale temporary catalog: ") + e.what());
  }

  const std::size_t pending_actions_from = report.actions.size();
  settle_pending_locked(report);
  check_volumes_locked(report);
  find_unknown_files_locked(report);

  recovered_ = true;
  poisoned_.reset();
  for (std::size_t i = pending_actions_from; i < report.actions.size(); ++i) log->warn("recovery: {}", report.actions[i]);
  for (const auto& path : report.unknown_files)
    log->warn("recovery: unknown file path={} (no volume names it; kept, remove it yourself if unwanted)", path);
  for (const auto& line : report.problems) log->error("recovery: {}", line);
  log->info("catalog ready path={} version={} volumes={}", store_.path(), state_.version(), state_.volumes_size());
  return report;
}

void Catalog::settle_pending_locked(RecoveryReport& report) {
  if (!state_.has_pending()) return;
  const v1::PendingOperation pending = state_.pending();
  const v1::Volume& volume = pending.volume();
  v1::Catalog next = state_;
  next.clear_pending();
  try {
    switch (pending.kind()) {
      case v1::PendingOperation::CREATE:
        // The caller never heard "created": roll back rather than adopt a file that may
        // be incomplete.
        fs_.remove_file(volume.backing_path());
        report.actions.push_back("rolled back the interrupted creation of volume " + quote(volume.name()) +
                                 " (removed " + volume.backing_path() + " if it existed)");
        break;
      case v1::PendingOperation::DELETE:
        fs_.remove_file(volume.backing_path());
        report.actions.push_back("finished the interrupted deletion of volume " + quote(volume.name()) +
                                 " (removed " + volume.backing_path() + ")");
        break;
      case v1::PendingOperation::RESIZE: {
        int index = -1;
        for (int i = 0; i < next.volumes_size(); ++i)
          if (next.volumes(i).name() == volume.name()) index = i;
        if (index < 0) {
          report.problems.push_back("dropped an interrupted resize of volume " + quote(volume.name()) +
                                    ", which is not in the catalog");
          break;
        }
        const std::string path = next.volumes(index).backing_path();
        if (!fs_.stat(path)) {
          report.problems.push_back("cannot finish resizing volume " + quote(volume.name()) + ": its file " + path +
                                    " is missing");
          break;
        }
        const storage::StorageClass* cls = classes_.find(volume.storage_class());
        const bool preallocate = cls != nullptr && cls->allocation == storage::Allocation::kPreallocate;
        try {
          fs_.grow_volume_file(path, pending.new_size_bytes(), preallocate);
          next.mutable_volumes(index)->set_size_bytes(pending.new_size_bytes());
          report.actions.push_back("finished the interrupted resize of volume " + quote(volume.name()) + " from " +
                                   std::to_string(volume.size_bytes()) + " to " +
                                   std::to_string(pending.new_size_bytes()) + " bytes");
        } catch (const std::system_error& e) {
          fs_.truncate_file(path, next.volumes(index).size_bytes());
          report.actions.push_back("rolled back the interrupted resize of volume " + quote(volume.name()) +
                                   " to " + std::to_string(volume.size_bytes()) + " bytes, because it could not "
                                   "be finished: " + e.what());
        }
        break;
      }
      default:
        report.problems.push_back("dropped a pending operation of unknown kind " + std::to_string(pending.kind()));
        break;
    }
    save_locked(next);
  } catch (const std::system_error& e) {
    throw CatalogError(ErrorCode::kInternal, "cannot settle the interrupted operation on volume " +
                                                 quote(volume.name()) + ": " + e.what());
  }
  state_ = std::move(next);
}

void Catalog::check_volumes_locked(RecoveryReport& report) {
  for (const v1::Volume& v : state_.volumes()) {
    if (v.block_device()) {
      const auto info = fs_.stat(v.backing_path());
      if (!info || info->type != FileInfo::Type::kBlockDevice)
        report.problems.push_back("volume " + quote(v.name()) + ": block device " + v.backing_path() +
                                  (info ? " is not a block device any more" : " is missing") +
                                  "; it is not served until it is back");
      continue;
    }
    if (classes_.find(v.storage_class()) == nullptr)
      report.problems.push_back("volume " + quote(v.name()) + " is in storage class " + quote(v.storage_class()) +
                                ", which the config file no longer declares; it is served, but cannot be resized");
    try {
      const auto info = fs_.stat(v.backing_path());
      if (!info) {
        report.problems.push_back("volume " + quote(v.name()) + ": its file " + v.backing_path() +
                                  " is missing; restore it, or delete the volume");
      } else if (info->type == FileInfo::Type::kRegular && info->size != v.size_bytes()) {
        report.problems.push_back("volume " + quote(v.name()) + ": its file " + v.backing_path() + " is " +
                                  std::to_string(info->size) + " bytes, but the catalog says " +
                                  std::to_string(v.size_bytes()));
      }
    } catch (const std::system_error& e) {
      report.problems.push_back("volume " + quote(v.name()) + ": " + e.what());
    }
  }
}

void Catalog::find_unknown_files_locked(RecoveryReport& report) {
  std::set<std::string> known = {store_.path(), store_.temp_path()};
  for (const v1::Volume& v : state_.volumes()) known.insert(v.backing_path());
  std::set<std::string> directories;
  for (const storage::StorageClass& c : classes_.all()) directories.insert(c.directory);
  for (const std::string& directory : directories) {
    try {
      const auto info = fs_.stat(directory);
      if (!info || info->type != FileInfo::Type::kDirectory) continue;  // already a problem
      for (const std::string& name : fs_.list_directory(directory)) {
        const std::string path = directory == "/" ? "/" + name : directory + "/" + name;
        // A class directory inside another (e.g. STATE_DIR/volumes when STATE_DIR is one)
        // is not an unknown file.
        if (directories.count(path) != 0) continue;
        if (known.count(path) == 0) report.unknown_files.push_back(path);
      }
    } catch (const std::system_error& e) {
      report.problems.push_back(std::string("cannot list ") + directory + ": " + e.what());
    }
  }
}

}  // namespace blockd::server::catalog
