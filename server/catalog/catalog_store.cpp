#include "server/catalog/catalog_store.h"

#include <boost/crc.hpp>
#include <system_error>

#include "server/catalog/catalog_error.h"

namespace blockd::server::catalog {

std::uint32_t crc32c(std::string_view data) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

CatalogStore::CatalogStore(FileSystem& fs, std::string state_dir)
    : fs_(fs), state_dir_(std::move(state_dir)), path_(state_dir_ + "/" + kFileName) {}

v1::Catalog CatalogStore::load() {
  std::optional<std::string> content;
  try {
    content = fs_.read_file(path_);
  } catch (const std::system_error& e) {
    throw CatalogError(ErrorCode::kInternal, std::string("cannot read the catalog: ") + e.what());
  }
  if (!content) return v1::Catalog();

  const std::string advice =
      "; blockd will not start with a catalog it cannot read, because it would forget volumes whose files are "
      "still on disk. Restore " + path_ + " from a backup, or move it aside to start with an empty catalog (the "
      "volume files are then reported as unknown, never deleted)";
  v1::CatalogFile file;
  if (content->empty() || !file.ParseFromString(*content))
    throw CatalogError(ErrorCode::kDataLoss, path_ + " is damaged: it is not a blockd catalog (" +
                                                 std::to_string(content->size()) + " bytes)" + advice);
  // The checksum first: fields 2 and 3 mean the same in every format, so that a damaged
  // or foreign file is called damaged rather than "from a newer blockd".
  if (!file.has_crc32c() || file.crc32c() != crc32c(file.catalog()))
    throw CatalogError(ErrorCode::kDataLoss, path_ + " is damaged: it is not a blockd catalog or its checksum does "
                                                     "not match" + advice);
  if (file.format() == 0)
    throw CatalogError(ErrorCode::kDataLoss, path_ + " is damaged: it is not a blockd catalog (no format number)" + advice);
  if (file.format() > kFormat)
    throw CatalogError(ErrorCode::kDataLoss, path_ + " has catalog format " + std::to_string(file.format()) +
                                                 ", newer than the format " + std::to_string(kFormat) +
                                                 " this blockd reads; run the blockd that wrote it (or a newer one)");
  v1::Catalog catalog;
  if (!catalog.ParseFromString(file.catalog()))
    throw CatalogError(ErrorCode::kDataLoss, path_ + " is damaged: its checksum matches but its content does not parse" + advice);
  return catalog;
}

void CatalogStore::save(const v1::Catalog& catalog) {
  v1::CatalogFile file;
  file.set_format(kFormat);
  if (!catalog.SerializeToString(file.mutable_catalog()))
    throw std::system_error(std::make_error_code(std::errc::invalid_argument), "serialize the catalog");
  file.set_crc32c(crc32c(file.catalog()));
  std::string bytes;
  if (!file.SerializeToString(&bytes))
    throw std::system_error(std::make_error_code(std::errc::invalid_argument), "serialize the catalog");
  fs_.write_file_atomically(path_, bytes);
}

}  // namespace blockd::server::catalog
