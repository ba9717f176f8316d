// Reply builders (server/nbd/reply.h): every byte against nbd-proto.md "Simple reply
// message" and "Structured reply chunk message" / "Structured reply types".
#include "server/nbd/reply.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/nbd_protocol.h"
#include "common/nbd_wire.h"
#include "server/io/buffer_pool.h"

namespace {

namespace wire = blockd::common::nbd;
using blockd::server::io::BufferPool;
using blockd::server::nbd::Reply;
using blockd::server::storage::Extent;

std::vector<std::uint8_t> head_bytes(const Reply& r) {
  std::vector<std::uint8_t> out(r.head_size);
  std::memcpy(out.data(), r.head.data(), r.head_size);
  return out;
}

std::vector<std::uint8_t> tail_bytes(const Reply& r) {
  std::vector<std::uint8_t> out(r.tail.size());
  if (!r.tail.empty()) std::memcpy(out.data(), r.tail.data(), r.tail.size());
  return out;
}

constexpr std::uint64_t kCookie = 0x0102030405060708ULL;

TEST(Reply, SimpleSuccessWithoutData) {
  Reply r = Reply::simple(kCookie, wire::Error::kOk);
  // magic 0x67446698, error (32), cookie (64).
  const std::vector<std::uint8_t> expected = {0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0,
                                              0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  EXPECT_EQ(head_bytes(r), expected);
  EXPECT_EQ(r.head_size, 16U);
  EXPECT_EQ(r.data.size(), 0U);
  EXPECT_TRUE(r.tail.empty());
  EXPECT_EQ(r.wire_size(), 16U);
}

TEST(Reply, SimpleErrorCarriesTheNbdValue) {
  Reply r = Reply::simple(0xFFFFFFFFFFFFFFFEULL, wire::Error::kNoSpc);
  const std::vector<std::uint8_t> expected = {0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28,
                                              0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE};
  EXPECT_EQ(head_bytes(r), expected);
  EXPECT_EQ(Reply::simple(1, wire::Error::kShutdown).head[7], std::byte{108});
  EXPECT_EQ(Reply::simple(1, wire::Error::kPerm).head[7], std::byte{1});
}

TEST(Reply, SimpleReadCarriesTheData) {
  BufferPool pool;
  auto data = pool.acquire(4096);
  std::memset(data.data(), 0x5A, data.size());
  std::byte* p = data.data();
  Reply r = Reply::simple(kCookie, wire::Error::kOk, std::move(data));
  EXPECT_EQ(r.head_size, 16U);
  EXPECT_EQ(r.data.data(), p);  // moved, not copied
  EXPECT_EQ(r.data.size(), 4096U);
  EXPECT_EQ(r.wire_size(), 16U + 4096U);
}

TEST(Reply, CookieIsEchoedByteForByte) {
  // "the server MUST use the same value for cookie as was sent by the client ...
  // treating the cookie as an opaque field."
  std::array<std::byte, wire::kRequestHeaderSize> request{};
  wire::store_u32(request.data(), wire::kRequestMagic);
  const std::uint8_t cookie_bytes[8] = {0xDE, 0xAD, 0x00, 0xBE, 0xEF, 0x80, 0x7F, 0x01};
  std::memcpy(request.data() + 8, cookie_bytes, 8);
  auto decoded = wire::decode_request(request);
  ASSERT_TRUE(decoded);

  BufferPool pool;
  const Reply replies[] = {Reply::simple(decoded->cookie, wire::Error::kOk), Reply::none(decoded->cookie),
                           Reply::read_chunk(decoded->cookie, 0, pool.acquire(512)),
                           Reply::error_chunk(decoded->cookie, wire::Error::kIo, "x"),
                           Reply::block_status(decoded->cookie, 1, {{512, 0}})};
  for (const Reply& r : replies) {
    EXPECT_EQ(std::memcmp(r.head.data() + 8, cookie_bytes, 8), 0);
  }
}

TEST(Reply, NoneChunk) {
  Reply r = Reply::none(kCookie);
  // magic 0x668e33ef, flags DONE, type NONE (0), cookie, length 0.
  const std::vector<std::uint8_t> expected = {0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x00, 0x01, 0x02,
                                              0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0, 0, 0, 0};
  EXPECT_EQ(head_bytes(r), expected);
  EXPECT_EQ(r.wire_size(), 20U);
}

TEST(Reply, ReadChunkIsOffsetData) {
  BufferPool pool;
  auto data = pool.acquire(4096);
  std::byte* p = data.data();
  Reply r = Reply::read_chunk(kCookie, 0x0000001122334400ULL, std::move(data));
  // header (type OFFSET_DATA = 1, length = 8 + 4096 = 0x1008), then the 64-bit offset.
  const std::vector<std::uint8_t> expected = {0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x01, 0x01, 0x02,
                                              0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x10, 0x08,
                                              0x00, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x00};
  EXPECT_EQ(head_bytes(r), expected);
  EXPECT_EQ(r.data.data(), p);
  EXPECT_EQ(r.data.size(), 4096U);
  EXPECT_TRUE(r.tail.empty());
  EXPECT_EQ(r.wire_size(), 20U + 8U + 4096U);
  // The chunk's length field covers exactly what follows the 20-byte header.
  EXPECT_EQ(wire::load_u32(r.head.data() + 16), r.wire_size() - 20);
}

TEST(Reply, ReadChunkOf32MiB) {
  BufferPool pool;
  Reply r = Reply::read_chunk(7, 0, pool.acquire(32U << 20));
  EXPECT_EQ(wire::load_u32(r.head.data() + 16), (32U << 20) + 8U);
  EXPECT_EQ(r.wire_size(), 20U + 8U + (32U << 20));
}

TEST(Reply, ErrorChunk) {
  Reply r = Reply::error_chunk(kCookie, wire::Error::kInval, "bad");
  // type NBD_REPLY_TYPE_ERROR = 2^15 + 1, length 4 + 2 + 3, error, message length, message.
  const std::vector<std::uint8_t> expected = {0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01, 0x01,
                                              0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00,
                                              0x00, 0x09, 0x00, 0x00, 0x00, 22,   0x00, 0x03};
  EXPECT_EQ(head_bytes(r), expected);
  EXPECT_EQ(tail_bytes(r), (std::vector<std::uint8_t>{'b', 'a', 'd'}));
  EXPECT_EQ(r.data.size(), 0U);
  EXPECT_EQ(r.wire_size(), 20U + 6U + 3U);
}

TEST(Reply, ErrorChunkWithEmptyMessage) {
  Reply r = Reply::error_chunk(1, wire::Error::kIo, "");
  EXPECT_EQ(r.head_size, 26U);
  EXPECT_EQ(wire::load_u32(r.head.data() + 16), 6U);
  EXPECT_EQ(wire::load_u32(r.head.data() + 20), 5U);
  EXPECT_EQ(wire::load_u16(r.head.data() + 24), 0U);
  EXPECT_TRUE(r.tail.empty());
}

TEST(Reply, ErrorChunkMessageIsCappedAt4096Bytes) {
  // "Strings": no string exceeds 4096 bytes.
  const std::string message(5000, 'm');
  Reply r = Reply::error_chunk(1, wire::Error::kIo, message);
  EXPECT_EQ(wire::load_u16(r.head.data() + 24), 4096U);
  EXPECT_EQ(r.tail.size(), 4096U);
  EXPECT_EQ(wire::load_u32(r.head.data() + 16), 6U + 4096U);
  EXPECT_EQ(r.wire_size(), 20U + 6U + 4096U);
}

TEST(Reply, BlockStatus) {
  const std::vector<Extent> extents = {{0x10000, wire::kStateHole | wire::kStateZero}, {0x200, 0},
                                       {0xFFFFFE00, wire::kStateZero}};
  Reply r = Reply::block_status(kCookie, 1, extents);
  // type BLOCK_STATUS = 5, length 4 + 3 * 8 = 28, then the context id.
  const std::vector<std::uint8_t> expected_head = {0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x05,
                                                   0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                                   0x00, 0x00, 0x00, 28,   0x00, 0x00, 0x00, 0x01};
  EXPECT_EQ(head_bytes(r), expected_head);
  // Descriptors: length (32), status flags (32).
  const std::vector<std::uint8_t> expected_tail = {0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
                                                   0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                   0xFF, 0xFF, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x02};
  EXPECT_EQ(tail_bytes(r), expected_tail);
  EXPECT_EQ(r.data.size(), 0U);
  EXPECT_EQ(r.wire_size(), 20U + 4U + 24U);
}

TEST(Reply, BlockStatusCarriesTheContextId) {
  Reply r = Reply::block_status(9, 0xA1B2C3D4, {{4096, 0}});
  EXPECT_EQ(wire::load_u32(r.head.data() + 20), 0xA1B2C3D4U);
  EXPECT_EQ(wire::load_u32(r.head.data() + 16), 12U);
  EXPECT_EQ(r.tail.size(), 8U);
}

TEST(Reply, EveryStructuredChunkIsFinal) {
  // Each builder produces the only chunk of its reply, so NBD_REPLY_FLAG_DONE is set.
  BufferPool pool;
  const Reply replies[] = {Reply::none(1), Reply::read_chunk(1, 0, pool.acquire(1)),
                           Reply::error_chunk(1, wire::Error::kIo, "e"), Reply::block_status(1, 1, {{1, 0}})};
  for (const Reply& r : replies) {
    EXPECT_EQ(wire::load_u32(r.head.data()), wire::kStructuredReplyMagic);
    EXPECT_EQ(wire::load_u16(r.head.data() + 4), wire::kReplyFlagDone);
  }
}

}  // namespace
