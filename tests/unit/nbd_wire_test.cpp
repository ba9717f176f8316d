#include "common/nbd_wire.h"

#include <gtest/gtest.h>

namespace wire = blockd::common::nbd;

TEST(NbdWire, RequestRoundTripsBigEndian) {
  wire::RequestHeader in{wire::kCmdFlagFua, 1, 0x0102030405060708ULL, 0x1122334455667788ULL, 4096};
  std::array<std::byte, wire::kRequestHeaderSize> bytes;
  wire::encode_request(in, bytes);
  EXPECT_EQ(bytes[0], std::byte{0x25});
  EXPECT_EQ(bytes[3], std::byte{0x13});
  EXPECT_EQ(bytes[8], std::byte{0x01});  // cookie is copied byte for byte
  auto out = wire::decode_request(bytes);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->flags, in.flags);
  EXPECT_EQ(out->type, in.type);
  EXPECT_EQ(out->cookie, in.cookie);
  EXPECT_EQ(out->offset, in.offset);
  EXPECT_EQ(out->length, in.length);
}

TEST(NbdWire, BadRequestMagicIsRejected) {
  std::array<std::byte, wire::kRequestHeaderSize> bytes{};
  EXPECT_FALSE(wire::decode_request(bytes));
}

TEST(NbdWire, SimpleReplyLayout) {
  std::array<std::byte, wire::kSimpleReplyHeaderSize> bytes;
  wire::encode_simple_reply(bytes, wire::Error::kNoSpc, 0xAABBCCDDEEFF0011ULL);
  EXPECT_EQ(wire::load_u32(bytes.data()), wire::kSimpleReplyMagic);
  EXPECT_EQ(wire::load_u32(bytes.data() + 4), 28U);
  EXPECT_EQ(wire::load_u64(bytes.data() + 8), 0xAABBCCDDEEFF0011ULL);
}

TEST(NbdWire, StructuredReplyLayout) {
  std::array<std::byte, wire::kStructuredReplyHeaderSize> bytes;
  wire::encode_structured_reply(bytes, wire::kReplyFlagDone, wire::kReplyTypeOffsetData, 7, 4104);
  EXPECT_EQ(wire::load_u32(bytes.data()), wire::kStructuredReplyMagic);
  EXPECT_EQ(wire::load_u16(bytes.data() + 4), 1);
  EXPECT_EQ(wire::load_u16(bytes.data() + 6), 1);
  EXPECT_EQ(wire::load_u64(bytes.data() + 8), 7U);
  EXPECT_EQ(wire::load_u32(bytes.data() + 16), 4104U);
}

TEST(NbdWire, OptionHeaderNeedsMagic) {
  std::array<std::byte, wire::kOptionHeaderSize> bytes{};
  EXPECT_FALSE(wire::decode_option(bytes));
  wire::store_u64(bytes.data(), wire::kOptionMagic);
  wire::store_u32(bytes.data() + 8, 7);
  wire::store_u32(bytes.data() + 12, 12);
  auto header = wire::decode_option(bytes);
  ASSERT_TRUE(header);
  EXPECT_EQ(header->option, 7U);
  EXPECT_EQ(header->length, 12U);
}

TEST(NbdWire, ByteReaderNeverReadsPastTheEnd) {
  std::vector<std::byte> data(6);
  wire::ByteReader in(data);
  EXPECT_TRUE(in.u32());
  EXPECT_FALSE(in.u32());  // only 2 bytes left
  EXPECT_TRUE(in.u16());
  EXPECT_FALSE(in.string(1));
  EXPECT_EQ(in.remaining(), 0U);
}
