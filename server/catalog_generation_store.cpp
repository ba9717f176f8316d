#include "server/catalog_generation_store.h"

namespace blockd::server {

std::uint64_t CatalogGenerationStore::load(const std::string& volume) {
  if (auto found = catalog_.find_volume(volume)) return found->generation();
  std::lock_guard lock(mutex_);
  return not_in_catalog_[volume];
}

void CatalogGenerationStore::persist(const std::string& volume, std::uint64_t generation, const std::string& writer) {
  if (catalog_.find_volume(volume)) {
    catalog_.record_generation(volume, generation, writer);  // throws: the grant fails
    return;
  }
  std::lock_guard lock(mutex_);
  not_in_catalog_[volume] = generation;
}

}  // namespace blockd::server
