// AdmissionPolicy: the hook at NBD_OPT_GO / NBD_OPT_EXPORT_NAME that decides whether
// a client may open a session on a volume. Today everyone is admitted; the lease
// manager (issue 4) plugs in here to enforce one writer per ReadWriteOnce volume.
//
// Thread affinity: called from any worker thread; implementations synchronise.
#pragma once

#include <optional>
#include <string>

#include "server/storage/volume.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

struct ClientInfo {
  std::string peer;         // "127.0.0.1:51234", "[::1]:4000" or "unix"
  std::string export_name;  // as the client sent it
};

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  // nullopt: admitted. Otherwise the reason, sent with NBD_REP_ERR_POLICY.
  virtual std::optional<std::string> admit(const storage::Volume& volume, const ClientInfo& client,
                                           bool writable) = 0;
};

class AdmitEveryone final : public AdmissionPolicy {
 public:
  std::optional<std::string> admit(const storage::Volume&, const ClientInfo&, bool) override {
    return std::nullopt;
  }
};

}  // namespace blockd::server::nbd
