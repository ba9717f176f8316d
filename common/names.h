// Names that blockd accepts for volumes and storage classes: DNS labels (RFC 1123), the
// rule Kubernetes applies to most object names. It lives in common/ because the server
// (catalog, config file) and the tools (blockctl, to refuse a bad name before sending it)
// must agree on it.
#pragma once

#include <string_view>

namespace blockd::common {

// 1-63 characters of [a-z0-9-], starting and ending with a letter or a digit.
bool is_dns_label(std::string_view name);

}  // namespace blockd::common
