#include "client/nbd_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "client/nbd_error.h"
#include "client/socket_io.h"
#include "common/nbd_wire.h"

namespace blockd::client {

namespace nbd = common::nbd;

namespace {

constexpr auto cmd(nbd::Command c) { return static_cast<std::uint16_t>(c); }

// After NBD_CMD_DISC "the server MUST ... close the TCP connection": waiting for that
// (briefly) means that when disconnect() returns the server has ended the session, so
// what follows (releasing a lease, deleting the volume) does not race with it.
void wait_for_close(int fd) {
  constexpr int kWaitMs = 5000;
  std::array<std::byte, 512> sink{};
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, kWaitMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    const ssize_t n = ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed (or failed): either way the session is over
  }
}

// A structured chunk whose payload is larger than this cannot be valid for any request
// NbdClient sends (reads are at most max_payload; block status at most 2^20 extents,
// "NBD_REPLY_TYPE_BLOCK_STATUS").
constexpr std::uint32_t kMaxChunk = (64U << 20) + 64;

}  // namespace

NbdClient NbdClient::open(const NbdAddress& address, const NegotiateOptions& options,
                          std::chrono::seconds timeout) {
  common::UniqueFd fd = nbd_connect(address, timeout);
  ExportInfo info = nbd_negotiate(fd.get(), address.export_name(), options);
  return NbdClient(std::move(fd), std::move(info));
}

NbdClient::NbdClient(common::UniqueFd fd, ExportInfo info) : fd_(std::move(fd)), info_(std::move(info)) {}

NbdClient::~NbdClient() {
  try {
    disconnect();
  } catch (...) {
    // Best effort: the server sees a hard disconnect instead, which it must survive.
  }
}

void NbdClient::check_range(const char* what, std::uint64_t offset, std::uint64_t length,
                            bool payload) const {
  // These are the client's own obligations ("Request types", "Size constraints"):
  // breaking them is a bug in the caller, not a server error.
  if (length == 0) throw std::invalid_argument(std::string(what) + ": zero length");
  if (offset > info_.size || length > info_.size - offset)
    throw std::invalid_argument(std::string(what) + ": beyond the end of the export");
  if (info_.block_size_advertised && ((offset | length) % info_.min_block) != 0)
    throw std::invalid_argument(std::string(what) + ": not aligned to the minimum block size");
  if (payload && length > info_.max_payload)
    throw std::invalid_argument(std::string(what) + ": larger than the maximum payload");
}

std::uint64_t NbdClient::send(std::uint16_t command, std::uint16_t flags, std::uint64_t offset,
                              std::uint32_t length, std::span<const std::byte> payload, Pending pending) {
  if (!fd_.valid()) throw NbdError("the NBD connection is closed");
  const std::uint64_t cookie = next_cookie_++;
  nbd::RequestHeader h;
  h.flags = flags;
  h.type = command;
  h.cookie = cookie;
  h.offset = offset;
  h.length = length;
  std::array<std::byte, nbd::kRequestHeaderSize> header{};
  nbd::encode_request(h, header);
  pending.command = command;
  pending.offset = offset;
  pending.length = length;
  pending.extent_end = offset;
  // Registered before the write: a reply cannot overtake it, but the bookkeeping must
  // exist when wait_one() runs after a partial failure too.
  pending_.emplace(cookie, std::move(pending));
  write_all2(fd_.get(), header, payload, "sending an NBD request");
  return cookie;
}

std::uint64_t NbdClient::send_read(std::uint64_t offset, std::span<std::byte> into) {
  check_range("NBD_CMD_READ", offset, into.size(), true);
  Pending p;
  p.buffer = into.data();
  return send(cmd(nbd::Command::kRead), 0, offset, static_cast<std::uint32_t>(into.size()), {}, std::move(p));
}

std::uint64_t NbdClient::send_write(std::uint64_t offset, std::span<const std::byte> data,
                                    std::uint16_t flags) {
  if (info_.read_only()) throw std::logic_error("NBD_CMD_WRITE on a read-only export");
  check_range("NBD_CMD_WRITE", offset, data.size(), true);
  return send(cmd(nbd::Command::kWrite), flags, offset, static_cast<std::uint32_t>(data.size()), data, {});
}

std::uint64_t NbdClient::send_write_zeroes(std::uint64_t offset, std::uint32_t length,
                                           std::uint16_t flags) {
  // "NBD_CMD_WRITE_ZEROES": only if the server set NBD_FLAG_SEND_WRITE_ZEROES.
  if (!info_.has(nbd::kFlagSendWriteZeroes))
    throw std::logic_error("the server does not support NBD_CMD_WRITE_ZEROES");
  check_range("NBD_CMD_WRITE_ZEROES", offset, length, false);
  return send(cmd(nbd::Command::kWriteZeroes), flags, offset, length, {}, {});
}

std::uint64_t NbdClient::send_flush() {
  if (!info_.has(nbd::kFlagSendFlush)) throw std::logic_error("the server does not support NBD_CMD_FLUSH");
  // "NBD_CMD_FLUSH": offset and length MUST be zero.
  return send(cmd(nbd::Command::kFlush), 0, 0, 0, {}, {});
}

std::uint64_t NbdClient::send_block_status(std::uint64_t offset, std::uint32_t length,
                                           std::vector<Extent>* out) {
  // "Metadata querying": only after a successful NBD_OPT_SET_META_CONTEXT.
  if (!info_.base_allocation_id) throw std::logic_error("base:allocation was not negotiated");
  check_range("NBD_CMD_BLOCK_STATUS", offset, length, false);
  Pending p;
  p.extents = out;
  return send(cmd(nbd::Command::kBlockStatus), 0, offset, length, {}, std::move(p));
}

Completion NbdClient::wait_one() {
  if (pending_.empty()) throw std::logic_error("wait_one() with nothing in flight");
  std::uint64_t cookie = 0;
  while (!read_reply(cookie)) {
  }
  auto node = pending_.extract(cookie);
  Pending& p = node.mapped();
  if (p.error == 0 && p.command == cmd(nbd::Command::kRead) && p.covered != p.length &&
      info_.structured_replies) {
    throw NbdError("protocol error: a successful structured READ reply did not cover the request");
  }
  if (p.error == 0 && p.command == cmd(nbd::Command::kBlockStatus) && p.extent_end == p.offset) {
    throw NbdError("protocol error: a successful BLOCK_STATUS reply had no base:allocation extents");
  }
  return Completion{cookie, p.error, std::move(p.message)};
}

bool NbdClient::read_reply(std::uint64_t& cookie) {
  std::array<std::byte, nbd::kStructuredReplyHeaderSize> header{};
  read_exact(fd_.get(), std::span(header.data(), nbd::kSimpleReplyHeaderSize), "reading an NBD reply");
  const std::uint32_t magic = nbd::load_u32(header.data());
  if (magic == nbd::kSimpleReplyMagic) {
    // "Simple reply message": magic, error, cookie; then READ data if error is 0.
    cookie = nbd::load_u64(header.data() + 8);
    auto it = pending_.find(cookie);
    if (it == pending_.end()) throw NbdError("protocol error: a reply for an unknown cookie");
    Pending& p = it->second;
    p.error = nbd::load_u32(header.data() + 4);
    if (p.command == cmd(nbd::Command::kRead) && p.error == 0) {
      read_exact(fd_.get(), std::span(p.buffer, p.length), "reading NBD READ data");
      p.covered = p.length;
    }
    return true;
  }
  if (magic != nbd::kStructuredReplyMagic || !info_.structured_replies)
    throw NbdError("protocol error: bad reply magic from the server");
  // "Structured reply chunk message": magic, flags, type, cookie, length (20 bytes).
  read_exact(fd_.get(), std::span(header.data() + nbd::kSimpleReplyHeaderSize, 4), "reading an NBD reply");
  const std::uint16_t flags = nbd::load_u16(header.data() + 4);
  const std::uint16_t type = nbd::load_u16(header.data() + 6);
  cookie = nbd::load_u64(header.data() + 8);
  const std::uint32_t length = nbd::load_u32(header.data() + 16);
  auto it = pending_.find(cookie);
  if (it == pending_.end()) throw NbdError("protocol error: a reply chunk for an unknown cookie");
  if (length > kMaxChunk) throw NbdError("protocol error: a reply chunk of " + std::to_string(length) + " bytes");
  read_structured_chunk(cookie, it->second, type, length);
  return (flags & nbd::kReplyFlagDone) != 0;
}

void NbdClient::read_structured_chunk(std::uint64_t, Pending& p, std::uint16_t type, std::uint32_t length) {
  const bool is_read = p.command == cmd(nbd::Command::kRead);
  if (type == nbd::kReplyTypeNone) {
    if (length != 0) throw NbdError("protocol error: NBD_REPLY_TYPE_NONE with a payload");
    return;
  }
  if (type == nbd::kReplyTypeOffsetData && is_read) {
    // "NBD_REPLY_TYPE_OFFSET_DATA": 64-bit offset, then data inside the request.
    if (length < 9) throw NbdError("protocol error: short NBD_REPLY_TYPE_OFFSET_DATA");
    std::array<std::byte, 8> off{};
    read_exact(fd_.get(), off, "reading NBD READ data");
    const std::uint64_t offset = nbd::load_u64(off.data());
    const std::uint64_t size = length - 8;
    if (offset < p.offset || offset - p.offset > p.length || size > p.length - (offset - p.offset))
      throw NbdError("protocol error: READ data outside the requested range");
    read_exact(fd_.get(), std::span(p.buffer + (offset - p.offset), size), "reading NBD READ data");
    p.covered += size;
    return;
  }
  if (type == nbd::kReplyTypeOffsetHole && is_read) {
    // "NBD_REPLY_TYPE_OFFSET_HOLE": 64-bit offset, 32-bit size, reads as zeroes.
    if (length != 12) throw NbdError("protocol error: NBD_REPLY_TYPE_OFFSET_HOLE of wrong length");
    std::array<std::byte, 12> body{};
    read_exact(fd_.get(), body, "reading an NBD hole chunk");
    const std::uint64_t offset = nbd::load_u64(body.data());
    const std::uint32_t size = nbd::load_u32(body.data() + 8);
    if (size == 0 || offset < p.offset || offset - p.offset > p.length || size > p.length - (offset - p.offset))
      throw NbdError("protocol error: READ hole outside the requested range");
    std::memset(p.buffer + (offset - p.offset), 0, size);
    p.covered += size;
    return;
  }
  if (type == nbd::kReplyTypeBlockStatus && p.command == cmd(nbd::Command::kBlockStatus)) {
    // "NBD_REPLY_TYPE_BLOCK_STATUS": context id, then (length, flags) descriptors.
    if (length < 12 || (length - 4) % 8 != 0)
      throw NbdError("protocol error: NBD_REPLY_TYPE_BLOCK_STATUS of wrong length");
    scratch_.resize(length);
    read_exact(fd_.get(), scratch_, "reading NBD block status");
    if (nbd::load_u32(scratch_.data()) != *info_.base_allocation_id) return;  // another context
    for (std::size_t at = 4; at < length; at += 8) {
      Extent e;
      e.offset = p.extent_end;
      e.length = nbd::load_u32(scratch_.data() + at);
      e.flags = nbd::load_u32(scratch_.data() + at + 4);
      if (e.length == 0) throw NbdError("protocol error: a zero-length extent");
      p.extent_end += e.length;
      if (p.extents != nullptr) p.extents->push_back(e);
    }
    return;
  }
  if ((type & 0x8000) != 0) {
    // Error chunks: 32-bit error, 16-bit message length, message, then type-specific
    // fields ("Structured reply types"). The request has failed.
    if (length < 6) throw NbdError("protocol error: short error chunk");
    scratch_.resize(length);
    read_exact(fd_.get(), scratch_, "reading an NBD error chunk");
    const std::uint32_t error = nbd::load_u32(scratch_.data());
    const std::uint16_t message_length = nbd::load_u16(scratch_.data() + 4);
    if (message_length > length - 6) throw NbdError("protocol error: error message longer than its chunk");
    if (p.error == 0) {
      // "error (MUST be nonzero)": a zero would make a failure look like success.
      p.error = error != 0 ? error : static_cast<std::uint32_t>(nbd::Error::kIo);
      p.message.assign(reinterpret_cast<const char*>(scratch_.data()) + 6, message_length);
    }
    return;
  }
  // "If the client receives an unknown or unexpected type, other than an error chunk,
  // it MUST initiate a hard disconnect."
  fd_.reset();
  throw NbdError("protocol error: unexpected reply chunk type " + std::to_string(type));
}

Completion NbdClient::wait_for(std::uint64_t cookie, const char* what) {
  Completion c = wait_one();
  if (c.cookie != cookie) throw std::logic_error("synchronous NBD call with other requests in flight");
  if (!c.ok()) {
    throw NbdError(std::string(what) + " failed: " + describe_nbd_error(c.error) +
                   (c.message.empty() ? "" : ": " + c.message));
  }
  return c;
}

void NbdClient::read(std::uint64_t offset, std::span<std::byte> into) {
  wait_for(send_read(offset, into), "NBD_CMD_READ");
}

void NbdClient::write(std::uint64_t offset, std::span<const std::byte> data) {
  wait_for(send_write(offset, data), "NBD_CMD_WRITE");
}

void NbdClient::write_zeroes(std::uint64_t offset, std::uint32_t length) {
  wait_for(send_write_zeroes(offset, length), "NBD_CMD_WRITE_ZEROES");
}

void NbdClient::flush() { wait_for(send_flush(), "NBD_CMD_FLUSH"); }

std::vector<Extent> NbdClient::block_status(std::uint64_t offset, std::uint32_t length) {
  std::vector<Extent> extents;
  wait_for(send_block_status(offset, length, &extents), "NBD_CMD_BLOCK_STATUS");
  return extents;
}

void NbdClient::disconnect() {
  if (!fd_.valid()) return;
  // "The client MAY issue a soft disconnect at any time, but SHOULD wait until there
  // are no inflight requests first." Callers drain first; a destructor after an error
  // may not have, and then a hard disconnect is the honest thing.
  if (pending_.empty()) {
    nbd::RequestHeader h;
    h.type = cmd(nbd::Command::kDisc);
    h.cookie = next_cookie_++;
    std::array<std::byte, nbd::kRequestHeaderSize> header{};
    nbd::encode_request(h, header);
    common::UniqueFd fd = std::move(fd_);
    write_all(fd.get(), header, "sending NBD_CMD_DISC");
    ::shutdown(fd.get(), SHUT_WR);
    wait_for_close(fd.get());
    return;
  }
  fd_.reset();
  pending_.clear();
}

std::string describe_nbd_error(std::uint32_t error) {
  switch (static_cast<nbd::Error>(error)) {
    case nbd::Error::kPerm: return "EPERM (operation not permitted)";
    case nbd::Error::kIo: return "EIO (input/output error)";
    case nbd::Error::kNoMem: return "ENOMEM (out of memory)";
    case nbd::Error::kInval: return "EINVAL (invalid argument)";
    case nbd::Error::kNoSpc: return "ENOSPC (no space left)";
    case nbd::Error::kOverflow: return "EOVERFLOW (value too large)";
    case nbd::Error::kNotSup: return "ENOTSUP (not supported)";
    case nbd::Error::kShutdown: return "ESHUTDOWN (server shutting down)";
    default: return "NBD error " + std::to_string(error);
  }
}

}  // namespace blockd::client
