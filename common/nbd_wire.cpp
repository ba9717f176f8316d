#include "common/nbd_wire.h"

#include <boost/endian/conversion.hpp>
#include <cstring>

namespace blockd::common::nbd {

namespace endian = boost::endian;

std::uint16_t load_u16(const std::byte* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return endian::big_to_native(v);
}
std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return endian::big_to_native(v);
}
std::uint64_t load_u64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return endian::big_to_native(v);
}
void store_u16(std::byte* p, std::uint16_t v) {
  v = endian::native_to_big(v);
  std::memcpy(p, &v, sizeof v);
}
void store_u32(std::byte* p, std::uint32_t v) {
  v = endian::native_to_big(v);
  std::memcpy(p, &v, sizeof v);
}
void store_u64(std::byte* p, std::uint64_t v) {
  v = endian::native_to_big(v);
  std::memcpy(p, &v, sizeof v);
}

void ByteWriter::u16(std::uint16_t v) {
  buf_.resize(buf_.size() + 2);
  store_u16(buf_.data() + buf_.size() - 2, v);
}
void ByteWriter::u32(std::uint32_t v) {
  buf_.resize(buf_.size() + 4);
  store_u32(buf_.data() + buf_.size() - 4, v);
}
void ByteWriter::u64(std::uint64_t v) {
  buf_.resize(buf_.size() + 8);
  store_u64(buf_.data() + buf_.size() - 8, v);
}
void ByteWriter::bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  buf_.insert(buf_.end(), p, p + s.size());
}

std::optional<std::uint16_t> ByteReader::u16() {
  if (remaining() < 2) return std::nullopt;
  pos_ += 2;
  return load_u16(data_.data() + pos_ - 2);
}
std::optional<std::uint32_t> ByteReader::u32() {
  if (remaining() < 4) return std::nullopt;
  pos_ += 4;
  return load_u32(data_.data() + pos_ - 4);
}
std::optional<std::uint64_t> ByteReader::u64() {
  if (remaining() < 8) return std::nullopt;
  pos_ += 8;
  return load_u64(data_.data() + pos_ - 8);
}
std::optional<std::string> ByteReader::string(std::size_t length) {
  if (remaining() < length) return std::nullopt;
  std::string s(reinterpret_cast<const char*>(data_.data() + pos_), length);
  pos_ += length;
  return s;
}

std::optional<RequestHeader> decode_request(std::span<const std::byte, kRequestHeaderSize> in) {
  if (load_u32(in.data()) != kRequestMagic) return std::nullopt;
  RequestHeader h;
  h.flags = load_u16(in.data() + 4);
  h.type = load_u16(in.data() + 6);
  h.cookie = load_u64(in.data() + 8);
  h.offset = load_u64(in.data() + 16);
  h.length = load_u32(in.data() + 24);
  return h;
}

void encode_request(const RequestHeader& h, std::span<std::byte, kRequestHeaderSize> out) {
  store_u32(out.data(), kRequestMagic);
  store_u16(out.data() + 4, h.flags);
  store_u16(out.data() + 6, h.type);
  store_u64(out.data() + 8, h.cookie);
  store_u64(out.data() + 16, h.offset);
  store_u32(out.data() + 24, h.length);
}

void encode_simple_reply(std::span<std::byte, kSimpleReplyHeaderSize> out, Error error,
                         std::uint64_t cookie) {
  store_u32(out.data(), kSimpleReplyMagic);
  store_u32(out.data() + 4, static_cast<std::uint32_t>(error));
  store_u64(out.data() + 8, cookie);
}

void encode_structured_reply(std::span<std::byte, kStructuredReplyHeaderSize> out,
                             std::uint16_t flags, std::uint16_t type, std::uint64_t cookie,
                             std::uint32_t length) {
  store_u32(out.data(), kStructuredReplyMagic);
  store_u16(out.data() + 4, flags);
  store_u16(out.data() + 6, type);
  store_u64(out.data() + 8, cookie);
  store_u32(out.data() + 16, length);
}

std::optional<OptionHeader> decode_option(std::span<const std::byte, kOptionHeaderSize> in) {
  if (load_u64(in.data()) != kOptionMagic) return std::nullopt;
  return OptionHeader{load_u32(in.data() + 8), load_u32(in.data() + 12)};
}

void encode_option_reply(std::span<std::byte, kOptionReplyHeaderSize> out, std::uint32_t option,
                         std::uint32_t reply_type, std::uint32_t length) {
  store_u64(out.data(), kOptionReplyMagic);
  store_u32(out.data() + 8, option);
  store_u32(out.data() + 12, reply_type);
  store_u32(out.data() + 16, length);
}

}  // namespace blockd::common::nbd
