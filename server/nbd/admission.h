// AdmissionPolicy: the hook at NBD_OPT_GO / NBD_OPT_EXPORT_NAME (and, answering the
// same, NBD_OPT_INFO) that decides whether a client may open a session on a volume, and
// in which mode. blockd's policy is the lease manager (server/lease_admission.h): one
// writer per ReadWriteOnce volume, shared readers for ReadOnlyMany (DESIGN.md §4).
//
// Thread affinity: called from any worker thread; implementations synchronise.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "server/lease/export_request.h"
#include "server/lease/session_ticket.h"
#include "server/storage/volume.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

struct ClientInfo {
  std::string peer;         // "127.0.0.1:51234", "[::1]:4000" or "unix"
  std::string export_name;  // as the client sent it
};

struct Admission {
  // Why not, sent with NBD_REP_ERR_POLICY; nullopt when admitted.
  std::optional<std::string> refusal;
  // The session's lease (null for a policy without leases). Owned by the session: its
  // destruction tells the lease manager the session has closed.
  std::unique_ptr<lease::SessionTicket> ticket;
  // The session may not write (a read lease, or a read-only volume).
  bool read_only = false;
};

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  // GO / EXPORT_NAME: admits (and takes or joins a lease) or refuses.
  virtual Admission admit(const storage::Volume& volume, const lease::ExportRequest& request,
                          const ClientInfo& client) = 0;
  // INFO: the answer GO would give now, without taking anything. `read_only` is set to
  // the mode GO would give.
  virtual std::optional<std::string> probe(const storage::Volume& volume, const lease::ExportRequest& request,
                                           const ClientInfo& client, bool& read_only) = 0;
};

// Everyone is admitted, in the mode asked for (tests of the data path that need no
// leases).
class AdmitEveryone final : public AdmissionPolicy {
 public:
  Admission admit(const storage::Volume& volume, const lease::ExportRequest& request, const ClientInfo&) override {
    Admission admission;
    admission.read_only = volume.read_only() || request.mode_for(volume.allowed_modes()) == lease::LeaseMode::kReadOnly;
    return admission;
  }
  std::optional<std::string> probe(const storage::Volume& volume, const lease::ExportRequest& request,
                                   const ClientInfo&, bool& read_only) override {
    read_only = volume.read_only() || request.mode_for(volume.allowed_modes()) == lease::LeaseMode::kReadOnly;
    return std::nullopt;
  }
};

}  // namespace blockd::server::nbd
