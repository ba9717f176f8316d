// Volume UUIDs: RFC 4122 version 4 (random), printed lowercase 8-4-4-4-12.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace blockd::server::catalog {

// 16 bytes from getrandom(2), with the version and variant bits set. Throws
// std::system_error if the kernel cannot supply randomness.
std::string generate_uuid_v4();

// The formatting half, for tests: sets the version (4) and variant (10xx) bits of
// `bytes` and prints them.
std::string format_uuid_v4(std::array<std::uint8_t, 16> bytes);

}  // namespace blockd::server::catalog
