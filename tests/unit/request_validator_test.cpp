// validate_request(): every rule, against nbd-proto.md "Request types", "Command flags",
// "Error values" and "Size constraints", and the advertised transmission flags.
#include "server/nbd/request_validator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>

#include "common/nbd_protocol.h"
#include "common/nbd_wire.h"
#include "server/nbd/session_terms.h"

namespace {

namespace wire = blockd::common::nbd;
using blockd::server::nbd::SessionTerms;
using blockd::server::nbd::is_write_command;
using blockd::server::nbd::transmission_flags;
using blockd::server::nbd::validate_request;
using wire::Command;
using wire::Error;

constexpr std::uint64_t kSize = 1 << 20;  // 1 MiB export
constexpr std::uint32_t kMiB = 1 << 20;

wire::RequestHeader request(Command command, std::uint64_t offset, std::uint32_t length,
                            std::uint16_t flags = 0) {
  wire::RequestHeader r;
  r.flags = flags;
  r.type = static_cast<std::uint16_t>(command);
  r.cookie = 0x1234;
  r.offset = offset;
  r.length = length;
  return r;
}

// A read-write session as a modern client negotiates it: structured replies,
// base:allocation, no NBD_INFO_BLOCK_SIZE.
SessionTerms rw_terms(std::uint64_t size = kSize, bool structured = true) {
  SessionTerms t;
  t.size = size;
  t.read_only = false;
  t.structured_replies = structured;
  t.base_allocation = structured;
  t.block_size_negotiated = false;
  t.transmission_flags = transmission_flags(false, structured);
  return t;
}

SessionTerms ro_terms(std::uint64_t size = kSize) {
  SessionTerms t = rw_terms(size);
  t.read_only = true;
  t.transmission_flags = transmission_flags(true, true);
  return t;
}

constexpr Command kAllCommands[] = {Command::kRead,  Command::kWrite, Command::kDisc,
                                    Command::kFlush, Command::kTrim,  Command::kCache,
                                    Command::kWriteZeroes, Command::kBlockStatus};

// Commands that take an offset and a length.
constexpr Command kRangeCommands[] = {Command::kRead,  Command::kWrite,        Command::kTrim,
                                      Command::kCache, Command::kWriteZeroes, Command::kBlockStatus};

std::uint64_t range_offset(Command c) { return c == Command::kFlush || c == Command::kDisc ? 0 : 4096; }
std::uint32_t range_length(Command c) { return c == Command::kFlush || c == Command::kDisc ? 0 : 4096; }

// ---------------------------------------------------------------- commands

TEST(RequestValidator, EveryKnownCommandInBoundsIsAccepted) {
  for (Command c : kAllCommands) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c)), rw_terms()), Error::kOk)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, UnknownCommandIsEinval) {
  // "The server SHOULD return NBD_EINVAL if it receives an unknown command."
  for (std::uint16_t type : {std::uint16_t{8}, std::uint16_t{9}, std::uint16_t{0x7fff},
                             std::uint16_t{0xffff}}) {
    wire::RequestHeader r = request(Command::kRead, 0, 512);
    r.type = type;
    EXPECT_EQ(validate_request(r, rw_terms()), Error::kInval) << "type " << type;
    // Also on a read-only session: an unknown command is not a write.
    EXPECT_EQ(validate_request(r, ro_terms()), Error::kInval) << "type " << type;
  }
}

TEST(RequestValidator, DiscIsAlwaysAccepted) {
  EXPECT_EQ(validate_request(request(Command::kDisc, 0, 0), rw_terms()), Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kDisc, 0, 0), ro_terms()), Error::kOk);
}

// ---------------------------------------------------------------- flags

TEST(RequestValidator, FuaIsAcceptedOnEveryCommand) {
  // "NBD_CMD_FLAG_FUA; This flag is valid for all commands".
  for (Command c : kAllCommands) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), wire::kCmdFlagFua), rw_terms()),
              Error::kOk)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, UnknownFlagBitsAreEinval) {
  // "SHOULD return NBD_EINVAL if it receives an unknown command flag."
  for (std::uint16_t bit = 5; bit < 16; ++bit) {
    const auto flag = static_cast<std::uint16_t>(1U << bit);
    for (Command c : kAllCommands) {
      if (c == Command::kDisc) continue;  // DISC never gets a reply
      EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), flag), rw_terms()), Error::kInval)
          << wire::to_string(c) << " flag bit " << bit;
    }
  }
}

TEST(RequestValidator, NoHoleIsOnlyValidOnWriteZeroes) {
  // "NBD_CMD_FLAG_NO_HOLE; valid during NBD_CMD_WRITE_ZEROES."
  for (Command c : {Command::kRead, Command::kWrite, Command::kFlush, Command::kTrim, Command::kCache,
                    Command::kBlockStatus}) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), wire::kCmdFlagNoHole), rw_terms()),
              Error::kInval)
        << wire::to_string(c);
  }
  EXPECT_EQ(validate_request(request(Command::kWriteZeroes, 0, 4096, wire::kCmdFlagNoHole), rw_terms()),
            Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kWriteZeroes, 0, 4096, wire::kCmdFlagNoHole | wire::kCmdFlagFua),
                             rw_terms()),
            Error::kOk);
}

TEST(RequestValidator, ReqOneIsOnlyValidOnBlockStatus) {
  for (Command c : {Command::kRead, Command::kWrite, Command::kFlush, Command::kTrim, Command::kCache,
                    Command::kWriteZeroes}) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), wire::kCmdFlagReqOne), rw_terms()),
              Error::kInval)
        << wire::to_string(c);
  }
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, 0, 4096, wire::kCmdFlagReqOne), rw_terms()),
            Error::kOk);
}

TEST(RequestValidator, DfIsOnlyValidOnReadWithStructuredReplies) {
  // "NBD_CMD_FLAG_DF ... valid during NBD_CMD_READ ... MUST NOT be set unless the
  // transmission flags include NBD_FLAG_SEND_DF" (only sent with structured replies).
  EXPECT_EQ(validate_request(request(Command::kRead, 0, 4096, wire::kCmdFlagDf), rw_terms()), Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kRead, 0, 4096, wire::kCmdFlagDf), rw_terms(kSize, false)),
            Error::kInval);
  for (Command c : {Command::kWrite, Command::kFlush, Command::kTrim, Command::kCache, Command::kWriteZeroes,
                    Command::kBlockStatus}) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), wire::kCmdFlagDf), rw_terms()),
              Error::kInval)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, FastZeroIsOnlyValidOnWriteZeroesWhenAdvertised) {
  EXPECT_EQ(validate_request(request(Command::kWriteZeroes, 0, 4096, wire::kCmdFlagFastZero), rw_terms()),
            Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kWriteZeroes, 0, 4096,
                                     wire::kCmdFlagFastZero | wire::kCmdFlagNoHole | wire::kCmdFlagFua),
                             rw_terms()),
            Error::kOk);
  // "If the server did not advertise NBD_FLAG_SEND_FAST_ZERO ... SHOULD fail with
  // NBD_EINVAL if the NBD_CMD_FLAG_FAST_ZERO flag was set."
  SessionTerms no_fast_zero = rw_terms();
  no_fast_zero.transmission_flags &= static_cast<std::uint16_t>(~wire::kFlagSendFastZero);
  EXPECT_EQ(validate_request(request(Command::kWriteZeroes, 0, 4096, wire::kCmdFlagFastZero), no_fast_zero),
            Error::kInval);
  for (Command c : {Command::kRead, Command::kWrite, Command::kFlush, Command::kTrim, Command::kCache,
                    Command::kBlockStatus}) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c), wire::kCmdFlagFastZero), rw_terms()),
              Error::kInval)
        << wire::to_string(c);
  }
}

// ---------------------------------------------------------------- read-only

TEST(RequestValidator, ReadOnlyRefusesEveryWriteCommandWithEperm) {
  // "SHOULD return NBD_EPERM if it receives a write or trim request on a read-only
  // export"; "SHOULD return NBD_EPERM if it receives a write zeroes request on a
  // read-only export".
  for (Command c : {Command::kWrite, Command::kTrim, Command::kWriteZeroes}) {
    EXPECT_EQ(validate_request(request(c, 0, 4096), ro_terms()), Error::kPerm) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 0, 4096, wire::kCmdFlagFua), ro_terms()), Error::kPerm)
        << wire::to_string(c);
    // EPERM is the most useful answer, even for a request that is also past the end.
    EXPECT_EQ(validate_request(request(c, kSize, 4096), ro_terms()), Error::kPerm) << wire::to_string(c);
  }
}

TEST(RequestValidator, ReadOnlyAcceptsCommandsThatDoNotWrite) {
  for (Command c : {Command::kRead, Command::kFlush, Command::kCache, Command::kBlockStatus, Command::kDisc}) {
    EXPECT_EQ(validate_request(request(c, range_offset(c), range_length(c)), ro_terms()), Error::kOk)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, IsWriteCommand) {
  EXPECT_TRUE(is_write_command(static_cast<std::uint16_t>(Command::kWrite)));
  EXPECT_TRUE(is_write_command(static_cast<std::uint16_t>(Command::kTrim)));
  EXPECT_TRUE(is_write_command(static_cast<std::uint16_t>(Command::kWriteZeroes)));
  EXPECT_FALSE(is_write_command(static_cast<std::uint16_t>(Command::kRead)));
  EXPECT_FALSE(is_write_command(static_cast<std::uint16_t>(Command::kFlush)));
  EXPECT_FALSE(is_write_command(static_cast<std::uint16_t>(Command::kCache)));
  EXPECT_FALSE(is_write_command(static_cast<std::uint16_t>(Command::kBlockStatus)));
  EXPECT_FALSE(is_write_command(static_cast<std::uint16_t>(Command::kDisc)));
  EXPECT_FALSE(is_write_command(42));
}

// ---------------------------------------------------------------- bounds

TEST(RequestValidator, RequestsEndingExactlyAtTheEndAreAccepted) {
  for (Command c : kRangeCommands) {
    EXPECT_EQ(validate_request(request(c, kSize - 4096, 4096), rw_terms()), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 0, static_cast<std::uint32_t>(kSize)), rw_terms()), Error::kOk)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, PastTheEndReadTrimCacheBlockStatusAreEinval) {
  // "SHOULD return NBD_EINVAL if it receives a read or trim request including one or
  // more sectors beyond the size of the device"; the same for BLOCK_STATUS.
  for (Command c : {Command::kRead, Command::kTrim, Command::kCache, Command::kBlockStatus}) {
    EXPECT_EQ(validate_request(request(c, kSize - 512, 1024), rw_terms()), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, kSize, 512), rw_terms()), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, kSize - 1, 2), rw_terms()), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 1ULL << 40, 512), rw_terms()), Error::kInval) << wire::to_string(c);
  }
  // Read-only sessions too.
  EXPECT_EQ(validate_request(request(Command::kRead, kSize, 512), ro_terms()), Error::kInval);
}

TEST(RequestValidator, PastTheEndWriteAndWriteZeroesAreEnospc) {
  // "SHOULD return NBD_ENOSPC if it receives a write request including one or more
  // sectors beyond the size of the device"; the same for WRITE_ZEROES.
  for (Command c : {Command::kWrite, Command::kWriteZeroes}) {
    EXPECT_EQ(validate_request(request(c, kSize - 512, 1024), rw_terms()), Error::kNoSpc) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, kSize, 512), rw_terms()), Error::kNoSpc) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 1ULL << 40, 512), rw_terms()), Error::kNoSpc) << wire::to_string(c);
    // Far away, but without wrapping around.
    EXPECT_EQ(validate_request(request(c, UINT64_MAX - 4096, 512), rw_terms()), Error::kNoSpc)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, OffsetPlusLengthOverflowIsEinval) {
  for (Command c : kRangeCommands) {
    EXPECT_EQ(validate_request(request(c, UINT64_MAX - 511, 1024), rw_terms()), Error::kInval)
        << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, UINT64_MAX, 1), rw_terms()), Error::kInval) << wire::to_string(c);
    // Even on an export as large as it gets.
    EXPECT_EQ(validate_request(request(c, UINT64_MAX - 511, 1024), rw_terms(UINT64_MAX)), Error::kInval)
        << wire::to_string(c);
  }
}

TEST(RequestValidator, FlushWithOffsetOrLengthIsEinval) {
  // "For a flush request, length and offset are reserved, and MUST be set to all-zero."
  EXPECT_EQ(validate_request(request(Command::kFlush, 0, 0), rw_terms()), Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kFlush, 512, 0), rw_terms()), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kFlush, 0, 512), rw_terms()), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kFlush, 4096, 4096), rw_terms()), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kFlush, 0, 0, wire::kCmdFlagFua), rw_terms()), Error::kOk);
}

TEST(RequestValidator, BlockStatusNeedsBaseAllocation) {
  SessionTerms t = rw_terms();
  t.base_allocation = false;
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, 0, 4096), t), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, 0, 4096, wire::kCmdFlagReqOne), t), Error::kInval);
  // Without structured replies there is no base:allocation either.
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, 0, 4096), rw_terms(kSize, false)), Error::kInval);
}

TEST(RequestValidator, BlockStatusWithLengthZeroIsEinval) {
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, 0, 0), rw_terms()), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kBlockStatus, kSize, 0), rw_terms()), Error::kInval);
}

TEST(RequestValidator, ReadAndWriteOverThe32MiBMaximumPayloadAreEinval) {
  const std::uint64_t big = 1ULL << 33;  // 8 GiB export: the limit is not the export size
  EXPECT_EQ(validate_request(request(Command::kRead, 0, 32 * kMiB), rw_terms(big)), Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kWrite, 0, 32 * kMiB), rw_terms(big)), Error::kOk);
  EXPECT_EQ(validate_request(request(Command::kRead, 0, 32 * kMiB + 512), rw_terms(big)), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kWrite, 0, 32 * kMiB + 512), rw_terms(big)), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kRead, 4096, 64 * kMiB), rw_terms(big)), Error::kInval);
  EXPECT_EQ(validate_request(request(Command::kWrite, 4096, 0xFFFFFE00U), rw_terms(big)), Error::kInval);
}

TEST(RequestValidator, CommandsWithoutPayloadMayExceed32MiB) {
  // DESIGN.md §2: the kernel sends TRIM/WRITE_ZEROES up to ~4 GiB: accept those.
  const std::uint64_t big = 1ULL << 33;
  for (Command c : {Command::kTrim, Command::kWriteZeroes, Command::kCache, Command::kBlockStatus}) {
    EXPECT_EQ(validate_request(request(c, 0, 64 * kMiB), rw_terms(big)), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 4096, 0xFFFFFE00U), rw_terms(big)), Error::kOk) << wire::to_string(c);
  }
}

// ---------------------------------------------------------------- alignment

TEST(RequestValidator, UnalignedRequestsAreAcceptedWithoutBlockSizeNegotiation) {
  // Without NBD_INFO_BLOCK_SIZE the spec's default minimum block size is 1.
  for (Command c : kRangeCommands) {
    EXPECT_EQ(validate_request(request(c, 1, 3), rw_terms()), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 4095, 4097), rw_terms()), Error::kOk) << wire::to_string(c);
  }
}

TEST(RequestValidator, AlignmentIsEnforcedWhenBlockSizeWasNegotiated) {
  SessionTerms t = rw_terms();
  t.block_size_negotiated = true;
  for (Command c : kRangeCommands) {
    EXPECT_EQ(validate_request(request(c, 512, 1024), t), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 1, 512), t), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 256, 512), t), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 512, 511), t), Error::kInval) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 0, 4097), t), Error::kInval) << wire::to_string(c);
  }
  EXPECT_EQ(validate_request(request(Command::kFlush, 0, 0), t), Error::kOk);
}

// ---------------------------------------------------------------- zero length

TEST(RequestValidator, ZeroLengthRequestsAreValid) {
  // "The client SHOULD NOT request a ... length of 0; the behavior of a server on
  // such a request is unspecified although the server SHOULD NOT disconnect."
  // blockd answers them successfully (BLOCK_STATUS excepted, see above).
  SessionTerms aligned = rw_terms();
  aligned.block_size_negotiated = true;
  for (Command c : {Command::kRead, Command::kWrite, Command::kTrim, Command::kCache, Command::kWriteZeroes}) {
    EXPECT_EQ(validate_request(request(c, 0, 0), rw_terms()), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 4096, 0), rw_terms()), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, kSize, 0), rw_terms()), Error::kOk) << wire::to_string(c);
    EXPECT_EQ(validate_request(request(c, 4096, 0), aligned), Error::kOk) << wire::to_string(c);
  }
}

// ---------------------------------------------------------------- transmission flags

TEST(TransmissionFlags, ReadWriteWithoutStructuredReplies) {
  const std::uint16_t expected = wire::kFlagHasFlags | wire::kFlagSendFlush | wire::kFlagSendFua |
                                 wire::kFlagSendTrim | wire::kFlagSendWriteZeroes | wire::kFlagCanMultiConn |
                                 wire::kFlagSendCache | wire::kFlagSendFastZero;
  EXPECT_EQ(transmission_flags(false, false), expected);
  EXPECT_EQ(transmission_flags(false, false), 0x0D6D);
}

TEST(TransmissionFlags, ReadWriteWithStructuredRepliesAddsDf) {
  EXPECT_EQ(transmission_flags(false, true), 0x0D6D | wire::kFlagSendDf);
  EXPECT_EQ(transmission_flags(false, true), 0x0DED);
}

TEST(TransmissionFlags, ReadOnlyAdvertisesNoWriteCommands) {
  const std::uint16_t expected = wire::kFlagHasFlags | wire::kFlagReadOnly | wire::kFlagSendFlush |
                                 wire::kFlagCanMultiConn | wire::kFlagSendCache;
  EXPECT_EQ(transmission_flags(true, false), expected);
  EXPECT_EQ(transmission_flags(true, false), 0x0507);
  EXPECT_EQ(transmission_flags(true, true), 0x0587);
  for (bool structured : {false, true}) {
    const std::uint16_t f = transmission_flags(true, structured);
    EXPECT_EQ(f & wire::kFlagSendTrim, 0) << structured;
    EXPECT_EQ(f & wire::kFlagSendWriteZeroes, 0) << structured;
    EXPECT_EQ(f & wire::kFlagSendFastZero, 0) << structured;
    EXPECT_EQ(f & wire::kFlagSendFua, 0) << structured;
  }
}

TEST(TransmissionFlags, NeverRotational) {
  for (bool ro : {false, true})
    for (bool structured : {false, true}) EXPECT_EQ(transmission_flags(ro, structured) & wire::kFlagRotational, 0);
}

}  // namespace
