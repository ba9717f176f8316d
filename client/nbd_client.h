// NbdClient: a synchronous userspace NBD client for one export (nbd-proto.md
// "Transmission"). Requests are pipelined: send_*() writes a request and returns its
// cookie without waiting, wait_one() reads replies until one request is complete and
// returns it, so a copy can keep many requests in flight (replies may arrive out of
// order, "Transmission"). The synchronous helpers (read(), write(), ...) need nothing
// else in flight.
//
// A per-request error reply is returned as a Completion, not thrown; anything that
// ends the session (socket error, protocol violation by the server) throws NbdError.
//
// Thread affinity: one thread at a time; the instance owns its socket and every buffer
// passed to send_read()/send_write() must stay alive until that cookie completes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "client/nbd_address.h"
#include "client/nbd_handshake.h"
#include "common/unique_fd.h"

namespace blockd::client {

// One base:allocation extent ("base:allocation metadata context").
struct Extent {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint32_t flags = 0;  // NBD_STATE_HOLE | NBD_STATE_ZERO

  bool zero() const { return (flags & common::nbd::kStateZero) != 0; }
  bool hole() const { return (flags & common::nbd::kStateHole) != 0; }
};

struct Completion {
  std::uint64_t cookie = 0;
  std::uint32_t error = 0;  // an NBD error value ("Error values"); 0 on success
  std::string message;      // the server's text, from a structured error chunk
  bool ok() const { return error == 0; }
};

class NbdClient {
 public:
  // Connects and negotiates; `timeout` bounds each blocking socket operation.
  static NbdClient open(const NbdAddress& address, const NegotiateOptions& options,
                        std::chrono::seconds timeout = std::chrono::seconds(60));
  // Takes over a socket already in the transmission phase.
  NbdClient(common::UniqueFd fd, ExportInfo info);
  NbdClient(NbdClient&&) = default;
  NbdClient& operator=(NbdClient&&) = default;
  // Sends NBD_CMD_DISC if still connected (best effort, errors ignored).
  ~NbdClient();

  const ExportInfo& info() const { return info_; }
  std::size_t in_flight() const { return pending_.size(); }

  std::uint64_t send_read(std::uint64_t offset, std::span<std::byte> into);
  std::uint64_t send_write(std::uint64_t offset, std::span<const std::byte> data,
                           std::uint16_t flags = 0);
  std::uint64_t send_write_zeroes(std::uint64_t offset, std::uint32_t length,
                                  std::uint16_t flags = 0);
  std::uint64_t send_flush();
  // Extents of base:allocation are appended to `out`, which must outlive the reply.
  std::uint64_t send_block_status(std::uint64_t offset, std::uint32_t length,
                                  std::vector<Extent>* out);

  // Blocks until a request completes.
  Completion wait_one();

  // Synchronous helpers: throw NbdError on an error reply (with offset and errno name).
  void read(std::uint64_t offset, std::span<std::byte> into);
  void write(std::uint64_t offset, std::span<const std::byte> data);
  void write_zeroes(std::uint64_t offset, std::uint32_t length);
  void flush();
  // At least one extent, starting at `offset` (the server may describe less than asked).
  std::vector<Extent> block_status(std::uint64_t offset, std::uint32_t length);

  // NBD_CMD_DISC ("Terminating the transmission phase": soft disconnect), then close.
  void disconnect();

 private:
  struct Pending {
    std::uint16_t command = 0;
    std::uint64_t offset = 0;
    std::uint32_t length = 0;
    std::byte* buffer = nullptr;       // READ
    std::vector<Extent>* extents = nullptr;  // BLOCK_STATUS
    std::uint64_t extent_end = 0;      // BLOCK_STATUS: where the next extent starts
    std::uint64_t covered = 0;         // READ: bytes described by content chunks
    std::uint32_t error = 0;
    std::string message;
  };

  std::uint64_t send(std::uint16_t command, std::uint16_t flags, std::uint64_t offset,
                     std::uint32_t length, std::span<const std::byte> payload, Pending pending);
  void check_range(const char* what, std::uint64_t offset, std::uint64_t length, bool payload) const;
  // Reads one reply message (simple, or one structured chunk). True when it finished
  // the request whose cookie it stores in `cookie`.
  bool read_reply(std::uint64_t& cookie);
  void read_structured_chunk(std::uint64_t cookie, Pending& p, std::uint16_t type,
                             std::uint32_t length);
  Completion wait_for(std::uint64_t cookie, const char* what);

  common::UniqueFd fd_;
  ExportInfo info_;
  std::uint64_t next_cookie_ = 1;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::vector<std::byte> scratch_;
};

// "EIO (input/output error)" for an NBD error value.
std::string describe_nbd_error(std::uint32_t error);

}  // namespace blockd::client
