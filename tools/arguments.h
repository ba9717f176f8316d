// Checks and conversions of blockctl's arguments, done before anything is sent so that
// a typo is a usage error (exit 2) with a hint rather than a round trip. Free
// functions; each throws UsageError.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/proto/blockd.pb.h"

namespace blockd::tools {

// A volume name: a DNS label (common/names.h), as the server requires.
void check_volume_name(const std::string& name);

// "10GiB", "10G", "512MiB", "1073741824": positive. Returns bytes, rounded up to a
// multiple of 512 as the server would (then `rounded_note`, if given, says so).
std::uint64_t parse_volume_size(const std::string& text, std::string* rounded_note = nullptr);

// "k=v" items; keys non-empty and unique. Kubernetes-style keys ("app.kubernetes.io/name")
// are passed through: the server owns the exact rule.
std::map<std::string, std::string> parse_labels(const std::vector<std::string>& items);

// "ReadWriteOnce,ReadOnlyMany" (also RWO/ROX, any case; repeated flags add up).
std::vector<v1::AccessMode> parse_access_modes(const std::vector<std::string>& items);

// A lease's --ttl: "30s", "5m", "1h", "2d", compounds such as "1h30m", or plain seconds
// ("90"). Positive and at most 2^32-1 seconds (the API's uint32 ttlSeconds).
std::uint32_t parse_duration_seconds(const std::string& text);

// A lease holder: 1-253 characters of A-Z a-z 0-9 . _ : - (the server's rule,
// server/lease/export_request.h), checked here so a typo is a usage error.
void check_holder(const std::string& holder);

// The default --holder of lease acquire/renew/release: this host's name.
std::string host_name();

}  // namespace blockd::tools
