// FakeNbdServer: a small in-memory NBD server on one end of a socketpair, run on its own
// thread, so the client's handshake and transmission can be tested without blockd.
// It speaks fixed newstyle with GO, STRUCTURED_REPLY and SET_META_CONTEXT
// base:allocation (each can be switched off), answers READ/WRITE/WRITE_ZEROES/FLUSH/
// BLOCK_STATUS/DISC, and records every option and request it saw.
// Thread affinity: configure before start(); read `seen` after join().
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/nbd_protocol.h"
#include "common/nbd_wire.h"
#include "common/unique_fd.h"

namespace blockd::test {

namespace nbd = common::nbd;

struct SeenRequest {
  std::uint16_t flags = 0;
  std::uint16_t type = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};

class FakeNbdServer {
 public:
  struct Config {
    std::string export_name = "disk";
    std::uint64_t size = 4 << 20;
    std::uint16_t transmission_flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendWriteZeroes |
                                       nbd::kFlagSendFua | nbd::kFlagCanMultiConn;
    bool structured = true;
    bool meta_context = true;
    bool send_block_size = true;
    std::uint32_t min_block = 512;
    std::uint32_t max_payload = 32U << 20;
    std::optional<std::uint32_t> go_error;  // refuse GO with this NBD_REP_ERR_*
    std::string go_error_message;
    std::uint32_t fail_writes_at = UINT32_MAX;  // WRITE at this offset gets EIO
    std::uint32_t granule = 64 << 10;           // block status granularity
    bool ack_zeroes_without_zeroing = false;    // a broken server, for verification tests
  };

  explicit FakeNbdServer(Config config) : config_(std::move(config)), data_(config_.size) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
    client_.reset(fds[0]);
    server_.reset(fds[1]);
  }
  ~FakeNbdServer() { join(); }

  // The client's end; take it once.
  common::UniqueFd take_client() { return std::move(client_); }
  void start() {
    thread_ = std::thread([this] {
      try {
        serve();
      } catch (...) {
      }
      server_.reset();
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  std::vector<std::byte>& data() { return data_; }
  std::vector<std::uint32_t> options_seen;
  std::vector<SeenRequest> seen;
  std::vector<std::uint16_t> info_requests;
  std::uint32_t client_flags = 0;

 private:
  bool read_all(void* p, std::size_t n) {
    auto* b = static_cast<char*>(p);
    while (n > 0) {
      const ssize_t r = ::recv(server_.get(), b, n, 0);
      if (r <= 0) return false;
      b += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  void write_bytes(const std::vector<std::byte>& v) { write_raw(v.data(), v.size()); }
  void write_raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t r = ::send(server_.get(), b, n, MSG_NOSIGNAL);
      if (r <= 0) throw std::runtime_error("send");
      b += r;
      n -= static_cast<std::size_t>(r);
    }
  }
  void option_reply(std::uint32_t option, std::uint32_t type, const std::vector<std::byte>& payload) {
    nbd::ByteWriter w;
    w.u64(nbd::kOptionReplyMagic);
    w.u32(option);
    w.u32(type);
    w.u32(static_cast<std::uint32_t>(payload.size()));
    write_bytes(w.buffer());
    write_bytes(payload);
  }

  void serve() {
    nbd::ByteWriter hello;
    hello.u64(nbd::kNbdMagic);
    hello.u64(nbd::kOptionMagic);
    hello.u16(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
    write_bytes(hello.buffer());
    std::byte flags[4];
    if (!read_all(flags, 4)) return;
    client_flags = nbd::load_u32(flags);
    for (;;) {
      std::byte header[16];
      if (!read_all(header, 16)) return;
      const std::uint32_t option = nbd::load_u32(header + 8);
      const std::uint32_t length = nbd::load_u32(header + 12);
      std::vector<std::byte> body(length);
      if (length > 0 && !read_all(body.data(), length)) return;
      options_seen.push_back(option);
      if (option == static_cast<std::uint32_t>(nbd::Option::kStructuredReply)) {
        if (config_.structured) {
          structured_ = true;
          option_reply(option, nbd::kRepAck, {});
        } else {
          option_reply(option, nbd::kRepErrUnsup, {});
        }
      } else if (option == static_cast<std::uint32_t>(nbd::Option::kSetMetaContext)) {
        if (!config_.meta_context || !structured_) {
          option_reply(option, nbd::kRepErrUnsup, {});
          continue;
        }
        nbd::ByteWriter w;
        w.u32(kContextId);
        w.bytes("base:allocation");
        option_reply(option, nbd::kRepMetaContext, w.take());
        option_reply(option, nbd::kRepAck, {});
        meta_ = true;
      } else if (option == static_cast<std::uint32_t>(nbd::Option::kGo)) {
        nbd::ByteReader r(body);
        const auto name_length = r.u32().value_or(0);
        const std::string name = r.string(name_length).value_or("");
        const auto count = r.u16().value_or(0);
        for (unsigned i = 0; i < count; ++i) info_requests.push_back(r.u16().value_or(0xffff));
        if (config_.go_error) {
          std::vector<std::byte> message(config_.go_error_message.size());
          std::memcpy(message.data(), config_.go_error_message.data(), message.size());
          option_reply(option, *config_.go_error, message);
          continue;
        }
        if (name != config_.export_name) {
          option_reply(option, nbd::kRepErrUnknown, {});
          continue;
        }
        nbd::ByteWriter info;
        info.u16(nbd::kInfoExport);
        info.u64(config_.size);
        info.u16(config_.transmission_flags);
        option_reply(option, nbd::kRepInfo, info.take());
        if (config_.send_block_size) {
          nbd::ByteWriter bs;
          bs.u16(nbd::kInfoBlockSize);
          bs.u32(config_.min_block);
          bs.u32(4096);
          bs.u32(config_.max_payload);
          option_reply(option, nbd::kRepInfo, bs.take());
        }
        option_reply(option, nbd::kRepAck, {});
        transmission();
        return;
      } else {
        option_reply(option, nbd::kRepErrUnsup, {});
      }
    }
  }

  void simple_reply(std::uint64_t cookie, std::uint32_t error, const std::byte* data, std::size_t n) {
    nbd::ByteWriter w;
    w.u32(nbd::kSimpleReplyMagic);
    w.u32(error);
    w.u64(cookie);
    write_bytes(w.buffer());
    if (n > 0) write_raw(data, n);
  }

  void chunk(std::uint64_t cookie, std::uint16_t flags, std::uint16_t type, const std::vector<std::byte>& payload) {
    nbd::ByteWriter w;
    w.u32(nbd::kStructuredReplyMagic);
    w.u16(flags);
    w.u16(type);
    w.u64(cookie);
    w.u32(static_cast<std::uint32_t>(payload.size()));
    write_bytes(w.buffer());
    write_bytes(payload);
  }

  bool granule_zero(std::uint64_t at, std::uint64_t n) const {
    for (std::uint64_t i = at; i < at + n; ++i)
      if (data_[i] != std::byte{0}) return false;
    return true;
  }

  void block_status(std::uint64_t cookie, std::uint64_t offset, std::uint32_t length) {
    nbd::ByteWriter w;
    w.u32(kContextId);
    std::uint64_t at = offset;
    const std::uint64_t end = offset + length;
    while (at < end) {
      const std::uint64_t granule_end = std::min<std::uint64_t>((at / config_.granule + 1) * config_.granule, config_.size);
      const bool zero = granule_zero(at, granule_end - at);
      w.u32(static_cast<std::uint32_t>(granule_end - at));
      w.u32(zero ? (nbd::kStateHole | nbd::kStateZero) : 0);
      at = granule_end;
    }
    chunk(cookie, nbd::kReplyFlagDone, nbd::kReplyTypeBlockStatus, w.take());
  }

  void transmission() {
    for (;;) {
      std::byte header[28];
      if (!read_all(header, 28)) return;
      const auto req = nbd::decode_request(std::span<const std::byte, 28>(header, 28));
      if (!req) return;
      seen.push_back(SeenRequest{req->flags, req->type, req->offset, req->length});
      const auto type = static_cast<nbd::Command>(req->type);
      switch (type) {
        case nbd::Command::kDisc:
          return;
        case nbd::Command::kWrite: {
          std::vector<std::byte> payload(req->length);
          if (!read_all(payload.data(), payload.size())) return;
          if (req->offset == config_.fail_writes_at) {
            if (structured_) {
              nbd::ByteWriter e;
              e.u32(5);
              e.u16(9);
              e.bytes("disk full");
              chunk(req->cookie, nbd::kReplyFlagDone, nbd::kReplyTypeError, e.take());
            } else {
              simple_reply(req->cookie, 5, nullptr, 0);
            }
            break;
          }
          std::memcpy(data_.data() + req->offset, payload.data(), payload.size());
          simple_reply(req->cookie, 0, nullptr, 0);
          break;
        }
        case nbd::Command::kWriteZeroes:
          if (!config_.ack_zeroes_without_zeroing) std::memset(data_.data() + req->offset, 0, req->length);
          simple_reply(req->cookie, 0, nullptr, 0);
          break;
        case nbd::Command::kFlush:
          simple_reply(req->cookie, 0, nullptr, 0);
          break;
        case nbd::Command::kRead:
          if (structured_) {
            // Two chunks, the second half first: a client must place data by offset.
            const std::uint32_t half = req->length / 2;
            auto data_chunk = [&](std::uint64_t off, std::uint32_t n, std::uint16_t flags) {
              nbd::ByteWriter w;
              w.u64(off);
              std::vector<std::byte> payload = w.take();
              payload.insert(payload.end(), data_.begin() + static_cast<std::ptrdiff_t>(off),
                             data_.begin() + static_cast<std::ptrdiff_t>(off + n));
              chunk(req->cookie, flags, nbd::kReplyTypeOffsetData, payload);
            };
            if (half > 0) data_chunk(req->offset + half, req->length - half, 0);
            if (half > 0 && granule_zero(req->offset, half)) {
              nbd::ByteWriter hole;
              hole.u64(req->offset);
              hole.u32(half);
              chunk(req->cookie, nbd::kReplyFlagDone, nbd::kReplyTypeOffsetHole, hole.take());
            } else if (half > 0) {
              data_chunk(req->offset, half, nbd::kReplyFlagDone);
            } else {
              data_chunk(req->offset, req->length, nbd::kReplyFlagDone);
            }
          } else {
            simple_reply(req->cookie, 0, data_.data() + req->offset, req->length);
          }
          break;
        case nbd::Command::kBlockStatus:
          block_status(req->cookie, req->offset, req->length);
          break;
        default:
          simple_reply(req->cookie, 22, nullptr, 0);
      }
    }
  }

  static constexpr std::uint32_t kContextId = 7;
  Config config_;
  std::vector<std::byte> data_;
  common::UniqueFd client_;
  common::UniqueFd server_;
  std::thread thread_;
  bool structured_ = false;
  bool meta_ = false;
};

}  // namespace blockd::test
