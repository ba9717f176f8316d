// GenerationStore: where a volume's generation (its fencing token, DESIGN.md §4) is kept
// durably — in blockd, the catalog. The lease manager calls persist() BEFORE a new
// generation takes effect, so a generation that any session was admitted under is always
// on disk, and generations never go backwards across a restart.
//
// Thread affinity: called by LeaseManager with ITS MUTEX HELD, from whichever thread
// called the manager (a worker at NBD GO, or the control thread). Lock order is therefore
// LeaseManager -> store: an implementation must not call back into the LeaseManager, and
// nobody may call the LeaseManager while holding a lock the store takes (for the catalog:
// never from inside Catalog::delete_volume's check callback).
#pragma once

#include <cstdint>
#include <string>

namespace blockd::server::lease {

class GenerationStore {
 public:
  virtual ~GenerationStore() = default;

  // The volume's last persisted generation; 0 for a volume never leased (or unknown).
  // Called once per volume, the first time the manager sees it. May throw: the operation
  // that needed it fails and nothing changes.
  virtual std::uint64_t load(const std::string& volume) = 0;

  // Records, durably, that `generation` is now the volume's generation and `writer` the
  // holder it is granted to ("" when the change leaves no writer: a break of readers, or
  // a break without --to). The writer is what restart grace needs: after a crash, the
  // catalog's last writer is handed to LeaseManager as the previous holder. Throws on
  // failure: the grant or break that asked for it fails and nothing changes.
  virtual void persist(const std::string& volume, std::uint64_t generation, const std::string& writer) = 0;
};

}  // namespace blockd::server::lease
