#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

std::string_view describe(AllowedModes modes) {
  if (modes.read_write_once && modes.read_only_many) return "ReadWriteOnce, ReadOnlyMany";
  if (modes.read_write_once) return "ReadWriteOnce";
  if (modes.read_only_many) return "ReadOnlyMany";
  return "none";
}

}  // namespace blockd::server::lease
