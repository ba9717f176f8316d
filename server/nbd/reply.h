// Reply: one reply to one request, ready to be gathered into a socket write: a header
// (simple reply, or structured chunk header plus its fixed fields), an optional data
// buffer (READ), and an optional tail (block status descriptors, error messages).
// Builders follow nbd-proto.md "Simple reply message" and "Structured reply chunk message".
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/nbd_protocol.h"
#include "server/io/buffer_pool.h"
#include "server/storage/backend.h"

namespace blockd::server::nbd {

struct Reply {
  std::array<std::byte, 32> head{};
  std::size_t head_size = 0;
  io::Buffer data;
  std::vector<std::byte> tail;

  std::size_t wire_size() const { return head_size + data.size() + tail.size(); }

  // Simple reply; `data` is sent after the header (a successful READ) or empty.
  static Reply simple(std::uint64_t cookie, common::nbd::Error error, io::Buffer data = {});
  // NBD_REPLY_TYPE_OFFSET_DATA with DONE: one chunk with the whole read.
  static Reply read_chunk(std::uint64_t cookie, std::uint64_t offset, io::Buffer data);
  // NBD_REPLY_TYPE_NONE with DONE: a successful reply without data.
  static Reply none(std::uint64_t cookie);
  // NBD_REPLY_TYPE_ERROR with DONE and a message for a person.
  static Reply error_chunk(std::uint64_t cookie, common::nbd::Error error, std::string_view message);
  // NBD_REPLY_TYPE_BLOCK_STATUS with DONE.
  static Reply block_status(std::uint64_t cookie, std::uint32_t context_id,
                            const std::vector<storage::Extent>& extents);
};

}  // namespace blockd::server::nbd
