// The one errno -> NBD error map (DESIGN.md §7). Callers log the real errno first.
#pragma once

#include "common/nbd_protocol.h"

namespace blockd::common::nbd {

// Maps a positive errno from the host to the restricted set the spec allows
// (nbd-proto.md "Error values"); anything unknown becomes EIO.
Error error_from_errno(int err);

}  // namespace blockd::common::nbd
