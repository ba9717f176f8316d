#include "server/net/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common/logging.h"
#include "server/nbd/handshake.h"
#include "server/nbd/session.h"
#include "server/worker.h"

namespace blockd::server::net {

Connection::Connection(Socket socket, Worker& worker, Services services)
    : socket_(std::move(socket)),
      worker_(worker),
      services_(services),
      handshake_timer_(socket_.get_executor()) {}

asio::awaitable<void> Connection::serve(std::shared_ptr<Connection> self) {
  self->worker_.track(self);
  co_await self->run();
  self->close();
  // Only now, with nothing left that could write to it (the ReplyWriter sends through
  // io_uring by descriptor number), may the number go back to the kernel for reuse.
  boost::system::error_code ignored;
  self->socket_.close(ignored);
  self->worker_.forget(self.get());
}

void Connection::set_socket_options() {
  boost::system::error_code ec;
  peer_ = format_endpoint(socket_.remote_endpoint(ec));
  if (ec) peer_ = "unknown";
  const int family = socket_.local_endpoint(ec).data()->sa_family;
  if (!ec && (family == AF_INET || family == AF_INET6)) {
    // Replies are gathered by the ReplyWriter; Nagle would only add latency.
    int one = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

void Connection::arm_handshake_timer() {
  handshake_timer_.expires_after(services_.handshake_timeout);
  handshake_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->handshaking_) return;
    common::logger("server")->info("handshake timed out peer={} timeout_ms={}", self->peer_,
                                   self->services_.handshake_timeout.count());
    self->close();
  });
}

asio::awaitable<void> Connection::run() {
  set_socket_options();
  auto log = common::logger("server");
  log->info("connection opened peer={} worker={}", peer_, worker_.index());
  arm_handshake_timer();

  nbd::ClientInfo client{peer_, ""};
  nbd::Handshake handshake(socket_, services_.volumes, services_.admission, client);
  auto negotiated = co_await handshake.run();
  handshaking_ = false;
  handshake_timer_.cancel();
  if (!negotiated) {
    log->info("connection closed peer={} phase=handshake reason=\"{}\"", peer_, handshake.failure());
    co_return;
  }

  storage::Volume& volume = *negotiated->volume;
  log->info("session started peer={} volume={} export=\"{}\" structured_replies={} "
            "base_allocation={} read_only={}",
            peer_, volume.name(), negotiated->export_name, negotiated->terms.structured_replies,
            negotiated->terms.base_allocation, negotiated->terms.read_only);
  volume.connection_opened();
  session_ = std::make_shared<nbd::Session>(socket_, std::move(*negotiated), worker_.ring(),
                                            worker_.buffers(), peer_, worker_.index());
  if (worker_.draining()) session_->begin_drain();
  const std::string reason = co_await nbd::Session::serve(session_);
  volume.connection_closed();
  session_->release_ticket();
  const auto& stats = session_->stats();
  log->info("connection closed peer={} volume={} requests={} bytes_read={} bytes_written={} "
            "errors={} reason=\"{}\"",
            peer_, volume.name(), stats.requests, stats.bytes_read, stats.bytes_written,
            stats.errors, reason);
}

void Connection::drain() {
  if (handshaking_) {
    close();
  } else if (session_) {
    session_->begin_drain();
  }
}

void Connection::close() {
  // Shut down and cancel, but keep the descriptor open until serve() ends: a reply
  // already handed to io_uring names it by number.
  boost::system::error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.cancel(ignored);
}

}  // namespace blockd::server::net
