#include "tools/allocation_map.h"

#include <algorithm>

namespace blockd::tools {

namespace {

// BLOCK_STATUS lengths are 32-bit; ask in 1 GiB steps (a multiple of any block size).
constexpr std::uint64_t kQueryStep = 1ULL << 30;

}  // namespace

AllocationMap AllocationMap::query(client::NbdClient& nbd) {
  const auto& info = nbd.info();
  if (!info.base_allocation_id) return {};
  std::vector<client::Extent> all;
  std::uint64_t offset = 0;
  while (offset < info.size) {
    const auto length = static_cast<std::uint32_t>(std::min(kQueryStep, info.size - offset));
    const auto extents = nbd.block_status(offset, length);
    std::uint64_t end = offset;
    for (const auto& e : extents) {
      // The last extent may run past what was asked ("NBD_REPLY_TYPE_BLOCK_STATUS");
      // keep it, clipped to the export.
      client::Extent clipped = e;
      clipped.length = std::min(e.length, info.size - e.offset);
      all.push_back(clipped);
      end = clipped.offset + clipped.length;
      if (end >= info.size) break;
    }
    offset = end;
  }
  return from_extents(all);
}

AllocationMap AllocationMap::from_extents(const std::vector<client::Extent>& extents) {
  AllocationMap map;
  for (const auto& e : extents) {
    if (!e.zero() || e.length == 0) continue;
    const std::uint64_t begin = e.offset;
    const std::uint64_t end = e.offset + e.length;
    if (!map.zero_.empty() && map.zero_.back().second >= begin) {
      map.zero_.back().second = std::max(map.zero_.back().second, end);
    } else {
      map.zero_.emplace_back(begin, end);
    }
  }
  return map;
}

bool AllocationMap::all_zero(std::uint64_t offset, std::uint64_t length) const {
  return maybe_data(offset, length).empty();
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> AllocationMap::maybe_data(std::uint64_t offset,
                                                                               std::uint64_t length) const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  const std::uint64_t end = offset + length;
  // First zero range that ends after `offset`.
  auto it = std::upper_bound(zero_.begin(), zero_.end(), offset,
                             [](std::uint64_t value, const auto& range) { return value < range.second; });
  std::uint64_t at = offset;
  for (; it != zero_.end() && it->first < end && at < end; ++it) {
    if (it->first > at) out.emplace_back(at, it->first - at);
    at = std::max(at, it->second);
  }
  if (at < end) out.emplace_back(at, end - at);
  return out;
}

std::uint64_t AllocationMap::zero_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [b, e] : zero_) total += e - b;
  return total;
}

}  // namespace blockd::tools
