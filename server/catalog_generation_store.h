// CatalogGenerationStore: where the lease manager keeps each volume's generation (its
// fencing token) and last writer: the catalog, saved atomically before the new
// generation takes effect (DESIGN.md §4). Volumes given with --volume are not in the
// catalog; theirs live in memory, so their generations start again at 0 after a restart
// (README: use catalog volumes for fencing that survives restarts).
//
// Thread affinity: any thread; called by the LeaseManager with its mutex held, so it
// must never call the manager (lock order: LeaseManager -> Catalog).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "server/catalog/catalog.h"
#include "server/lease/generation_store.h"

namespace blockd::server {

class CatalogGenerationStore final : public lease::GenerationStore {
 public:
  explicit CatalogGenerationStore(catalog::Catalog& catalog) : catalog_(catalog) {}

  std::uint64_t load(const std::string& volume) override;
  void persist(const std::string& volume, std::uint64_t generation, const std::string& writer) override;

 private:
  catalog::Catalog& catalog_;
  std::mutex mutex_;
  std::map<std::string, std::uint64_t> not_in_catalog_;
};

}  // namespace blockd::server
