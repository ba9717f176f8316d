#include "tools/copy_session.h"

#include <unistd.h>

#include <stdexcept>

#include "tools/nbd_target.h"
#include "tools/usage_error.h"

namespace blockd::tools {

std::string copy_holder() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string name = "blockctl.";
  for (const char* p = host; *p != '\0'; ++p) {
    const char ch = *p;
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                    ch == '.' || ch == '_';
    name += ok ? ch : '_';
  }
  return name + "." + std::to_string(::getpid());
}

CopySession::CopySession(const GlobalOptions& g, const CopyOptions& o, bool for_writing) {
  client::NbdAddress address = o.nbd ? nbd_target_from_uri(*o.nbd, o.name) : from_blockd(g, o, for_writing);
  client::NegotiateOptions options;
  options.structured_replies = true;
  options.base_allocation = true;
  nbd_.emplace(client::NbdClient::open(address, options));
  if (for_writing && nbd_->info().read_only())
    throw std::runtime_error("volume \"" + o.name + "\" is exported read-only at " + address.to_uri());
}

void CopySession::end() noexcept {
  try {
    if (nbd_) nbd_->disconnect();
    nbd_.reset();
    if (api_ && !holder_.empty()) api_->release_lease(volume_, holder_);
  } catch (...) {
  }
  api_.reset();
}

client::NbdAddress CopySession::from_blockd(const GlobalOptions& g, const CopyOptions& o, bool for_writing) {
  std::string error;
  auto server = client::ServerAddress::resolve(g.server, error);
  if (!server) throw UsageError(error);
  api_.emplace(*server);
  // "volume not found" from the API reads better than NBD's "unknown export".
  const v1::Volume volume = api_->get_volume(o.name);
  client::NbdAddress address = nbd_target_from_status(api_->status(), o.name);
  volume_ = o.name;
  holder_ = copy_holder();
  bool shared_read = false;
  for (int mode : volume.access_modes()) shared_read |= mode == v1::READ_ONLY_MANY;
  address.set_export_name(o.name + "?holder=" + holder_ + (!for_writing && shared_read ? "&mode=ro" : ""));
  return address;
}

}  // namespace blockd::tools
