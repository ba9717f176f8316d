// The lease manager's snapshots as the control API's messages (common/proto Lease).
// LeaseInfo times are steady-clock; the API shows wall-clock times, computed from how
// long ago a lease was taken and how long it still has.
#pragma once

#include "common/proto/blockd.pb.h"
#include "server/lease/lease_info.h"

namespace blockd::server {

v1::Lease to_proto(const lease::LeaseInfo& info);

}  // namespace blockd::server
