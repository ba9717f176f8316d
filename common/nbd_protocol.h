// The NBD wire vocabulary: magics, flags, option/reply/command types and error values.
// Every value here is defined by ../shared/reference/nbd-proto.md ("Values" section);
// the section name is given beside each group.
#pragma once

#include <cstdint>

namespace blockd::common::nbd {

// "Newstyle negotiation" and "Request message" / "Simple reply message".
inline constexpr std::uint64_t kNbdMagic = 0x4e42444d41474943ULL;      // "NBDMAGIC"
inline constexpr std::uint64_t kOptionMagic = 0x49484156454F5054ULL;   // "IHAVEOPT"
inline constexpr std::uint64_t kOptionReplyMagic = 0x0003e889045565a9ULL;
inline constexpr std::uint32_t kRequestMagic = 0x25609513;
inline constexpr std::uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr std::uint32_t kStructuredReplyMagic = 0x668e33ef;

inline constexpr std::size_t kRequestHeaderSize = 28;
inline constexpr std::size_t kSimpleReplyHeaderSize = 16;
inline constexpr std::size_t kStructuredReplyHeaderSize = 20;
inline constexpr std::size_t kOptionHeaderSize = 16;
inline constexpr std::size_t kOptionReplyHeaderSize = 20;

// "Handshake flags" (server -> client, 16 bits).
inline constexpr std::uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr std::uint16_t kFlagNoZeroes = 1 << 1;

// "Client flags" (client -> server, 32 bits).
inline constexpr std::uint32_t kClientFlagFixedNewstyle = 1 << 0;
inline constexpr std::uint32_t kClientFlagNoZeroes = 1 << 1;
inline constexpr std::uint32_t kKnownClientFlags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// "Transmission flags" (16 bits).
inline constexpr std::uint16_t kFlagHasFlags = 1 << 0;
inline constexpr std::uint16_t kFlagReadOnly = 1 << 1;
inline constexpr std::uint16_t kFlagSendFlush = 1 << 2;
inline constexpr std::uint16_t kFlagSendFua = 1 << 3;
inline constexpr std::uint16_t kFlagRotational = 1 << 4;
inline constexpr std::uint16_t kFlagSendTrim = 1 << 5;
inline constexpr std::uint16_t kFlagSendWriteZeroes = 1 << 6;
inline constexpr std::uint16_t kFlagSendDf = 1 << 7;
inline constexpr std::uint16_t kFlagCanMultiConn = 1 << 8;
inline constexpr std::uint16_t kFlagSendCache = 1 << 10;
inline constexpr std::uint16_t kFlagSendFastZero = 1 << 11;

// "Option types".
enum class Option : std::uint32_t {
  kExportName = 1,
  kAbort = 2,
  kList = 3,
  kPeekExport = 4,
  kStartTls = 5,
  kInfo = 6,
  kGo = 7,
  kStructuredReply = 8,
  kListMetaContext = 9,
  kSetMetaContext = 10,
};

// "Option reply types".
inline constexpr std::uint32_t kRepAck = 1;
inline constexpr std::uint32_t kRepServer = 2;
inline constexpr std::uint32_t kRepInfo = 3;
inline constexpr std::uint32_t kRepMetaContext = 4;
inline constexpr std::uint32_t kRepErrUnsup = (1U << 31) + 1;
inline constexpr std::uint32_t kRepErrPolicy = (1U << 31) + 2;
inline constexpr std::uint32_t kRepErrInvalid = (1U << 31) + 3;
inline constexpr std::uint32_t kRepErrPlatform = (1U << 31) + 4;
inline constexpr std::uint32_t kRepErrTlsReqd = (1U << 31) + 5;
inline constexpr std::uint32_t kRepErrUnknown = (1U << 31) + 6;
inline constexpr std::uint32_t kRepErrShutdown = (1U << 31) + 7;
inline constexpr std::uint32_t kRepErrBlockSizeReqd = (1U << 31) + 8;
inline constexpr std::uint32_t kRepErrTooBig = (1U << 31) + 9;

// NBD_REP_INFO information types ("Option reply types", NBD_REP_INFO).
inline constexpr std::uint16_t kInfoExport = 0;
inline constexpr std::uint16_t kInfoName = 1;
inline constexpr std::uint16_t kInfoDescription = 2;
inline constexpr std::uint16_t kInfoBlockSize = 3;

// "Request types".
enum class Command : std::uint16_t {
  kRead = 0,
  kWrite = 1,
  kDisc = 2,
  kFlush = 3,
  kTrim = 4,
  kCache = 5,
  kWriteZeroes = 6,
  kBlockStatus = 7,
};

// "Command flags".
inline constexpr std::uint16_t kCmdFlagFua = 1 << 0;
inline constexpr std::uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr std::uint16_t kCmdFlagDf = 1 << 2;
inline constexpr std::uint16_t kCmdFlagReqOne = 1 << 3;
inline constexpr std::uint16_t kCmdFlagFastZero = 1 << 4;

// "Structured reply flags" and "Structured reply types".
inline constexpr std::uint16_t kReplyFlagDone = 1 << 0;
inline constexpr std::uint16_t kReplyTypeNone = 0;
inline constexpr std::uint16_t kReplyTypeOffsetData = 1;
inline constexpr std::uint16_t kReplyTypeOffsetHole = 2;
inline constexpr std::uint16_t kReplyTypeBlockStatus = 5;
inline constexpr std::uint16_t kReplyTypeError = (1 << 15) + 1;
inline constexpr std::uint16_t kReplyTypeErrorOffset = (1 << 15) + 2;

// "base:allocation metadata context".
inline constexpr std::uint32_t kStateHole = 1 << 0;
inline constexpr std::uint32_t kStateZero = 1 << 1;

// "Error values".
enum class Error : std::uint32_t {
  kOk = 0,
  kPerm = 1,
  kIo = 5,
  kNoMem = 12,
  kInval = 22,
  kNoSpc = 28,
  kOverflow = 75,
  kNotSup = 95,
  kShutdown = 108,
};

// "Size constraints": what blockd advertises (DESIGN.md §2).
inline constexpr std::uint32_t kMinBlockSize = 512;
inline constexpr std::uint32_t kPreferredBlockSize = 4096;
inline constexpr std::uint32_t kMaxPayload = 32U << 20;
// "Strings": names and other strings MUST NOT exceed 4096 bytes.
inline constexpr std::uint32_t kMaxStringLength = 4096;

const char* to_string(Command command);
const char* to_string(Option option);
const char* to_string(Error error);

}  // namespace blockd::common::nbd
