// quote(): a name as blockd's messages show it, in single quotes ('db'), so that an empty
// or odd name still stands out. One spelling for the catalog's and the control API's
// messages.
//
// Thread affinity: a pure function, any thread.
#pragma once

#include <string>
#include <string_view>

namespace blockd::common {

inline std::string quote(std::string_view name) { return "'" + std::string(name) + "'"; }

}  // namespace blockd::common
