// Request validation: the checks every request passes before it touches storage.
// One pure function, so each rule lives in one place and is unit-tested.
#pragma once

#include "common/nbd_protocol.h"
#include "common/nbd_wire.h"
#include "server/nbd/session_terms.h"

namespace blockd::server::nbd {

// kOk when the request may run; otherwise the error to reply with
// (nbd-proto.md "Error values", "Request types", "Command flags").
common::nbd::Error validate_request(const common::nbd::RequestHeader& request,
                                    const SessionTerms& terms);

// True for the commands that can change data.
bool is_write_command(std::uint16_t type);

}  // namespace blockd::server::nbd
