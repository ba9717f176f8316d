#include "server/net/listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <stdexcept>

namespace blockd::server::net {

namespace {

Endpoint endpoint_for(const ListenAddress& address) {
  if (address.kind == ListenAddress::Kind::kUnix)
    return Endpoint(asio::local::stream_protocol::endpoint(address.path));
  return Endpoint(asio::ip::tcp::endpoint(asio::ip::make_address(address.host), address.port));
}

}  // namespace

Listener::Listener(asio::io_context& context, const ListenAddress& address) : acceptor_(context) {
  const Endpoint endpoint = endpoint_for(address);
  boost::system::error_code ec;
  auto fail = [&](const char* step) {
    throw std::runtime_error("cannot listen on " + to_string(address) + ": " + step + ": " + ec.message());
  };
  if (address.kind == ListenAddress::Kind::kUnix) {
    // A socket file left by a previous run would make bind fail; only a socket is removed.
    struct stat st {};
    if (::lstat(address.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(address.path.c_str());
    unix_path_ = address.path;
  }
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) fail("socket");
  if (address.kind == ListenAddress::Kind::kTcp) {
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) fail("SO_REUSEADDR");
  }
  acceptor_.bind(endpoint, ec);
  if (ec) fail("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("listen");
  if (address.kind == ListenAddress::Kind::kUnix) {
    bound_ = "unix:" + address.path;
  } else {
    bound_ = format_endpoint(acceptor_.local_endpoint());
  }
}

Listener::Listener(asio::io_context& context, int listening_fd) : acceptor_(context) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  int type = 0;
  socklen_t type_length = sizeof type;
  if (::getsockname(listening_fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      ::getsockopt(listening_fd, SOL_SOCKET, SO_TYPE, &type, &type_length) != 0 || type != SOCK_STREAM)
    throw std::runtime_error("socket " + std::to_string(listening_fd) +
                             " passed by systemd is not a stream socket; use ListenStream= in the socket unit");
  boost::system::error_code ec;
  acceptor_.assign(asio::generic::stream_protocol(address.ss_family, SOCK_STREAM), listening_fd, ec);
  if (ec) throw std::runtime_error("cannot use socket " + std::to_string(listening_fd) + " passed by systemd: " + ec.message());
  bound_ = format_endpoint(acceptor_.local_endpoint());
  if (bound_.empty() || bound_ == "unix") bound_ = "unix:(socket-activated)";
}

Listener::~Listener() { close(); }

void Listener::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (!unix_path_.empty()) {
    ::unlink(unix_path_.c_str());
    unix_path_.clear();
  }
}

}  // namespace blockd::server::net
