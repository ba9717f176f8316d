#include "server/nbd/reply.h"

#include "common/nbd_wire.h"

namespace blockd::server::nbd {

namespace wire = common::nbd;

namespace {

Reply structured(std::uint64_t cookie, std::uint16_t type, std::uint32_t length) {
  Reply r;
  wire::encode_structured_reply(std::span<std::byte, wire::kStructuredReplyHeaderSize>(r.head.data(), wire::kStructuredReplyHeaderSize),
                                wire::kReplyFlagDone, type, cookie, length);
  r.head_size = wire::kStructuredReplyHeaderSize;
  return r;
}

}  // namespace

Reply Reply::simple(std::uint64_t cookie, wire::Error error, io::Buffer data) {
  Reply r;
  wire::encode_simple_reply(std::span<std::byte, wire::kSimpleReplyHeaderSize>(r.head.data(), wire::kSimpleReplyHeaderSize),
                            error, cookie);
  r.head_size = wire::kSimpleReplyHeaderSize;
  r.data = std::move(data);
  return r;
}

Reply Reply::read_chunk(std::uint64_t cookie, std::uint64_t offset, io::Buffer data) {
  Reply r = structured(cookie, wire::kReplyTypeOffsetData, static_cast<std::uint32_t>(8 + data.size()));
  wire::store_u64(r.head.data() + r.head_size, offset);
  r.head_size += 8;
  r.data = std::move(data);
  return r;
}

Reply Reply::none(std::uint64_t cookie) { return structured(cookie, wire::kReplyTypeNone, 0); }

Reply Reply::error_chunk(std::uint64_t cookie, wire::Error error, std::string_view message) {
  // error (32 bits), message length (16 bits), message.
  const std::size_t length = std::min<std::size_t>(message.size(), 4096);
  Reply r = structured(cookie, wire::kReplyTypeError, static_cast<std::uint32_t>(6 + length));
  wire::store_u32(r.head.data() + r.head_size, static_cast<std::uint32_t>(error));
  wire::store_u16(r.head.data() + r.head_size + 4, static_cast<std::uint16_t>(length));
  r.head_size += 6;
  const auto* p = reinterpret_cast<const std::byte*>(message.data());
  r.tail.assign(p, p + length);
  return r;
}

Reply Reply::block_status(std::uint64_t cookie, std::uint32_t context_id,
                          const std::vector<storage::Extent>& extents) {
  // context id (32 bits), then per extent: length (32 bits), flags (32 bits).
  Reply r = structured(cookie, wire::kReplyTypeBlockStatus,
                       static_cast<std::uint32_t>(4 + 8 * extents.size()));
  wire::store_u32(r.head.data() + r.head_size, context_id);
  r.head_size += 4;
  r.tail.resize(8 * extents.size());
  std::byte* p = r.tail.data();
  for (const auto& extent : extents) {
    wire::store_u32(p, static_cast<std::uint32_t>(extent.length));
    wire::store_u32(p + 4, extent.flags);
    p += 8;
  }
  return r;
}

}  // namespace blockd::server::nbd
