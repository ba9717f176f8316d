#include "server/nbd/handshake.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "common/logging.h"
#include "common/nbd_wire.h"

namespace blockd::server::nbd {

namespace wire = common::nbd;
using wire::ByteReader;
using wire::ByteWriter;
using wire::Option;

namespace {

constexpr const char* kBaseAllocation = "base:allocation";

std::span<const std::byte> as_bytes(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

// A name for an error message: error strings are bound by the spec's 4096-byte limit
// on strings ("Conventions"), and a person needs only the start of a long name.
std::string quoted(const std::string& name) {
  constexpr std::size_t kShown = 64;
  if (name.size() <= kShown) return "'" + name + "'";
  return "'" + name.substr(0, kShown) + "...' (" + std::to_string(name.size()) + " bytes)";
}

}  // namespace

Handshake::Handshake(net::Socket& socket, const storage::VolumeRegistry& volumes,
                     AdmissionPolicy& admission, ClientInfo client)
    : socket_(socket), volumes_(volumes), admission_(admission), client_(std::move(client)) {}

Handshake::Next Handshake::close(std::string why) {
  failure_ = std::move(why);
  return Next::kClose;
}

asio::awaitable<std::optional<Negotiated>> Handshake::run() {
  if (!co_await greet()) co_return std::nullopt;
  for (;;) {
    std::array<std::byte, wire::kOptionHeaderSize> header;
    auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(header), net::use_nothrow);
    if (ec) {
      failure_ = "client left during option haggling";
      co_return std::nullopt;
    }
    const auto option = wire::decode_option(header);
    if (!option) {
      failure_ = "bad option magic";
      co_return std::nullopt;
    }
    // "Termination of the session during option haggling": a length we refuse to
    // buffer is a denial of service, not something to skip over.
    if (option->length > kMaxOptionLength) {
      failure_ = "option data of " + std::to_string(option->length) + " bytes is too long";
      co_return std::nullopt;
    }
    std::vector<std::byte> data(option->length);
    if (!data.empty()) {
      auto [ec2, n2] = co_await asio::async_read(socket_, asio::buffer(data), net::use_nothrow);
      if (ec2) {
        failure_ = "client left inside option data";
        co_return std::nullopt;
      }
    }
    const Next next = co_await handle_option(option->option, std::move(data));
    if (next == Next::kClose) co_return std::nullopt;
    if (next == Next::kTransmit) co_return std::move(negotiated_);
  }
}

// "Newstyle negotiation": NBDMAGIC, IHAVEOPT, handshake flags; then the client flags.
asio::awaitable<bool> Handshake::greet() {
  ByteWriter out;
  out.u64(wire::kNbdMagic);
  out.u64(wire::kOptionMagic);
  out.u16(wire::kFlagFixedNewstyle | wire::kFlagNoZeroes);
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(out.buffer()), net::use_nothrow);
  if (ec) {
    failure_ = "client left before the greeting was sent";
    co_return false;
  }
  std::array<std::byte, 4> flags_bytes;
  auto [ec2, n2] = co_await asio::async_read(socket_, asio::buffer(flags_bytes), net::use_nothrow);
  if (ec2) {
    failure_ = "client left before sending its flags";
    co_return false;
  }
  const std::uint32_t flags = wire::load_u32(flags_bytes.data());
  // "Client flags": a server that does not know a flag the client set MUST close.
  if ((flags & ~wire::kKnownClientFlags) != 0) {
    failure_ = "unknown client flags";
    co_return false;
  }
  fixed_newstyle_ = (flags & wire::kClientFlagFixedNewstyle) != 0;
  no_zeroes_ = (flags & wire::kClientFlagNoZeroes) != 0;
  co_return true;
}

asio::awaitable<Handshake::Next> Handshake::handle_option(std::uint32_t option,
                                                         std::vector<std::byte> data) {
  // Without fixed newstyle the client cannot understand option replies: only
  // EXPORT_NAME is valid ("Newstyle negotiation").
  if (!fixed_newstyle_ && option != static_cast<std::uint32_t>(Option::kExportName))
    co_return close("option " + std::to_string(option) + " without fixed newstyle");

  switch (static_cast<Option>(option)) {
    case Option::kExportName: co_return co_await handle_export_name(std::move(data));
    case Option::kAbort:
      // "The server MUST reply with NBD_REP_ACK"; the client may not wait for it.
      co_await reply(option, wire::kRepAck);
      co_return close("client aborted the handshake");
    case Option::kList: co_return co_await handle_list(option, data);
    case Option::kStartTls:
      // "NOTLS mode": the server MUST reply NBD_REP_ERR_UNSUP.
      co_return co_await refuse(option, wire::kRepErrUnsup, "TLS is not supported by this server");
    case Option::kInfo:
    case Option::kGo: co_return co_await handle_info_or_go(option, data);
    case Option::kStructuredReply: co_return co_await handle_structured_reply(option, data);
    case Option::kListMetaContext:
    case Option::kSetMetaContext: co_return co_await handle_meta_context(option, data);
    case Option::kPeekExport: break;
  }
  co_return co_await refuse(option, wire::kRepErrUnsup,
                            "option " + std::to_string(option) + " is not supported");
}

ExportTarget Handshake::resolve(const std::string& export_name) const {
  ExportTarget target;
  std::string error;
  auto request = lease::ExportRequest::parse(export_name, error);
  if (!request) {
    target.error = error;
    target.error_reply = wire::kRepErrInvalid;
    return target;
  }
  target.request = std::move(*request);
  target.volume = volumes_.find(target.request.volume);
  if (!target.volume) {
    target.error = "no volume named " + quoted(target.request.volume);
    target.error_reply = wire::kRepErrUnknown;
  }
  return target;
}

SessionTerms Handshake::terms_for(const storage::Volume& volume, bool block_size_negotiated, bool read_only) const {
  SessionTerms terms;
  terms.size = volume.size();
  terms.read_only = read_only;
  terms.structured_replies = structured_replies_;
  terms.transmission_flags = transmission_flags(terms.read_only, structured_replies_);
  terms.base_allocation = structured_replies_ && meta_context_volume_ == volume.name();
  terms.block_size_negotiated = block_size_negotiated;
  return terms;
}

// NBD_OPT_EXPORT_NAME: cannot report errors, so every failure closes the connection.
asio::awaitable<Handshake::Next> Handshake::handle_export_name(std::vector<std::byte> data) {
  if (data.size() > wire::kMaxStringLength) co_return close("export name longer than 4096 bytes");
  const std::string name(reinterpret_cast<const char*>(data.data()), data.size());
  ExportTarget target = resolve(name);
  if (!target.volume) co_return close("EXPORT_NAME: " + target.error);
  auto volume = std::move(target.volume);
  client_.export_name = name;
  // The client cannot be told why (EXPORT_NAME has no error reply): the log says it.
  Admission admission = admission_.admit(*volume, target.request, client_);
  if (admission.refusal) co_return close("refused by policy: " + *admission.refusal);

  const SessionTerms terms = terms_for(*volume, false, admission.read_only);
  ByteWriter out;
  out.u64(terms.size);
  out.u16(terms.transmission_flags);
  if (!no_zeroes_) out.buffer().resize(out.buffer().size() + 124);  // reserved zeroes
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(out.buffer()), net::use_nothrow);
  if (ec) co_return close("client left before transmission");
  negotiated_ = Negotiated{std::move(volume), terms, name, std::move(admission.ticket)};
  co_return Next::kTransmit;
}

// NBD_OPT_LIST: one NBD_REP_SERVER per volume, then ACK.
asio::awaitable<Handshake::Next> Handshake::handle_list(std::uint32_t option,
                                                       const std::vector<std::byte>& data) {
  if (!data.empty())
    co_return co_await refuse(option, wire::kRepErrInvalid, "NBD_OPT_LIST takes no data");
  for (const auto& volume : volumes_.list()) {
    ByteWriter out;
    out.u32(static_cast<std::uint32_t>(volume->name().size()));
    out.bytes(volume->name());
    out.bytes(volume->description());
    if (!co_await reply(option, wire::kRepServer, as_bytes(out.buffer())))
      co_return close("client left during LIST");
  }
  co_return co_await reply(option, wire::kRepAck) ? Next::kContinue : close("client left during LIST");
}

// NBD_OPT_INFO and NBD_OPT_GO share one request and reply format; GO then enters
// transmission. The same request gets the same information from both.
asio::awaitable<Handshake::Next> Handshake::handle_info_or_go(std::uint32_t option,
                                                             const std::vector<std::byte>& data) {
  ByteReader in(as_bytes(data));
  const auto name_length = in.u32();
  // "32 bits, length of name (unsigned); MUST be no larger than the option data length - 6"
  if (!name_length || *name_length > data.size() - std::min<std::size_t>(data.size(), 6) ||
      data.size() < 6)
    co_return co_await refuse(option, wire::kRepErrInvalid, "name length does not fit the option");
  const auto name = in.string(*name_length);
  const auto count = in.u16();
  if (!name || !count || in.remaining() != std::size_t{*count} * 2)
    co_return co_await refuse(option, wire::kRepErrInvalid,
                              "information request count does not match the option length");
  if (name->size() > wire::kMaxStringLength)
    co_return co_await refuse(option, wire::kRepErrInvalid, "export name longer than 4096 bytes");
  bool want_name = false, want_description = false, want_block_size = false;
  for (std::uint16_t i = 0; i < *count; ++i) {
    switch (*in.u16()) {
      case wire::kInfoName: want_name = true; break;
      case wire::kInfoDescription: want_description = true; break;
      case wire::kInfoBlockSize: want_block_size = true; break;
      default: break;  // "The server MUST ignore information requests it does not understand."
    }
  }

  ExportTarget target = resolve(*name);
  if (!target.volume) co_return co_await refuse(option, target.error_reply, target.error);
  auto volume = std::move(target.volume);
  client_.export_name = *name;
  // INFO answers as GO would, without taking a lease (DESIGN.md §2: identical answers).
  Admission admission;
  if (option == static_cast<std::uint32_t>(Option::kGo)) {
    admission = admission_.admit(*volume, target.request, client_);
  } else {
    admission.refusal = admission_.probe(*volume, target.request, client_, admission.read_only);
  }
  if (admission.refusal) co_return co_await refuse(option, wire::kRepErrPolicy, *admission.refusal);

  const SessionTerms terms = terms_for(*volume, want_block_size, admission.read_only);
  std::vector<ByteWriter> infos(1);
  infos[0].u16(wire::kInfoExport);
  infos[0].u64(terms.size);
  infos[0].u16(terms.transmission_flags);
  if (want_name) {
    infos.emplace_back().u16(wire::kInfoName);
    infos.back().bytes(volume->name());
  }
  if (want_description && !volume->description().empty()) {
    infos.emplace_back().u16(wire::kInfoDescription);
    infos.back().bytes(volume->description());
  }
  // Sent whether or not requested (a hint the client may ignore); only a client
  // that requested it is held to it (SessionTerms::block_size_negotiated).
  infos.emplace_back().u16(wire::kInfoBlockSize);
  infos.back().u32(wire::kMinBlockSize);
  infos.back().u32(wire::kPreferredBlockSize);
  infos.back().u32(wire::kMaxPayload);
  for (auto& info : infos) {
    if (!co_await reply(option, wire::kRepInfo, as_bytes(info.buffer())))
      co_return close("client left during INFO/GO");
  }
  if (!co_await reply(option, wire::kRepAck)) co_return close("client left during INFO/GO");
  if (option == static_cast<std::uint32_t>(Option::kInfo)) co_return Next::kContinue;
  negotiated_ = Negotiated{std::move(volume), terms, *name, std::move(admission.ticket)};
  co_return Next::kTransmit;
}

asio::awaitable<Handshake::Next> Handshake::handle_structured_reply(
    std::uint32_t option, const std::vector<std::byte>& data) {
  if (!data.empty())
    co_return co_await refuse(option, wire::kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
  structured_replies_ = true;
  co_return co_await reply(option, wire::kRepAck) ? Next::kContinue
                                                  : close("client left during STRUCTURED_REPLY");
}

// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT ("Metadata querying"). blockd
// offers one context, base:allocation.
asio::awaitable<Handshake::Next> Handshake::handle_meta_context(std::uint32_t option,
                                                               const std::vector<std::byte>& data) {
  const bool set = option == static_cast<std::uint32_t>(Option::kSetMetaContext);
  // "Issuing this command replaces all previously-set metadata contexts (including
  // when this command fails)".
  if (set) meta_context_volume_.clear();
  if (!structured_replies_)
    co_return co_await refuse(option, wire::kRepErrInvalid,
                              "negotiate NBD_OPT_STRUCTURED_REPLY before meta contexts");
  ByteReader in(as_bytes(data));
  const auto name_length = in.u32();
  const auto name = name_length ? in.string(*name_length) : std::nullopt;
  const auto count = in.u32();
  if (!name || !count)
    co_return co_await refuse(option, wire::kRepErrInvalid, "malformed meta context request");
  if (name->size() > wire::kMaxStringLength)
    co_return co_await refuse(option, wire::kRepErrInvalid, "export name longer than 4096 bytes");
  bool matched = *count == 0 && !set;  // LIST with no query: everything available
  for (std::uint32_t i = 0; i < *count; ++i) {
    const auto query_length = in.u32();
    const auto query = query_length ? in.string(*query_length) : std::nullopt;
    if (!query)
      co_return co_await refuse(option, wire::kRepErrInvalid,
                                "meta context query length runs past the option");
    if (*query == kBaseAllocation || (!set && *query == "base:")) matched = true;
    // Other namespaces are ignored, as the spec demands.
  }
  if (in.remaining() != 0)
    co_return co_await refuse(option, wire::kRepErrInvalid, "trailing bytes after the queries");
  ExportTarget target = resolve(*name);
  if (!target.volume) co_return co_await refuse(option, target.error_reply, target.error);
  auto volume = std::move(target.volume);

  if (matched) {
    ByteWriter out;
    // "The metadata context ID in these replies is reserved and SHOULD be set to zero"
    // for LIST; SET hands out the ID used in block status replies.
    out.u32(set ? kBaseAllocationContextId : 0);
    out.bytes(kBaseAllocation);
    if (!co_await reply(option, wire::kRepMetaContext, as_bytes(out.buffer())))
      co_return close("client left during meta context negotiation");
    if (set) meta_context_volume_ = volume->name();
  }
  co_return co_await reply(option, wire::kRepAck) ? Next::kContinue
                                                  : close("client left during meta context negotiation");
}

asio::awaitable<bool> Handshake::reply(std::uint32_t option, std::uint32_t type,
                                       std::span<const std::byte> payload) {
  std::array<std::byte, wire::kOptionReplyHeaderSize> header;
  wire::encode_option_reply(header, option, type, static_cast<std::uint32_t>(payload.size()));
  const std::array<asio::const_buffer, 2> buffers = {asio::buffer(header),
                                                     asio::buffer(payload.data(), payload.size())};
  auto [ec, n] = co_await asio::async_write(socket_, buffers, net::use_nothrow);
  co_return !ec;
}

asio::awaitable<Handshake::Next> Handshake::refuse(std::uint32_t option, std::uint32_t error,
                                                  const std::string& message) {
  common::logger("nbd")->debug("option refused peer={} option={} error={:#x} message=\"{}\"",
                               client_.peer, option, error, message);
  const auto* p = reinterpret_cast<const std::byte*>(message.data());
  const std::size_t length = std::min<std::size_t>(message.size(), wire::kMaxStringLength);
  if (!co_await reply(option, error, {p, length})) co_return close("client left");
  co_return Next::kContinue;
}

}  // namespace blockd::server::nbd
