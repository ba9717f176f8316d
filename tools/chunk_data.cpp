#include "tools/chunk_data.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

namespace blockd::tools {

bool is_zero(std::span<const std::byte> data) {
  if (data.empty()) return true;
  // Comparing the buffer with itself shifted by one byte lets memcmp's vector code do
  // the scan: all bytes equal to the first, and the first is zero.
  return data[0] == std::byte{0} && std::memcmp(data.data(), data.data() + 1, data.size() - 1) == 0;
}

std::uint64_t fingerprint(std::span<const std::byte> data) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(data.data()), data.size())) ^
         (static_cast<std::uint64_t>(data.size()) * 0x9E3779B97F4A7C15ULL);
}

std::vector<Run> split_runs(std::span<const std::byte> data, std::size_t granule) {
  std::vector<Run> runs;
  for (std::size_t at = 0; at < data.size(); at += granule) {
    const std::size_t length = std::min(granule, data.size() - at);
    const bool zero = is_zero(data.subspan(at, length));
    if (!runs.empty() && runs.back().zero == zero) {
      runs.back().length += length;
    } else {
      runs.push_back(Run{at, length, zero});
    }
  }
  return runs;
}

std::size_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b) {
  const auto mismatch = std::mismatch(a.begin(), a.end(), b.begin());
  return static_cast<std::size_t>(mismatch.first - a.begin());
}

}  // namespace blockd::tools
