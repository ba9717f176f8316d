// SessionTerms: what the handshake settled for one transmission phase.
#pragma once

#include <cstdint>

namespace blockd::server::nbd {

inline constexpr std::uint32_t kBaseAllocationContextId = 1;

struct SessionTerms {
  std::uint64_t size = 0;
  std::uint16_t transmission_flags = 0;
  bool read_only = false;
  bool structured_replies = false;
  // base:allocation was selected with SET_META_CONTEXT for this export.
  bool base_allocation = false;
  // The client asked for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO and so MUST honour the
  // advertised minimum block size (nbd-proto.md "Size constraints").
  bool block_size_negotiated = false;
};

// The transmission flags blockd advertises for a volume ("Transmission flags").
std::uint16_t transmission_flags(bool read_only, bool structured_replies);

}  // namespace blockd::server::nbd
