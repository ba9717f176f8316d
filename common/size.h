// Human sizes: "512", "64KiB", "1GiB", "1G", "1GB" (all binary: G == GB == GiB, as
// qemu-img and nbdkit read them) and printing in binary units.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace blockd::common {

// Returns nullopt for anything that is not a whole number with an optional unit,
// or that overflows 64 bits.
std::optional<std::uint64_t> parse_size(std::string_view text);

// "1 GiB", "512 B", "1.5 MiB".
std::string format_size(std::uint64_t bytes);

}  // namespace blockd::common
