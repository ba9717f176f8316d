// Connection: one accepted socket, from the greeting to the close. It runs the
// handshake under a timeout, then hands the socket to a Session for the
// transmission phase, and writes one log line when it opens and one when it closes.
//
// Thread affinity: its Worker's thread, for life (DESIGN.md §6).
// Ownership: shared by its serve() coroutine and the Worker's connection set.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "server/nbd/admission.h"
#include "server/net/socket.h"
#include "server/storage/volume_registry.h"

namespace blockd::server {
class Worker;
}
namespace blockd::server::nbd {
class Session;
}

namespace blockd::server::net {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  struct Services {
    const storage::VolumeRegistry& volumes;
    nbd::AdmissionPolicy& admission;
    std::chrono::milliseconds handshake_timeout;
  };

  Connection(Socket socket, Worker& worker, Services services);

  static asio::awaitable<void> serve(std::shared_ptr<Connection> self);

  // Server shutdown, on the worker thread: a handshaking client is closed at once, a
  // session drains (nbd::Session::begin_drain).
  void drain();
  // Shuts the socket down now; whatever is in flight completes and is discarded. The
  // descriptor itself is closed when serve() ends.
  void close();

 private:
  asio::awaitable<void> run();
  void arm_handshake_timer();
  void set_socket_options();

  Socket socket_;
  Worker& worker_;
  Services services_;
  std::string peer_;
  asio::steady_timer handshake_timer_;
  std::shared_ptr<nbd::Session> session_;
  bool handshaking_ = true;
};

}  // namespace blockd::server::net
