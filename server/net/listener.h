// Listener: one bound, listening socket (TCP or Unix). Binding happens in the
// constructor so that start-up fails with a clear message before blockd says "ready".
//
// Thread affinity: the main (accepting) thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <string>

#include "server/config.h"
#include "server/net/socket.h"

namespace blockd::server::net {

class Listener {
 public:
  // Throws std::runtime_error naming the address and the reason.
  Listener(asio::io_context& context, const ListenAddress& address);
  // Adopts a socket that is already bound and listening (systemd socket activation).
  // It is never unlinked at close: the socket unit owns it. Throws std::runtime_error.
  Listener(asio::io_context& context, int listening_fd);
  ~Listener();

  Acceptor& acceptor() { return acceptor_; }
  // The bound address, with the real port when 0 was asked for.
  const std::string& address() const { return bound_; }
  void close();

 private:
  Acceptor acceptor_;
  std::string bound_;
  std::string unix_path_;
};

}  // namespace blockd::server::net
