// The rules a volume's attributes follow, checked before anything touches the disk.
// Each check throws CatalogError(kInvalidArgument) with a message that says what to write
// instead.
//
// Sizes: a positive number of bytes, written "10GiB", "10G", "10GB" (all binary, as
// common::parse_size reads them) or as bytes; ROUNDED UP to a multiple of 512 (the NBD
// minimum block size, DESIGN.md §2), as a CSI provisioner rounds a requested capacity up
// to its allocation unit: the volume is at least as big as asked. At most 64 TiB.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/proto/blockd.pb.h"

namespace blockd::server::catalog {

inline constexpr std::uint64_t kVolumeSizeAlignment = 512;
inline constexpr std::uint64_t kMaxVolumeSize = 64ULL << 40;  // 64 TiB
inline constexpr std::size_t kMaxDescriptionBytes = 1024;
inline constexpr std::size_t kMaxLabels = 64;

// "10GiB" -> 10737418240; "1000" -> 1024 (rounded up).
std::uint64_t parse_volume_size(std::string_view text);
// Rounds a byte count up to a multiple of 512; refuses 0 and more than kMaxVolumeSize.
std::uint64_t round_volume_size(std::uint64_t bytes);

void validate_volume_name(std::string_view name);
// UTF-8 (protobuf refuses to parse anything else, so an invalid description would make
// the catalog unreadable), no control characters, at most kMaxDescriptionBytes.
void validate_description(std::string_view description);
// Kubernetes label syntax: key [prefix/]name, name 1-63 of [A-Za-z0-9._-] starting and
// ending alphanumeric, prefix a DNS subdomain; value empty or like a name.
void validate_labels(const google::protobuf::Map<std::string, std::string>& labels);
// Empty means READ_WRITE_ONCE. Duplicates are dropped; UNSPECIFIED and unknown values
// are refused. The result is sorted.
std::vector<v1::AccessMode> normalize_access_modes(const google::protobuf::RepeatedField<int>& modes);

}  // namespace blockd::server::catalog
