// The client side of the NBD handshake (nbd-proto.md "Fixed newstyle negotiation",
// "Option types"), as free functions over a connected socket so that `blockctl attach`
// can negotiate with NBD_OPT_GO and then hand the very same descriptor to the kernel,
// and NbdClient can keep it for its own transmission phase.
// Blocking; the calling thread owns the descriptor for the duration of the call.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "client/nbd_address.h"
#include "common/nbd_protocol.h"
#include "common/unique_fd.h"

namespace blockd::client {

struct NegotiateOptions {
  // Ask for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO. The spec ("Size constraints") then holds
  // the client to the constraints it receives, which NbdClient obeys.
  bool request_block_size = true;
  // NBD_OPT_STRUCTURED_REPLY. The kernel's driver does not speak structured replies, so
  // attach leaves this off.
  bool structured_replies = false;
  // NBD_OPT_SET_META_CONTEXT "base:allocation", for NBD_CMD_BLOCK_STATUS. Needs
  // structured replies; silently unavailable when the server has neither.
  bool base_allocation = false;
};

struct ExportInfo {
  std::string name;  // the name asked for (or the server's canonical one, NBD_INFO_NAME)
  std::string description;
  std::uint64_t size = 0;
  std::uint16_t transmission_flags = 0;
  // The spec's defaults ("Size constraints") unless the server sent NBD_INFO_BLOCK_SIZE.
  std::uint32_t min_block = 1;
  std::uint32_t preferred_block = 4096;
  std::uint32_t max_payload = 32U << 20;
  bool block_size_advertised = false;
  bool structured_replies = false;
  std::optional<std::uint32_t> base_allocation_id;  // set when the context was selected

  bool has(std::uint16_t flag) const { return (transmission_flags & flag) != 0; }
  bool read_only() const { return has(common::nbd::kFlagReadOnly); }
};

// Connects to `address` (TCP with TCP_NODELAY, or a Unix socket). A non-zero `timeout`
// bounds every later blocking read and write on the socket (SO_RCVTIMEO/SO_SNDTIMEO);
// leave it zero for a socket the kernel will own. Throws NbdError with the address.
common::UniqueFd nbd_connect(const NbdAddress& address, std::chrono::seconds timeout);

// Runs the fixed newstyle handshake up to and including a successful NBD_OPT_GO for
// `export_name`; on return `fd` is in the transmission phase. Throws NbdError saying
// what the server refused and its own message.
ExportInfo nbd_negotiate(int fd, std::string_view export_name, const NegotiateOptions& options);

// "NBD_REP_ERR_UNKNOWN (export not known)" and so on, for messages.
std::string describe_option_reply(std::uint32_t reply_type);

}  // namespace blockd::client
