// Catalog: the node's volumes (DESIGN.md §3), their life cycle and its crash safety.
//
// Every operation that touches files follows one protocol, so that a crash (or a power
// cut) at any moment leaves a state that recover() turns into "before" or "after":
//   1. save the catalog with a PendingOperation that names the volume and its file;
//   2. change the file (create it, grow it, unlink it), durably;
//   3. save the catalog with the outcome and no PendingOperation.
// recover(), at start, reads the pending operation from disk and rolls a CREATE back
// (the caller never got a success), and finishes a RESIZE or a DELETE. It also reports,
// never deletes, files in class directories that no volume names.
//
// While a create or delete is pending the volume is not in Catalog.volumes (CREATE adds
// it with the final save, DELETE removes it with the first), so a listing never shows a
// volume whose file may not exist.
//
// Failures: validation errors change nothing. An I/O error in step 1 or 2 is undone at
// once (the new file removed, the grow truncated back, the unchanged catalog saved again,
// since a failed save may still have replaced the file). If an undo or the final save
// fails too, the catalog is "poisoned": reads still work, changes are refused with
// kUnavailable until recover() (normally: a restart) settles the interrupted operation
// from what is on disk. Never guess when the disk misbehaves.
//
// Thread affinity: any thread; one mutex serialises every call, file I/O included (this
// is the control plane: operations are rare and short, fallocate is metadata only).
// Ownership: borrows the FileSystem (must outlive it), owns its CatalogStore.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/proto/blockd.pb.h"
#include "server/catalog/catalog_error.h"
#include "server/catalog/catalog_store.h"
#include "server/catalog/file_system.h"
#include "server/storage/storage_class.h"

namespace blockd::server::catalog {

struct RecoveryReport {
  std::vector<std::string> actions;        // what recovery did, one sentence each
  std::vector<std::string> unknown_files;  // paths in class directories no volume names; kept
  std::vector<std::string> problems;       // what an operator should look at (missing files...)
};

struct VolumeFilter {
  std::string storage_class;                  // empty: any class
  std::map<std::string, std::string> labels;  // every one must be present with this value
};

class Catalog {
 public:
  // Creates STATE_DIR if needed and loads STATE_DIR/catalog.pb. Throws CatalogError
  // (kDataLoss for a damaged catalog, kInternal for I/O errors). Nothing can change until
  // recover() has run.
  Catalog(FileSystem& fs, std::string state_dir, storage::StorageClassSet classes);

  // Settles an interrupted operation, creates missing class directories that live under
  // STATE_DIR (others must exist: a missing mount must not fill the root file system),
  // checks every volume's file and lists unknown files. Logs everything it reports.
  // Throws CatalogError when the catalog cannot be read or written.
  RecoveryReport recover();

  // request.size is required; see volume_rules.h for every rule. Returns the new volume.
  v1::Volume create_volume(const v1::CreateVolumeRequest& request);
  // Records an existing block device as a volume (request.device_path, absolute; no
  // size, no class): one save, no file is touched. `device_size` is what the caller read
  // from the device (BLKGETSIZE64). Refused when another volume uses the same device.
  v1::Volume register_device(const v1::CreateVolumeRequest& request, std::uint64_t device_size);
  // Grow only: a smaller size is refused (kFailedPrecondition), the same size is a no-op.
  v1::Volume resize_volume(const v1::ResizeVolumeRequest& request);
  // `check`, if given, runs under the catalog's lock with the volume about to go, and
  // refuses by throwing CatalogError (e.g. "2 clients are connected"). A registered
  // block device is only forgotten, never touched.
  void delete_volume(const std::string& name, const std::function<void(const v1::Volume&)>& check = {});

  // The lease manager's GenerationStore: records, with one atomic save, that the
  // volume's generation is now `generation`, granted to `writer` ("" for none). Throws
  // CatalogError (kNotFound, kUnavailable, kInternal). Never lowers a generation.
  void record_generation(const std::string& name, std::uint64_t generation, const std::string& writer);

  std::optional<v1::Volume> find_volume(const std::string& name) const;
  // Sorted by name.
  std::vector<v1::Volume> list_volumes(const VolumeFilter& filter = {}) const;
  // A copy: SIGHUP may replace the classes while another thread reads them.
  storage::StorageClassSet storage_classes() const;
  // SIGHUP: the config file's classes now. Volumes keep their class by name; one whose
  // class is gone is still served but cannot be resized (recovery reports it too).
  void replace_storage_classes(storage::StorageClassSet classes);
  // The saved version of the catalog (incremented by every save).
  std::uint64_t version() const;
  // Why changes are refused, if they are.
  std::optional<std::string> poisoned() const;

  const std::string& path() const { return store_.path(); }

 private:
  // Each expects mutex_ held.
  void require_writable_locked() const;
  // Sets next.version (the next number) and saves it; throws std::system_error.
  void save_locked(v1::Catalog& next);
  // Saves an operation's intent; if that fails, writes the unchanged catalog again so
  // that no half-known intent stays on disk, and throws.
  void save_intent_locked(v1::Catalog& intent, const std::string& what);
  [[noreturn]] void poison_locked(const std::string& what, const std::exception& error);
  void settle_pending_locked(RecoveryReport& report);
  void check_volumes_locked(RecoveryReport& report);
  void find_unknown_files_locked(RecoveryReport& report);
  int index_of_locked(const std::string& name) const;
  void require_new_name_locked(const std::string& name) const;

  FileSystem& fs_;
  storage::StorageClassSet classes_;  // guarded by mutex_
  CatalogStore store_;

  mutable std::mutex mutex_;
  v1::Catalog state_;  // the last catalog saved (or loaded); no pending op once recovered
  std::uint64_t last_version_ = 0;  // the highest version written or read
  bool recovered_ = false;
  std::optional<std::string> poisoned_;
};

// For the control API's ListStorageClassesResponse.
v1::StorageClass to_proto(const storage::StorageClass& storage_class);

}  // namespace blockd::server::catalog
