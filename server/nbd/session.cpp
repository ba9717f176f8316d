#include "server/nbd/session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <cstring>

#include "common/logging.h"
#include "common/nbd_errno.h"
#include "server/nbd/request_validator.h"

namespace blockd::server::nbd {

namespace wire = common::nbd;
using wire::Command;
using wire::Error;

namespace {

// At most this many extents per BLOCK_STATUS reply (without REQ_ONE).
constexpr std::size_t kMaxExtents = 1024;

}  // namespace

Session::Session(net::Socket& socket, Negotiated negotiated, io::Ring& ring,
                 io::BufferPool& buffers, std::string peer, unsigned worker_index)
    : socket_(socket),
      volume_(std::move(negotiated.volume)),
      ticket_(std::move(negotiated.ticket)),
      counters_(volume_->metrics().worker(worker_index)),
      terms_(negotiated.terms),
      ring_(ring),
      buffers_(buffers),
      peer_(std::move(peer)),
      requests_(socket, ring),
      replies_(socket, ring),
      request_finished_(socket.get_executor()),
      linger_(socket.get_executor()) {}

asio::awaitable<std::string> Session::serve(std::shared_ptr<Session> self) {
  self->watch_fence();
  asio::co_spawn(self->socket_.get_executor(), write_replies(self), asio::detached);
  std::string reason = co_await self->read_requests();
  self->reading_ = false;
  while (self->in_flight_ > 0) co_await self->request_finished_.wait();
  self->replies_.finish();
  co_await self->replies_.wait_done();
  self->linger_.cancel();
  co_return reason;
}

asio::awaitable<void> Session::write_replies(std::shared_ptr<Session> self) {
  co_await self->replies_.run();
}

void Session::watch_fence() {
  if (!ticket_) return;
  // Runs on the thread that broke the lease, with no lock held: only post to this
  // session's worker. The weak pointer: the session may be gone by then.
  ticket_->on_fenced([weak = weak_from_this(), executor = socket_.get_executor()] {
    asio::post(executor, [weak] {
      if (auto self = weak.lock()) self->fence();
    });
  });
}

void Session::fence() {
#ifdef BLOCKD_TEST_SKIP_FENCE
  // The break is told the session is gone (so it returns at once) while the session
  // goes on writing: exactly the bug the fencing test's checker must catch.
  common::logger("nbd")->error("BLOCKD_TEST_SKIP_FENCE: NOT fencing session peer={} volume={}", peer_, volume_->name());
  ticket_.reset();
  return;
#endif
  if (fenced_) return;
  fenced_ = true;
  common::logger("nbd")->warn("lease broken: closing session peer={} volume={} holder={} generation={} in_flight={}",
                              peer_, volume_->name(), ticket_ ? ticket_->holder() : "",
                              ticket_ ? ticket_->generation() : 0, in_flight_);
  // Shut down, not only cancelled: the reader stops at once, and no reply can block on
  // a client that has stopped reading (a SIGSTOPped holder) — later sends fail at once.
  // serve() still waits for every request already started (the submitted writes among
  // them) before it returns and the ticket is released.
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.cancel(ignored);
}

void Session::begin_drain() {
  if (draining_) return;
  draining_ = true;
  asio::co_spawn(socket_.get_executor(), close_when_idle(shared_from_this()), asio::detached);
}

asio::awaitable<void> Session::close_when_idle(std::shared_ptr<Session> self) {
  // "On a server shutdown, the server SHOULD wait for inflight requests to be
  // serviced prior to initiating a hard disconnect" ("Terminating the transmission
  // phase"); requests arriving meanwhile get NBD_ESHUTDOWN.
  while (self->in_flight_ > 0) co_await self->request_finished_.wait();
  self->linger_.expires_after(kDrainLinger);
  co_await self->linger_.async_wait(net::use_nothrow);
  if (self->reading_) {
    // The reader sees operation_aborted, or the end of input if it was inside a write
    // payload (read by io_uring, which Asio's cancel does not reach), and closes.
    boost::system::error_code ignored;
    self->socket_.shutdown(asio::socket_base::shutdown_receive, ignored);
    self->socket_.cancel(ignored);
  }
}

asio::awaitable<std::string> Session::read_requests() {
  std::array<std::byte, wire::kRequestHeaderSize> header;
  for (;;) {
    while (in_flight_ >= kMaxInFlight || in_flight_bytes_ >= kMaxInFlightBytes)
      co_await request_finished_.wait();
    if (fenced_) co_return "lease broken";
    const auto ec = co_await requests_.read_exact(header.data(), header.size());
    if (ec && fenced_) co_return "lease broken";
    if (ec == asio::error::eof) co_return "client disconnected";
    if (ec == asio::error::operation_aborted) co_return draining_ ? "server shutdown" : "closed";
    if (ec) co_return "read error: " + ec.message();
    const auto request = wire::decode_request(header);
    if (!request) co_return "protocol violation: bad request magic";
    ++stats_.requests;

    io::Buffer payload;
    if (request->type == static_cast<std::uint16_t>(Command::kWrite)) {
      if (request->length > wire::kMaxPayload) {
        // Over the advertised maximum: drain it to stay in sync and refuse it, unless
        // it is large enough to be an attack ("Size constraints").
        if (request->length > kMaxDrainLength)
          co_return "protocol violation: write payload of " + std::to_string(request->length) +
              " bytes";
        if (co_await requests_.skip(request->length)) co_return "client left inside a write payload";
        reply_error(*request, Error::kInval, "write larger than the 32 MiB maximum payload");
        continue;
      }
      payload = buffers_.acquire(request->length);
      // Nothing of a partial payload is ever submitted to the disk.
      if (co_await requests_.read_exact(payload.data(), payload.size()))
        co_return "client left inside a write payload";
    }
    // "The client sends NBD_CMD_DISC whereupon the server MUST ... close the TCP
    // connection" once in-flight requests are answered (serve() waits for them).
    if (request->type == static_cast<std::uint16_t>(Command::kDisc)) co_return "client sent DISC";
    dispatch(*request, std::move(payload));
  }
}

std::size_t Session::cost(const RequestHeader& request) const {
  const auto command = static_cast<Command>(request.type);
  return (command == Command::kRead || command == Command::kWrite) ? request.length : 0;
}

void Session::dispatch(const RequestHeader& request, io::Buffer payload) {
  if (draining_) {
    reply_error(request, Error::kShutdown, "server is shutting down");
    return;
  }
  counters_.started.add();  // finished by record(), refused or run
  const Error verdict = validate_request(request, terms_);
  if (verdict != Error::kOk) {
    ++stats_.errors;
    common::logger("nbd")->debug("request refused peer={} volume={} command={} offset={} length={} "
                                 "flags={:#x} error={}",
                                 peer_, volume_->name(), request.type, request.offset,
                                 request.length, request.flags, wire::to_string(verdict));
    reply_error(request, verdict, "invalid request");
    record(request, verdict, std::chrono::nanoseconds(0));
    return;
  }
  ++in_flight_;
  in_flight_bytes_ += cost(request);
  asio::co_spawn(socket_.get_executor(), run_request(shared_from_this(), request, std::move(payload)),
                 asio::detached);
}

asio::awaitable<void> Session::run_request(std::shared_ptr<Session> self, RequestHeader request,
                                           io::Buffer payload) {
  const auto started = std::chrono::steady_clock::now();
  const Error outcome = co_await self->execute(request, std::move(payload));
  self->record(request, outcome, std::chrono::steady_clock::now() - started);
  --self->in_flight_;
  self->in_flight_bytes_ -= self->cost(request);
  self->request_finished_.notify_all();
}

asio::awaitable<Error> Session::execute(const RequestHeader& request, io::Buffer payload) {
  // Fencing (DESIGN.md §4; server/lease/README.md "Break"): checked in the same run of
  // the event loop as the submission below, with no co_await in between, so a request
  // that passes was submitted before the fence handler (posted to this worker) runs,
  // and the break waits for it; every later one gets an error, never success.
  if (fenced()) {
    ++stats_.errors;
    reply_error(request, Error::kPerm, "the lease on this volume was broken");
    co_return Error::kPerm;
  }
  const bool fua = (request.flags & wire::kCmdFlagFua) != 0;
  const std::uint64_t offset = request.offset;
  const std::uint64_t length = request.length;
  switch (static_cast<Command>(request.type)) {
    case Command::kRead: co_return co_await execute_read(request);
    case Command::kBlockStatus: co_return execute_block_status(request);
    case Command::kWrite: {
      auto result = co_await volume_->write(ring_, {payload.data(), payload.size()}, offset, fua);
      if (!result) co_return reply_failure(request, result.error(), "write");
      stats_.bytes_written += length;
      break;
    }
    case Command::kFlush: {
      auto result = co_await volume_->flush(ring_);
      if (!result) co_return reply_failure(request, result.error(), "flush");
      break;
    }
    case Command::kTrim: {
      if (length == 0) break;
      auto result = co_await volume_->trim(ring_, offset, length, fua);
      if (!result) co_return reply_failure(request, result.error(), "trim");
      break;
    }
    case Command::kWriteZeroes: {
      if (length == 0) break;
      const auto mode = (request.flags & wire::kCmdFlagNoHole) ? storage::ZeroMode::kNoHole
                                                               : storage::ZeroMode::kMayTrim;
      const bool fast_only = (request.flags & wire::kCmdFlagFastZero) != 0;
      auto result = co_await volume_->write_zeroes(ring_, offset, length, mode, fast_only, fua);
      if (!result) co_return reply_failure(request, result.error(), "write-zeroes");
      break;
    }
    case Command::kCache: {
      if (length == 0) break;
      auto result = co_await volume_->cache(ring_, offset, length);
      if (!result) co_return reply_failure(request, result.error(), "cache");
      break;
    }
    case Command::kDisc: break;  // handled by the reader
  }
  reply_ok(request);
  co_return Error::kOk;
}

asio::awaitable<Error> Session::execute_read(const RequestHeader& request) {
  io::Buffer data = buffers_.acquire(request.length);
  if (request.length > 0) {
    auto result = co_await volume_->read(ring_, data.span(), request.offset);
    if (!result) co_return reply_failure(request, result.error(), "read");
  }
  stats_.bytes_read += request.length;
  if (!terms_.structured_replies) {
    replies_.send(Reply::simple(request.cookie, Error::kOk, std::move(data)));
  } else if (request.length == 0) {
    replies_.send(Reply::none(request.cookie));
  } else {
    // One OFFSET_DATA chunk: valid with and without NBD_CMD_FLAG_DF.
    replies_.send(Reply::read_chunk(request.cookie, request.offset, std::move(data)));
  }
  co_return Error::kOk;
}

Error Session::execute_block_status(const RequestHeader& request) {
  // "If this flag [REQ_ONE] is present, the server MUST NOT send metadata on more
  // than one extent in the reply."
  const std::size_t max = (request.flags & wire::kCmdFlagReqOne) ? 1 : kMaxExtents;
  auto extents = volume_->extents(request.offset, request.length, max);
  if (!extents) return reply_failure(request, extents.error(), "block-status");
  replies_.send(Reply::block_status(request.cookie, kBaseAllocationContextId, extents.value()));
  return Error::kOk;
}

void Session::reply_ok(const RequestHeader& request) {
  replies_.send(Reply::simple(request.cookie, Error::kOk));
}

void Session::reply_error(const RequestHeader& request, Error error, std::string_view message) {
  const auto command = static_cast<Command>(request.type);
  // With structured replies negotiated, READ and BLOCK_STATUS answer in chunks, so
  // their errors are error chunks; other commands keep simple replies.
  if (terms_.structured_replies && (command == Command::kRead || command == Command::kBlockStatus)) {
    replies_.send(Reply::error_chunk(request.cookie, error, message));
  } else {
    replies_.send(Reply::simple(request.cookie, error));
  }
}

namespace {

std::optional<metrics::Op> op_of(std::uint16_t type) {
  switch (static_cast<Command>(type)) {
    case Command::kRead: return metrics::Op::kRead;
    case Command::kWrite: return metrics::Op::kWrite;
    case Command::kFlush: return metrics::Op::kFlush;
    case Command::kTrim: return metrics::Op::kTrim;
    case Command::kWriteZeroes: return metrics::Op::kWriteZeroes;
    case Command::kCache: return metrics::Op::kCache;
    case Command::kBlockStatus: return metrics::Op::kBlockStatus;
    case Command::kDisc: break;
  }
  return std::nullopt;
}

}  // namespace

void Session::record(const RequestHeader& request, Error outcome, std::chrono::nanoseconds latency) {
  const auto op = op_of(request.type);
  if (!op) {
    counters_.finished.add();  // an unknown command: counted as started, never as an op
    return;
  }
  const bool moves_data = *op == metrics::Op::kRead || *op == metrics::Op::kWrite;
  metrics::VolumeMetrics::record(counters_, *op, moves_data ? request.length : 0, latency, outcome);
}

Error Session::reply_failure(const RequestHeader& request, int err, const char* operation) {
  ++stats_.errors;
  const Error error = wire::error_from_errno(err);
  // The real errno is logged before it is narrowed to the spec's set (DESIGN.md §7).
  auto log = common::logger("nbd");
  const auto level = (error == Error::kNotSup) ? spdlog::level::debug : spdlog::level::err;
  log->log(level, "request failed peer={} volume={} op={} offset={} length={} errno=\"{}\" reply={}",
           peer_, volume_->name(), operation, request.offset, request.length, std::strerror(err),
           wire::to_string(error));
  reply_error(request, error, std::string(operation) + " failed: " + std::strerror(err));
  return error;
}

}  // namespace blockd::server::nbd
