#include "server/nbd/request_validator.h"

namespace blockd::server::nbd {

namespace wire = common::nbd;
using wire::Command;
using wire::Error;

std::uint16_t transmission_flags(bool read_only, bool structured_replies) {
  std::uint16_t flags = wire::kFlagHasFlags | wire::kFlagSendFlush | wire::kFlagSendCache |
                        wire::kFlagCanMultiConn;
  if (read_only) {
    flags |= wire::kFlagReadOnly;
  } else {
    flags |= wire::kFlagSendFua | wire::kFlagSendTrim | wire::kFlagSendWriteZeroes |
             wire::kFlagSendFastZero;
  }
  // "NBD_FLAG_SEND_DF ... MUST leave this flag clear if structured replies have not
  // been negotiated."
  if (structured_replies) flags |= wire::kFlagSendDf;
  return flags;
}

bool is_write_command(std::uint16_t type) {
  switch (static_cast<Command>(type)) {
    case Command::kWrite:
    case Command::kTrim:
    case Command::kWriteZeroes: return true;
    default: return false;
  }
}

namespace {

bool known_command(std::uint16_t type) {
  return type <= static_cast<std::uint16_t>(Command::kBlockStatus);
}

// "Command flags": FUA is valid on every command; the others on one command each.
std::uint16_t allowed_flags(Command command) {
  switch (command) {
    case Command::kRead: return wire::kCmdFlagFua | wire::kCmdFlagDf;
    case Command::kWriteZeroes:
      return wire::kCmdFlagFua | wire::kCmdFlagNoHole | wire::kCmdFlagFastZero;
    case Command::kBlockStatus: return wire::kCmdFlagFua | wire::kCmdFlagReqOne;
    default: return wire::kCmdFlagFua;
  }
}

}  // namespace

Error validate_request(const wire::RequestHeader& request, const SessionTerms& terms) {
  // "The server SHOULD return NBD_EINVAL if it receives an unknown command."
  if (!known_command(request.type)) return Error::kInval;
  const auto command = static_cast<Command>(request.type);

  // "... SHOULD return NBD_EPERM if it receives a write or trim request on a
  // read-only export." Checked first: it is the most useful answer.
  if (terms.read_only && is_write_command(request.type)) return Error::kPerm;

  // Unknown flags, and flags not documented for this command: EINVAL.
  if ((request.flags & ~allowed_flags(command)) != 0) return Error::kInval;
  if ((request.flags & wire::kCmdFlagDf) && !terms.structured_replies) return Error::kInval;
  if ((request.flags & wire::kCmdFlagFastZero) &&
      !(terms.transmission_flags & wire::kFlagSendFastZero))
    return Error::kInval;

  if (command == Command::kFlush) {
    // "For a flush request, length and offset are reserved, and MUST be set to all-zero."
    return (request.offset == 0 && request.length == 0) ? Error::kOk : Error::kInval;
  }
  if (command == Command::kDisc) return Error::kOk;
  if (command == Command::kBlockStatus) {
    // "A client MUST NOT send NBD_CMD_BLOCK_STATUS unless ... SET_META_CONTEXT ..."
    if (!terms.base_allocation) return Error::kInval;
    if (request.length == 0) return Error::kInval;
  }

  // An offset + length beyond 2^64 can never be valid.
  if (request.offset > UINT64_MAX - request.length) return Error::kInval;
  const std::uint64_t end = request.offset + request.length;
  if (end > terms.size) {
    // "SHOULD return NBD_ENOSPC if it receives a write request including one or more
    // sectors beyond the size of the device ... NBD_EINVAL if ... a read or trim".
    return (command == Command::kWrite || command == Command::kWriteZeroes) ? Error::kNoSpc
                                                                             : Error::kInval;
  }
  if ((command == Command::kRead || command == Command::kWrite) &&
      request.length > wire::kMaxPayload)
    return Error::kInval;

  // Only a client that asked for NBD_INFO_BLOCK_SIZE promised to honour the minimum
  // block size; the others get the spec's default minimum of 1 ("Size constraints").
  if (terms.block_size_negotiated &&
      (request.offset % wire::kMinBlockSize != 0 || request.length % wire::kMinBlockSize != 0))
    return Error::kInval;
  return Error::kOk;
}

}  // namespace blockd::server::nbd
