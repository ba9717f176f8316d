// Helpers over the bytes of one copy chunk: zero detection, a fingerprint for
// verification, and the split of a chunk into runs of data and zeroes.
// Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace blockd::tools {

// The unit of copying and verification, and the unit of zero detection inside it.
// 1 MiB requests keep a pipelined loopback copy near memory speed; 64 KiB is the
// granule below which punching a hole is not worth a separate request.
inline constexpr std::size_t kCopyChunk = 1 << 20;
inline constexpr std::size_t kZeroGranule = 64 << 10;
inline constexpr std::size_t kCopyWindow = 16;  // requests in flight

bool is_zero(std::span<const std::byte> data);

// A 64-bit fingerprint (not cryptographic: it guards against bugs and corruption on
// the way, not against an adversary).
std::uint64_t fingerprint(std::span<const std::byte> data);

struct Run {
  std::size_t offset = 0;  // within the chunk
  std::size_t length = 0;
  bool zero = false;
};

// Consecutive runs covering `data`, cut at multiples of `granule`, adjacent runs of
// the same kind merged.
std::vector<Run> split_runs(std::span<const std::byte> data, std::size_t granule);

// Offset of the first byte where `a` and `b` differ (they have the same size), or
// a.size() when equal.
std::size_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b);

}  // namespace blockd::tools
