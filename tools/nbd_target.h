// Which NBD address blockctl uses for a volume's data: the listener blockd reports in
// GET /v1/status (a Unix socket if there is one: no TCP stack, and file permissions;
// else the first TCP listener), or the --nbd URI the user gave. Throws UsageError for a
// bad URI, std::runtime_error when blockd reports no listener.
#pragma once

#include <string>

#include "client/nbd_address.h"
#include "common/proto/blockd.pb.h"

namespace blockd::tools {

client::NbdAddress nbd_target_from_status(const v1::StatusResponse& status, const std::string& volume);
// The URI's export name wins when it has one; else the volume's name.
client::NbdAddress nbd_target_from_uri(const std::string& uri, const std::string& volume);

}  // namespace blockd::tools
