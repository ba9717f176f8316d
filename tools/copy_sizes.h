// The copy unit for an export: kCopyChunk, but never more than the server's maximum
// payload ("Size constraints") and always a multiple of its minimum block.
#pragma once

#include <algorithm>
#include <cstddef>

#include "client/nbd_handshake.h"
#include "tools/chunk_data.h"

namespace blockd::tools {

inline std::size_t copy_chunk_for(const client::ExportInfo& info) {
  std::size_t chunk = std::min<std::size_t>(kCopyChunk, info.max_payload);
  const std::size_t min_block = std::max<std::size_t>(info.min_block, 512);
  chunk -= chunk % min_block;
  return std::max(chunk, min_block);
}

}  // namespace blockd::tools
