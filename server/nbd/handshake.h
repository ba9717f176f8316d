// Handshake: the fixed newstyle negotiation of one connection (nbd-proto.md
// "Fixed newstyle negotiation", "Option types", "Option reply types").
//
// It answers every option the spec lists for blockd (DESIGN.md §2), keeps the stream in
// sync after any error it can answer, and ends in one of two ways: a Negotiated
// session (after GO or EXPORT_NAME) or nullopt, meaning the connection must close.
//
// Thread affinity: the connection's worker. Ownership: borrowed socket and registry.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/nbd_protocol.h"
#include "server/nbd/admission.h"
#include "server/nbd/session_terms.h"
#include "server/net/socket.h"
#include "server/storage/volume_registry.h"

namespace blockd::server::nbd {

namespace asio = boost::asio;

// Option data longer than this is not read: the connection is closed instead. Large
// enough for a GO with a 4096-byte name and every info request, or a meta-context
// request with many queries.
inline constexpr std::uint32_t kMaxOptionLength = 64 * 1024;

struct Negotiated {
  std::shared_ptr<storage::Volume> volume;
  SessionTerms terms;
  std::string export_name;
  // The session's lease (null without a lease policy); the session owns it.
  std::unique_ptr<lease::SessionTicket> ticket;
};

// An export name resolved: the volume it names and what else it asks for.
struct ExportTarget {
  std::shared_ptr<storage::Volume> volume;  // null: see `error`
  lease::ExportRequest request;
  std::string error;  // why there is no volume: a bad name, or none of that name
  std::uint32_t error_reply = 0;  // NBD_REP_ERR_INVALID (grammar) or NBD_REP_ERR_UNKNOWN
};

class Handshake {
 public:
  Handshake(net::Socket& socket, const storage::VolumeRegistry& volumes, AdmissionPolicy& admission,
            ClientInfo client);

  asio::awaitable<std::optional<Negotiated>> run();

  // Why the handshake ended without a session, for the connection's close log line.
  const std::string& failure() const { return failure_; }

 private:
  enum class Next { kContinue, kClose, kTransmit };

  asio::awaitable<bool> greet();
  asio::awaitable<Next> handle_option(std::uint32_t option, std::vector<std::byte> data);
  asio::awaitable<Next> handle_export_name(std::vector<std::byte> data);
  asio::awaitable<Next> handle_list(std::uint32_t option, const std::vector<std::byte>& data);
  asio::awaitable<Next> handle_info_or_go(std::uint32_t option, const std::vector<std::byte>& data);
  asio::awaitable<Next> handle_structured_reply(std::uint32_t option,
                                                const std::vector<std::byte>& data);
  asio::awaitable<Next> handle_meta_context(std::uint32_t option,
                                            const std::vector<std::byte>& data);

  // An option reply with a payload; false when the socket failed.
  asio::awaitable<bool> reply(std::uint32_t option, std::uint32_t type,
                              std::span<const std::byte> payload = {});
  // An error reply carrying a message for a person; returns kContinue or kClose.
  asio::awaitable<Next> refuse(std::uint32_t option, std::uint32_t error, const std::string& message);
  Next close(std::string why);

  // The export-name grammar (server/lease/README.md) and the volume lookup, shared by
  // INFO/GO, EXPORT_NAME and the meta-context options.
  ExportTarget resolve(const std::string& export_name) const;
  SessionTerms terms_for(const storage::Volume& volume, bool block_size_negotiated, bool read_only) const;

  net::Socket& socket_;
  const storage::VolumeRegistry& volumes_;
  AdmissionPolicy& admission_;
  ClientInfo client_;

  bool fixed_newstyle_ = false;
  bool no_zeroes_ = false;
  bool structured_replies_ = false;
  // The volume whose base:allocation context the last SET_META_CONTEXT selected, if any.
  std::string meta_context_volume_;
  std::optional<Negotiated> negotiated_;
  std::string failure_;
};

}  // namespace blockd::server::nbd
