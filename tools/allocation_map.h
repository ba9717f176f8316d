// AllocationMap: which ranges of an export are known to read as zeroes, from NBD
// base:allocation (nbd-proto.md "base:allocation metadata context": NBD_STATE_ZERO).
// Import uses it to skip writing zeroes over what is already zero; export to leave
// holes without reading them. Without base:allocation the map knows nothing (every
// range may hold data), which is always safe. A value type; not thread-safe.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "client/nbd_client.h"

namespace blockd::tools {

class AllocationMap {
 public:
  AllocationMap() = default;
  // Asks the server for the whole export (several BLOCK_STATUS requests; the server may
  // describe less than asked each time). Nothing in flight on `nbd` meanwhile.
  static AllocationMap query(client::NbdClient& nbd);
  // For tests: extents as a server would return them.
  static AllocationMap from_extents(const std::vector<client::Extent>& extents);

  // True when every byte of [offset, offset+length) is known to read as zero.
  bool all_zero(std::uint64_t offset, std::uint64_t length) const;
  // The parts of [offset, offset+length) NOT known to be zero, in order.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> maybe_data(std::uint64_t offset,
                                                                  std::uint64_t length) const;
  std::uint64_t zero_bytes() const;

 private:
  // Sorted, disjoint, merged [begin, end) ranges that read as zero.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> zero_;
};

}  // namespace blockd::tools
