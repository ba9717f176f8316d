// CatalogStore: the catalog's one file, STATE_DIR/catalog.pb, read and written whole.
//
// On disk it is a blockd.v1.CatalogFile: the serialized Catalog plus its CRC-32C.
// save() replaces it atomically (FileSystem::write_file_atomically: temp file, fsync,
// rename, fsync of the directory), so a crash at any moment leaves the old catalog or
// the new one. load() refuses a file that is damaged, truncated or from a newer format
// with CatalogError(kDataLoss) and a message saying what to do: a catalog that loaded
// "empty" would make blockd forget volumes whose data is still on disk.
//
// Thread affinity: not thread-safe; owned by the Catalog and used under its mutex.
#pragma once

#include <string>

#include "common/proto/blockd.pb.h"
#include "server/catalog/file_system.h"

namespace blockd::server::catalog {

class CatalogStore {
 public:
  static constexpr std::uint32_t kFormat = 1;
  static constexpr const char* kFileName = "catalog.pb";

  // `fs` must outlive the store.
  CatalogStore(FileSystem& fs, std::string state_dir);

  // The saved catalog; an empty one (version 0) when the file does not exist yet, which
  // is the first start. Throws CatalogError: kDataLoss for a damaged file, kInternal when
  // it cannot be read.
  v1::Catalog load();
  // Throws std::system_error (from the FileSystem) when it cannot be written; the file
  // then still holds the previous catalog or, if the failure came after the rename, this one.
  void save(const v1::Catalog& catalog);

  const std::string& state_dir() const { return state_dir_; }
  const std::string& path() const { return path_; }
  // Where save() writes before the rename; a stale one after a crash is harmless.
  std::string temp_path() const { return path_ + ".tmp"; }

 private:
  FileSystem& fs_;
  std::string state_dir_;
  std::string path_;
};

// CRC-32C (Castagnoli), the checksum stored in CatalogFile.
std::uint32_t crc32c(std::string_view data);

}  // namespace blockd::server::catalog
