#include "client/nbd_address.h"

#include "client/host_port.h"

namespace blockd::client {

namespace {

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex(text[i + 1]);
    const int lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string loopback_for(const std::string& host) {
  if (host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

}  // namespace

NbdAddress NbdAddress::unix_socket(std::string path) {
  NbdAddress a;
  a.kind_ = Kind::kUnix;
  a.path_ = std::move(path);
  return a;
}

NbdAddress NbdAddress::tcp(std::string host, std::uint16_t port) {
  NbdAddress a;
  a.kind_ = Kind::kTcp;
  a.host_ = std::move(host);
  a.port_ = port;
  return a;
}

std::optional<NbdAddress> NbdAddress::parse_uri(std::string_view uri, std::string& error) {
  constexpr std::string_view kTcp = "nbd://";
  constexpr std::string_view kUnix = "nbd+unix://";
  const std::string quoted = "\"" + std::string(uri) + "\"";
  std::string_view query;
  if (const auto q = uri.find('?'); q != std::string_view::npos) {
    query = uri.substr(q + 1);
    uri = uri.substr(0, q);
  }
  if (uri.starts_with(kUnix)) {
    std::string_view rest = uri.substr(kUnix.size());
    if (!rest.starts_with('/')) {
      error = quoted + ": nbd+unix:// takes no host; write nbd+unix:///EXPORT?socket=PATH";
      return std::nullopt;
    }
    auto name = percent_decode(rest.substr(1));
    std::optional<std::string> socket;
    while (!query.empty()) {
      const auto amp = query.find('&');
      const std::string_view item = query.substr(0, amp);
      if (item.starts_with("socket=")) socket = percent_decode(item.substr(7));
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
    if (!name || !socket || socket->empty()) {
      error = quoted + ": needs ?socket=PATH, e.g. nbd+unix:///?socket=/run/blockd/nbd.sock";
      return std::nullopt;
    }
    NbdAddress a = unix_socket(*socket);
    a.export_name_ = *name;
    return a;
  }
  if (uri.starts_with(kTcp)) {
    std::string_view rest = uri.substr(kTcp.size());
    const auto slash = rest.find('/');
    const std::string_view authority = rest.substr(0, slash);
    std::string why;
    auto hp = parse_host_port(authority, kNbdDefaultPort, why);
    if (!hp) {
      error = quoted + ": " + why;
      return std::nullopt;
    }
    NbdAddress a = tcp(hp->host, hp->port);
    if (slash != std::string_view::npos) {
      auto name = percent_decode(rest.substr(slash + 1));
      if (!name) {
        error = quoted + ": bad %-escape in the export name";
        return std::nullopt;
      }
      a.export_name_ = *name;
    }
    return a;
  }
  error = quoted + " is not an NBD URI; use nbd://HOST:PORT or nbd+unix:///?socket=PATH";
  return std::nullopt;
}

std::optional<NbdAddress> NbdAddress::from_listen(std::string_view listen, std::string& error) {
  if (listen.starts_with("unix:")) {
    std::string path(listen.substr(5));
    if (path.empty()) {
      error = "empty Unix socket path in listen address \"" + std::string(listen) + "\"";
      return std::nullopt;
    }
    return unix_socket(std::move(path));
  }
  std::string why;
  auto hp = parse_host_port(listen, kNbdDefaultPort, why);
  if (!hp) {
    error = "listen address \"" + std::string(listen) + "\": " + why;
    return std::nullopt;
  }
  return tcp(loopback_for(hp->host), hp->port);
}

std::string NbdAddress::to_uri() const {
  if (kind_ == Kind::kUnix) return "nbd+unix:///" + export_name_ + "?socket=" + path_;
  return "nbd://" + format_host_port(host_, port_) + "/" + export_name_;
}

}  // namespace blockd::client
