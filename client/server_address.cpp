#include "client/server_address.h"

#include <cstdlib>

#include "client/host_port.h"

namespace blockd::client {

namespace {

constexpr std::string_view kUnixScheme = "unix:";
constexpr std::string_view kHttpScheme = "http://";
// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
constexpr std::size_t kMaxUnixPath = 107;

}  // namespace

std::optional<ServerAddress> ServerAddress::parse(std::string_view text, std::string& error) {
  ServerAddress address;
  if (text.starts_with(kUnixScheme)) {
    std::string_view path = text.substr(kUnixScheme.size());
    // "unix:///p" is the URL form (empty authority); "unix:/p" and "unix:p" are the
    // short forms curl, systemd and blockd's own --listen use.
    if (path.starts_with("//")) path.remove_prefix(2);
    if (path.empty()) {
      error = "\"" + std::string(text) + "\" names no socket; e.g. unix:///run/blockd/control.sock";
      return std::nullopt;
    }
    if (path.size() > kMaxUnixPath) {
      error = "Unix socket path longer than 107 bytes: " + std::string(path);
      return std::nullopt;
    }
    address.kind_ = Kind::kUnix;
    address.path_ = std::string(path);
    return address;
  }
  if (text.starts_with(kHttpScheme)) {
    std::string_view rest = text.substr(kHttpScheme.size());
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
      if (rest.substr(slash) != "/") {
        error = "\"" + std::string(text) + "\": give only http://HOST:PORT, without a path";
        return std::nullopt;
      }
      rest = rest.substr(0, slash);
    }
    std::string why;
    auto hp = parse_host_port(rest, 80, why);
    if (!hp) {
      error = "\"" + std::string(text) + "\": " + why;
      return std::nullopt;
    }
    address.kind_ = Kind::kTcp;
    address.host_ = hp->host;
    address.port_ = hp->port;
    return address;
  }
  error = "\"" + std::string(text) +
          "\" is not a server address; use unix:///PATH (e.g. unix:///run/blockd/control.sock) "
          "or http://HOST:PORT";
  return std::nullopt;
}

std::optional<ServerAddress> ServerAddress::resolve(const std::optional<std::string>& flag,
                                                    std::string& error) {
  if (flag) return parse(*flag, error);
  if (const char* env = std::getenv("BLOCKD_SERVER"); env != nullptr && *env != '\0') {
    auto address = parse(env, error);
    if (!address) error = "BLOCKD_SERVER: " + error;
    return address;
  }
  return parse(kDefaultServer, error);
}

std::string ServerAddress::to_string() const {
  if (kind_ == Kind::kUnix) {
    // Relative paths cannot use the "unix://" URL form, which needs an absolute path.
    return path_.starts_with('/') ? "unix://" + path_ : "unix:" + path_;
  }
  return "http://" + format_host_port(host_, port_);
}

}  // namespace blockd::client
