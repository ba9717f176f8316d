#include "server/net/socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

namespace blockd::server::net {

namespace {

std::string inet_text(const sockaddr* sa, unsigned& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
    return text;
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
  port = ntohs(in6->sin6_port);
  return text;
}

}  // namespace

std::string format_endpoint(const Endpoint& endpoint) {
  const sockaddr* sa = endpoint.data();
  unsigned port = 0;
  switch (sa->sa_family) {
    case AF_INET: {
      std::string host = inet_text(sa, port);
      return host + ":" + std::to_string(port);
    }
    case AF_INET6: {
      std::string host = inet_text(sa, port);
      return "[" + host + "]:" + std::to_string(port);
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(sa);
      const std::size_t max = endpoint.size() > offsetof(sockaddr_un, sun_path)
                                  ? endpoint.size() - offsetof(sockaddr_un, sun_path)
                                  : 0;
      std::string path(un->sun_path, strnlen(un->sun_path, max));
      return path.empty() ? "unix" : "unix:" + path;
    }
    default: return "unknown";
  }
}

std::string peer_address(const Endpoint& endpoint) {
  const sockaddr* sa = endpoint.data();
  unsigned port = 0;
  if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) return inet_text(sa, port);
  return "unix";
}

}  // namespace blockd::server::net
