// `blockctl status`: GET /v1/status and GET /metrics, and rates since the previous call,
// whose sample is kept per server address in a small state file:
// $BLOCKCTL_STATE_DIR, else $XDG_RUNTIME_DIR, else /tmp, /blockctl-status-<uid>.json.
// The state file is best effort: unreadable or unwritable, it is ignored.
#pragma once

#include <cstdint>
#include <string>

#include "common/proto/blockd.pb.h"
#include "tools/commands.h"
#include "tools/status_rates.h"

namespace blockd::tools {

// What `rates` are, for the table and the JSON.
struct StatusRates {
  RateResult result;
  double seconds = 0;  // since the previous sample, when result.valid
  std::string why_none;  // when !result.valid: "first call", "blockd restarted", ...
};

// The table: summary, then NAME SIZE HOLDER CONNECTIONS READ/s WRITE/s READ MB/s WRITE MB/s ERRORS.
std::string render_status_with_rates(const v1::StatusResponse& status, const StatusRates& rates,
                                     std::int64_t now_seconds);
// The API's status JSON with a "rates" object (or null) in every volume.
std::string status_json_with_rates(const v1::StatusResponse& status, const StatusRates& rates);

// The state file's path (see above).
std::string status_state_path();

// show_status (commands.h) is defined in status_command.cpp.

}  // namespace blockd::tools
