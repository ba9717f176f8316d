// to_timestamp(): a wall-clock time as a google.protobuf.Timestamp (seconds since the
// epoch and the nanoseconds within that second), the one conversion for the catalog's
// times (created_at, an intent's started_at) and the control API's lease times. Header
// only: code that includes it links blockd_proto already.
//
// Thread affinity: a pure function, any thread.
#pragma once

#include <chrono>
#include <google/protobuf/timestamp.pb.h>

namespace blockd::common::proto {

inline google::protobuf::Timestamp to_timestamp(std::chrono::system_clock::time_point when) {
  const auto since_epoch = when.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  google::protobuf::Timestamp out;
  out.set_seconds(seconds.count());
  out.set_nanos(static_cast<int>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
  return out;
}

}  // namespace blockd::common::proto
