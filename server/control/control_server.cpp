#include "server/control/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "common/logging.h"
#include "common/unique_fd.h"

namespace blockd::server::control {

namespace asio = boost::asio;

namespace {

// True when something accepts connections on `path`: another blockd. Binding over it
// would silently steal its control socket.
bool socket_answers(const std::string& path) {
  common::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

std::unique_ptr<net::Listener> unix_listener(asio::io_context& context, const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw std::runtime_error("cannot create " + parent.string() + " for the control socket: " + ec.message());
  if (socket_answers(path))
    throw std::runtime_error("control socket " + path +
                             " is in use by another process (another blockd?); stop it, or give this one "
                             "--control-socket PATH and --state-dir DIR of its own");
  ListenAddress address;
  address.kind = ListenAddress::Kind::kUnix;
  address.path = path;
  auto listener = std::make_unique<net::Listener>(context, address);
  // Owner and group only: the API can create and delete volumes.
  if (::chmod(path.c_str(), 0660) != 0)
    throw std::runtime_error("cannot chmod the control socket " + path + ": " + std::strerror(errno));
  return listener;
}

}  // namespace

ControlServer::ControlServer(const std::string& socket_path, const std::optional<ListenAddress>& tcp,
                             ApiHandler& handler, int activated_fd, const std::optional<ListenAddress>& metrics_tcp)
    : handler_(handler) {
  if (metrics_tcp) metrics_listener_ = std::make_unique<net::Listener>(context_, *metrics_tcp);
  if (activated_fd >= 0) {
    listeners_.push_back(std::make_unique<net::Listener>(context_, activated_fd));
  } else {
    listeners_.push_back(unix_listener(context_, socket_path));
  }
  if (tcp) listeners_.push_back(std::make_unique<net::Listener>(context_, *tcp));
}

ControlServer::~ControlServer() { stop(); }

std::vector<std::string> ControlServer::addresses() const {
  std::vector<std::string> out;
  for (const auto& listener : listeners_) out.push_back(listener->address());
  return out;
}

void ControlServer::start() {
  for (auto& listener : listeners_) {
    common::logger("control")->info("control API listening address={}", listener->address());
    asio::co_spawn(context_, accept_loop(listener.get(), false), asio::detached);
  }
  if (metrics_listener_) {
    common::logger("control")->info("metrics listening address={}", metrics_listener_->address());
    asio::co_spawn(context_, accept_loop(metrics_listener_.get(), true), asio::detached);
  }
  thread_ = std::thread([this] { context_.run(); });
}

void ControlServer::stop() {
  if (!thread_.joinable()) {
    listeners_.clear();
    return;
  }
  asio::post(context_, [this] {
    for (auto& listener : listeners_) listener->close();
    if (metrics_listener_) metrics_listener_->close();
    context_.stop();  // open connections are dropped: the process is stopping
  });
  thread_.join();
  listeners_.clear();
}

asio::awaitable<void> ControlServer::accept_loop(net::Listener* listener, bool metrics_only) {
  for (;;) {
    auto [ec, socket] = co_await listener->acceptor().async_accept(net::use_nothrow);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      common::logger("control")->warn("accept failed address={} error=\"{}\"", listener->address(), ec.message());
      asio::steady_timer pause(context_, std::chrono::milliseconds(100));
      co_await pause.async_wait(net::use_nothrow);
      continue;
    }
    asio::co_spawn(context_, serve(std::move(socket), &handler_, metrics_only), asio::detached);
  }
}

asio::awaitable<void> ControlServer::serve(net::Socket socket, ApiHandler* handler, bool metrics_only) {
  namespace beast = boost::beast;
  beast::flat_buffer buffer;
  // Closes an idle or stuck connection; re-armed for every request.
  asio::steady_timer idle(socket.get_executor());
  for (;;) {
    idle.expires_after(kIdleTimeout);
    idle.async_wait([&socket](boost::system::error_code ec) {
      if (!ec) {
        boost::system::error_code ignored;
        socket.close(ignored);
      }
    });
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    parser.header_limit(16 * 1024);
    auto [ec, bytes] = co_await http::async_read(socket, buffer, parser, net::use_nothrow);
    (void)bytes;
    Response response;
    bool keep_alive = false;
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      break;
    } else if (ec == http::error::body_limit) {
      response = ApiHandler::error(11, http::status::payload_too_large, "payload_too_large",
                                   "the body is larger than " + std::to_string(kMaxBodyBytes / 1024) + " KiB");
    } else if (ec == http::error::header_limit) {
      response = ApiHandler::error(11, http::status::request_header_fields_too_large, "header_too_large",
                                   "the request header is larger than 16 KiB");
    } else if (ec) {
      response = ApiHandler::error(11, http::status::bad_request, "bad_request",
                                   "not a valid HTTP/1.1 request: " + ec.message());
    } else {
      const Request& request = parser.get();
      response = handler->handle(request, metrics_only);
      keep_alive = request.keep_alive();
      response.version(request.version());
    }
    response.keep_alive(keep_alive);
    response.prepare_payload();
    auto [write_ec, written] = co_await http::async_write(socket, response, net::use_nothrow);
    (void)written;
    if (write_ec || !keep_alive) break;
  }
  idle.cancel();
  boost::system::error_code ignored;
  socket.shutdown(asio::socket_base::shutdown_send, ignored);
  socket.close(ignored);
}

}  // namespace blockd::server::control
