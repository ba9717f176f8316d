// How blockctl shows the API's answers to a person: tables and key/value listings.
// Pure functions of their input (and of `now`, passed in so tests are repeatable).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/proto/blockd.pb.h"

namespace blockd::tools {

// kubectl-style ages: "45s", "12m", "5h", "3d".
std::string format_age(std::int64_t seconds);
// "2026-12-01T07:46:24Z"; "-" for an unset timestamp.
std::string format_timestamp(const google::protobuf::Timestamp& t);
// "RWO,ROX" (Kubernetes' abbreviations).
std::string format_access_modes(const v1::Volume& volume);
// "app=pg,tier=db" in key order; "-" when there are none.
std::string format_labels(const google::protobuf::Map<std::string, std::string>& labels);

// The tables of `volume list`, `class list` and the details of `volume show`, `status`.
// `now_seconds` is the current Unix time, for ages.
std::string render_volume_table(const v1::ListVolumesResponse& list, std::int64_t now_seconds);
std::string render_volume_details(const v1::Volume& volume, std::int64_t now_seconds);
std::string render_class_table(const v1::ListStorageClassesResponse& list);
std::string render_status(const v1::StatusResponse& status, std::int64_t now_seconds);
// The key/value lines of `status` without the volume table, then `extra_rows` ("Key:", value).
std::string render_status_summary(const v1::StatusResponse& status, std::int64_t now_seconds,
                                  const std::vector<std::pair<std::string, std::string>>& extra_rows = {});

}  // namespace blockd::tools
