// Encoding and decoding of NBD messages. All integers are big-endian on the wire
// (nbd-proto.md "Conventions"). Pure functions over byte buffers: no I/O here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/nbd_protocol.h"

namespace blockd::common::nbd {

// Appends big-endian values to a growing buffer.
class ByteWriter {
 public:
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void bytes(std::string_view s);
  std::vector<std::byte>& buffer() { return buf_; }
  std::vector<std::byte> take() { return std::move(buf_); }

 private:
  std::vector<std::byte> buf_;
};

// Reads big-endian values from a buffer; every read is bounds-checked and
// returns nullopt once the buffer is exhausted, so malformed option data can
// never be read past its end.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> data) : data_(data) {}
  std::optional<std::uint16_t> u16();
  std::optional<std::uint32_t> u32();
  std::optional<std::uint64_t> u64();
  std::optional<std::string> string(std::size_t length);
  std::size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
};

std::uint16_t load_u16(const std::byte* p);
std::uint32_t load_u32(const std::byte* p);
std::uint64_t load_u64(const std::byte* p);
void store_u16(std::byte* p, std::uint16_t v);
void store_u32(std::byte* p, std::uint32_t v);
void store_u64(std::byte* p, std::uint64_t v);

// "Request message": 28 bytes.
struct RequestHeader {
  std::uint16_t flags = 0;
  std::uint16_t type = 0;  // raw, may be an unknown command
  std::uint64_t cookie = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};
// nullopt when the magic is wrong: the stream has lost sync.
std::optional<RequestHeader> decode_request(std::span<const std::byte, kRequestHeaderSize> in);
void encode_request(const RequestHeader& h, std::span<std::byte, kRequestHeaderSize> out);

// "Simple reply message": 16 bytes, followed by data for a successful READ.
void encode_simple_reply(std::span<std::byte, kSimpleReplyHeaderSize> out, Error error,
                         std::uint64_t cookie);

// "Structured reply chunk message": 20-byte header, then `length` bytes.
void encode_structured_reply(std::span<std::byte, kStructuredReplyHeaderSize> out,
                             std::uint16_t flags, std::uint16_t type, std::uint64_t cookie,
                             std::uint32_t length);

// Option request header ("Fixed newstyle negotiation"): magic, option, length.
struct OptionHeader {
  std::uint32_t option = 0;
  std::uint32_t length = 0;
};
std::optional<OptionHeader> decode_option(std::span<const std::byte, kOptionHeaderSize> in);

// Option reply header: magic, option, reply type, length.
void encode_option_reply(std::span<std::byte, kOptionReplyHeaderSize> out, std::uint32_t option,
                         std::uint32_t reply_type, std::uint32_t length);

}  // namespace blockd::common::nbd
