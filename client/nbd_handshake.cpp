#include "client/nbd_handshake.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "client/nbd_error.h"
#include "client/socket_io.h"
#include "common/nbd_wire.h"

namespace blockd::client {

namespace nbd = common::nbd;

namespace {

// Option replies larger than this are not something a client needs to accept: the
// longest legitimate one is a 4096-byte string plus a few fixed fields ("Strings").
constexpr std::uint32_t kMaxOptionReply = 64 * 1024;
// "Oldstyle negotiation": the magic that follows NBDMAGIC on an oldstyle server.
constexpr std::uint64_t kOldstyleMagic = 0x00420281861253ULL;

void set_timeouts(int fd, std::chrono::seconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count());
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

common::UniqueFd connect_unix(const NbdAddress& address) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address.path().size() >= sizeof sa.sun_path)
    throw NbdError("Unix socket path too long: " + address.path());
  std::memcpy(sa.sun_path, address.path().data(), address.path().size());
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw NbdError(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    throw NbdError("cannot connect to the NBD server at " + address.to_uri() + ": " +
                   std::strerror(errno));
  }
  return fd;
}

common::UniqueFd connect_tcp(const NbdAddress& address) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port());
  if (const int rc = ::getaddrinfo(address.host().c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw NbdError("cannot resolve " + address.host() + ": " + ::gai_strerror(rc));
  }
  int last_errno = 0;
  common::UniqueFd fd;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    common::UniqueFd candidate(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!candidate.valid()) {
      last_errno = errno;
      continue;
    }
    if (::connect(candidate.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      fd = std::move(candidate);
      break;
    }
    last_errno = errno;
  }
  ::freeaddrinfo(found);
  if (!fd.valid()) {
    throw NbdError("cannot connect to the NBD server at " + address.to_uri() + ": " +
                   std::strerror(last_errno));
  }
  // Requests are small and latency-bound: do not let Nagle hold a header back.
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

struct OptionReply {
  std::uint32_t type = 0;
  std::vector<std::byte> data;
};

void send_option(int fd, nbd::Option option, std::span<const std::byte> data) {
  // "Newstyle negotiation": IHAVEOPT, option, length, data.
  nbd::ByteWriter w;
  w.u64(nbd::kOptionMagic);
  w.u32(static_cast<std::uint32_t>(option));
  w.u32(static_cast<std::uint32_t>(data.size()));
  write_all2(fd, w.buffer(), data, "sending an NBD option");
}

OptionReply read_option_reply(int fd, nbd::Option option) {
  std::array<std::byte, nbd::kOptionReplyHeaderSize> header{};
  read_exact(fd, header, "reading an NBD option reply");
  if (nbd::load_u64(header.data()) != nbd::kOptionReplyMagic)
    throw NbdError("protocol error: bad option reply magic from the server");
  const std::uint32_t replied_to = nbd::load_u32(header.data() + 8);
  if (replied_to != static_cast<std::uint32_t>(option)) {
    throw NbdError("protocol error: the server answered option " + std::to_string(replied_to) +
                   " while " + nbd::to_string(option) + " was asked");
  }
  OptionReply reply;
  reply.type = nbd::load_u32(header.data() + 12);
  const std::uint32_t length = nbd::load_u32(header.data() + 16);
  if (length > kMaxOptionReply)
    throw NbdError("protocol error: option reply of " + std::to_string(length) + " bytes");
  reply.data.resize(length);
  read_exact(fd, reply.data, "reading an NBD option reply");
  return reply;
}

bool is_error(std::uint32_t reply_type) { return (reply_type & (1U << 31)) != 0; }

// An error reply's data is an optional message for humans ("Option reply types").
std::string error_text(const OptionReply& reply) {
  std::string text = describe_option_reply(reply.type);
  if (!reply.data.empty()) {
    text += ": ";
    text.append(reinterpret_cast<const char*>(reply.data.data()), reply.data.size());
  }
  return text;
}

void put_string32(nbd::ByteWriter& w, std::string_view s) {
  w.u32(static_cast<std::uint32_t>(s.size()));
  w.bytes(s);
}

// NBD_OPT_STRUCTURED_REPLY: ACK, or an error for a server that lacks it (then we live
// with simple replies; the spec says ERR_UNSUP, be lenient with any error).
bool negotiate_structured_replies(int fd) {
  send_option(fd, nbd::Option::kStructuredReply, {});
  for (;;) {
    const OptionReply reply = read_option_reply(fd, nbd::Option::kStructuredReply);
    if (reply.type == nbd::kRepAck) return true;
    if (is_error(reply.type)) return false;
    // Any other reply type before the final one is ignored, as for unknown info.
  }
}

// NBD_OPT_SET_META_CONTEXT with the single query "base:allocation" for the export the GO
// will name (the spec requires the same name). Returns the context id, if selected.
std::optional<std::uint32_t> select_base_allocation(int fd, std::string_view export_name) {
  constexpr std::string_view kContext = "base:allocation";
  nbd::ByteWriter w;
  put_string32(w, export_name);
  w.u32(1);
  put_string32(w, kContext);
  send_option(fd, nbd::Option::kSetMetaContext, w.buffer());
  std::optional<std::uint32_t> id;
  for (;;) {
    const OptionReply reply = read_option_reply(fd, nbd::Option::kSetMetaContext);
    if (reply.type == nbd::kRepAck) return id;
    if (is_error(reply.type)) return std::nullopt;  // "MUST disregard any context replies"
    if (reply.type == nbd::kRepMetaContext && reply.data.size() >= 4) {
      const std::string name(reinterpret_cast<const char*>(reply.data.data()) + 4, reply.data.size() - 4);
      if (name == kContext) id = nbd::load_u32(reply.data.data());
    }
  }
}

void apply_info(const OptionReply& reply, ExportInfo& info, bool& got_export) {
  nbd::ByteReader r(reply.data);
  const auto type = r.u16();
  if (!type) throw NbdError("protocol error: empty NBD_REP_INFO");
  switch (*type) {
    case nbd::kInfoExport: {
      const auto size = r.u64();
      const auto flags = r.u16();
      if (!size || !flags) throw NbdError("protocol error: short NBD_INFO_EXPORT");
      info.size = *size;
      info.transmission_flags = *flags;
      got_export = true;
      break;
    }
    case nbd::kInfoName:
      info.name = r.string(r.remaining()).value_or(info.name);
      break;
    case nbd::kInfoDescription:
      info.description = r.string(r.remaining()).value_or("");
      break;
    case nbd::kInfoBlockSize: {
      const auto min = r.u32();
      const auto preferred = r.u32();
      const auto max = r.u32();
      if (!min || !preferred || !max) throw NbdError("protocol error: short NBD_INFO_BLOCK_SIZE");
      // "Size constraints": minimum a power of two <= 64 KiB, preferred a power of two
      // >= the minimum; a client that cannot trust these could misalign every request.
      if (*min == 0 || (*min & (*min - 1)) != 0 || *max < *min)
        throw NbdError("protocol error: nonsensical block sizes from the server");
      info.min_block = *min;
      info.preferred_block = *preferred;
      info.max_payload = *max;
      info.block_size_advertised = true;
      break;
    }
    default:
      break;  // "The client MUST ignore information replies it does not understand."
  }
}

// NBD_OPT_EXPORT_NAME, the fallback for a server that answers GO with ERR_UNSUP
// (nbd-proto.md, NBD_OPT_GO: "clients SHOULD be prepared to also handle ...").
void export_name_fallback(int fd, std::string_view export_name, bool no_zeroes, ExportInfo& info) {
  nbd::ByteWriter w;
  w.bytes(export_name);
  send_option(fd, nbd::Option::kExportName, w.buffer());
  std::array<std::byte, 10 + 124> reply{};
  const std::size_t length = no_zeroes ? 10 : reply.size();
  read_exact(fd, std::span(reply.data(), length), "reading the NBD_OPT_EXPORT_NAME reply");
  info.size = nbd::load_u64(reply.data());
  info.transmission_flags = nbd::load_u16(reply.data() + 8);
  // No block sizes were agreed on: the spec's defaults apply and the server may not
  // hold us to anything, but a careful client still stays 512-aligned.
  info.min_block = 512;
}

}  // namespace

common::UniqueFd nbd_connect(const NbdAddress& address, std::chrono::seconds timeout) {
  common::UniqueFd fd = address.kind() == NbdAddress::Kind::kUnix ? connect_unix(address) : connect_tcp(address);
  if (timeout.count() > 0) set_timeouts(fd.get(), timeout);
  return fd;
}

ExportInfo nbd_negotiate(int fd, std::string_view export_name, const NegotiateOptions& options) {
  if (export_name.size() > nbd::kMaxStringLength)
    throw NbdError("export name longer than 4096 bytes");
  // "Newstyle negotiation": NBDMAGIC, IHAVEOPT, 16-bit handshake flags.
  std::array<std::byte, 18> greeting{};
  read_exact(fd, greeting, "reading the NBD greeting");
  if (nbd::load_u64(greeting.data()) != nbd::kNbdMagic)
    throw NbdError("this is not an NBD server (no NBDMAGIC in its greeting)");
  const std::uint64_t second = nbd::load_u64(greeting.data() + 8);
  if (second == kOldstyleMagic) throw NbdError("the server speaks oldstyle NBD, which is not supported");
  if (second != nbd::kOptionMagic) throw NbdError("protocol error: bad newstyle magic");
  const std::uint16_t handshake_flags = nbd::load_u16(greeting.data() + 16);
  if ((handshake_flags & nbd::kFlagFixedNewstyle) == 0)
    throw NbdError("the server does not speak fixed newstyle NBD, which is required");
  const bool no_zeroes = (handshake_flags & nbd::kFlagNoZeroes) != 0;

  // "Client flags": echo only what the server offered; it MUST close the connection
  // on flags it does not know.
  nbd::ByteWriter flags;
  flags.u32(nbd::kClientFlagFixedNewstyle | (no_zeroes ? nbd::kClientFlagNoZeroes : 0));
  write_all(fd, flags.buffer(), "sending NBD client flags");

  ExportInfo info;
  info.name = std::string(export_name);
  if (options.structured_replies || options.base_allocation) {
    info.structured_replies = negotiate_structured_replies(fd);
  }
  // "NBD_OPT_SET_META_CONTEXT ... MUST NOT be requested unless structured replies have
  // been negotiated first."
  if (options.base_allocation && info.structured_replies) {
    info.base_allocation_id = select_base_allocation(fd, export_name);
  }

  nbd::ByteWriter go;
  put_string32(go, export_name);
  go.u16(options.request_block_size ? 1 : 0);
  if (options.request_block_size) go.u16(nbd::kInfoBlockSize);
  send_option(fd, nbd::Option::kGo, go.buffer());
  bool got_export = false;
  for (;;) {
    const OptionReply reply = read_option_reply(fd, nbd::Option::kGo);
    if (reply.type == nbd::kRepInfo) {
      apply_info(reply, info, got_export);
      continue;
    }
    if (reply.type == nbd::kRepAck) break;
    if (reply.type == nbd::kRepErrUnsup) {
      export_name_fallback(fd, export_name, no_zeroes, info);
      info.structured_replies = false;  // stays negotiated, but keep the two paths simple
      got_export = true;
      break;
    }
    if (is_error(reply.type)) {
      throw NbdError("the NBD server refused export \"" + std::string(export_name) + "\": " +
                     error_text(reply));
    }
    // Another non-error reply type: ignore it, as for unknown information.
  }
  if (!got_export) throw NbdError("protocol error: NBD_OPT_GO succeeded without NBD_INFO_EXPORT");
  if (!options.request_block_size && !info.block_size_advertised) info.min_block = 1;
  return info;
}

std::string describe_option_reply(std::uint32_t reply_type) {
  switch (reply_type) {
    case nbd::kRepErrUnsup: return "NBD_REP_ERR_UNSUP (option not supported)";
    case nbd::kRepErrPolicy: return "NBD_REP_ERR_POLICY (refused by policy)";
    case nbd::kRepErrInvalid: return "NBD_REP_ERR_INVALID (invalid request)";
    case nbd::kRepErrPlatform: return "NBD_REP_ERR_PLATFORM (not supported on this platform)";
    case nbd::kRepErrTlsReqd: return "NBD_REP_ERR_TLS_REQD (TLS required)";
    case nbd::kRepErrUnknown: return "NBD_REP_ERR_UNKNOWN (no such export)";
    case nbd::kRepErrShutdown: return "NBD_REP_ERR_SHUTDOWN (server shutting down)";
    case nbd::kRepErrBlockSizeReqd: return "NBD_REP_ERR_BLOCK_SIZE_REQD (block size negotiation required)";
    case nbd::kRepErrTooBig: return "NBD_REP_ERR_TOO_BIG (request too big)";
    default: return "option reply " + std::to_string(reply_type);
  }
}

}  // namespace blockd::client
