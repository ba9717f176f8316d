// ControlServer: the control API's HTTP/1.1 server (Boost.Beast) on a Unix socket (mode
// 0660) and, optionally, a TCP address. It runs on its own thread and io_context, so a
// slow catalog operation (an fsync, a preallocation) never stalls an NBD worker or the
// accept loop.
//
// One coroutine per connection: read a request (at most kMaxBodyBytes of body, 16 KiB of
// header, an idle connection is closed after kIdleTimeout), answer it with the
// ApiHandler, keep the connection alive if the client asks.
//
// Thread affinity: constructed and stopped on the main thread; serves on its own.
// Ownership: owns its listeners and thread, borrows the handler.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/config.h"
#include "server/control/api_handler.h"
#include "server/net/listener.h"

namespace blockd::server::control {

class ControlServer {
 public:
  static constexpr std::chrono::seconds kIdleTimeout{60};

  // Binds now (so a problem stops start-up with a message); serves after start().
  // Throws std::runtime_error naming the socket and the reason, e.g. another blockd
  // already answering on it.
  // `activated_fd` >= 0: the control socket systemd passed (FileDescriptorName=control),
  // used instead of binding `socket_path`.
  // `metrics_tcp`: a TCP address serving only /metrics, /healthz and /readyz.
  ControlServer(const std::string& socket_path, const std::optional<ListenAddress>& tcp, ApiHandler& handler,
                int activated_fd = -1, const std::optional<ListenAddress>& metrics_tcp = std::nullopt);
  ~ControlServer();

  void start();
  // Closes the listeners and connections and joins the thread. Idempotent.
  void stop();

  std::vector<std::string> addresses() const;

 private:
  boost::asio::awaitable<void> accept_loop(net::Listener* listener, bool metrics_only);
  static boost::asio::awaitable<void> serve(net::Socket socket, ApiHandler* handler, bool metrics_only);

  boost::asio::io_context context_{1};
  std::vector<std::unique_ptr<net::Listener>> listeners_;
  std::unique_ptr<net::Listener> metrics_listener_;
  ApiHandler& handler_;
  std::thread thread_;
};

}  // namespace blockd::server::control
