// Names that blockd accepts: DNS labels (RFC 1123) for volumes and storage classes, the
// rule Kubernetes applies to most object names; and lease holder names. They live in
// common/ because the server (catalog, config file, lease manager, export names) and the
// tools (blockctl, to refuse a bad name before sending it) must agree on them.
#pragma once

#include <cstddef>
#include <string_view>

namespace blockd::common {

// 1-63 characters of [a-z0-9-], starting and ending with a letter or a digit.
bool is_dns_label(std::string_view name);

inline constexpr std::size_t kMaxHolderLength = 253;

// A lease holder: 1-253 characters of [A-Za-z0-9._:-] (node names, pod UIDs, IPv4 and
// IPv6 addresses; no "%", so export names never need percent-decoding).
bool is_valid_holder(std::string_view holder);

}  // namespace blockd::common
