// CopySession: the NBD session of one `volume import` or `volume export`, and the lease
// it takes. With an address from blockd (GET /v1/status) blockctl names its own lease
// holder in the export name ("db?holder=blockctl.node-a.4242", server/lease/export_request.h)
// so that a copy neither borrows the lease of another client on this node (they would
// share "unix" or the node's address) nor leaves one behind for the grace period: end()
// disconnects softly and releases it. An export of a volume that allows ReadOnlyMany asks
// for a shared read session (mode=ro). With --nbd (any NBD server) the export name is
// used as given and no lease is touched.
// Thread affinity: the calling thread; owns its NbdClient and ControlClient.
#pragma once

#include <optional>
#include <string>

#include "client/control_client.h"
#include "client/nbd_client.h"
#include "tools/commands.h"

namespace blockd::tools {

class CopySession {
 public:
  // Connects and negotiates; throws ControlError, NbdError, UsageError (bad --nbd) or
  // std::runtime_error (a read-only export for an import).
  CopySession(const GlobalOptions& g, const CopyOptions& o, bool for_writing);
  CopySession(const CopySession&) = delete;
  CopySession& operator=(const CopySession&) = delete;
  ~CopySession() { end(); }

  client::NbdClient& nbd() { return *nbd_; }
  // Soft disconnect, then give the lease back (best effort: it expires anyway).
  void end() noexcept;

 private:
  client::NbdAddress from_blockd(const GlobalOptions& g, const CopyOptions& o, bool for_writing);

  std::optional<client::ControlClient> api_;
  std::optional<client::NbdClient> nbd_;
  std::string volume_;
  std::string holder_;
};

// "blockctl.<host>.<pid>", in the holder alphabet [A-Za-z0-9._:-].
std::string copy_holder();

}  // namespace blockd::tools
