#include "tools/nbd_target.h"

#include <stdexcept>

#include "tools/usage_error.h"

namespace blockd::tools {

client::NbdAddress nbd_target_from_status(const v1::StatusResponse& status, const std::string& volume) {
  const std::string* chosen = nullptr;
  for (const std::string& listen : status.nbd_listen()) {
    if (listen.starts_with("unix:")) {
      chosen = &listen;
      break;
    }
    if (chosen == nullptr) chosen = &listen;
  }
  if (chosen == nullptr) {
    throw std::runtime_error("blockd reports no NBD listener; start it with --listen, or give --nbd URI");
  }
  std::string error;
  auto address = client::NbdAddress::from_listen(*chosen, error);
  if (!address) throw std::runtime_error("blockd reported a listener blockctl cannot use: " + error);
  address->set_export_name(volume);
  return *address;
}

client::NbdAddress nbd_target_from_uri(const std::string& uri, const std::string& volume) {
  std::string error;
  auto address = client::NbdAddress::parse_uri(uri, error);
  if (!address) throw UsageError("--nbd " + error);
  if (address->export_name().empty()) address->set_export_name(volume);
  return *address;
}

}  // namespace blockd::tools
