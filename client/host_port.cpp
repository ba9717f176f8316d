#include "client/host_port.h"

#include <charconv>

namespace blockd::client {

std::optional<HostPort> parse_host_port(std::string_view text, std::uint16_t default_port,
                                        std::string& error) {
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      error = "unclosed '[' in \"" + std::string(text) + "\"";
      return std::nullopt;
    }
    out.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        error = "expected ':PORT' after ']' in \"" + std::string(text) + "\"";
        return std::nullopt;
      }
      port_text = rest.substr(1);
      if (port_text.empty()) {
        error = "empty port in \"" + std::string(text) + "\"";
        return std::nullopt;
      }
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      error = "an IPv6 address needs brackets, e.g. [::1]:10809, in \"" + std::string(text) + "\"";
      return std::nullopt;
    }
    out.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = text.substr(colon + 1);
      if (port_text.empty()) {
        error = "empty port in \"" + std::string(text) + "\"";
        return std::nullopt;
      }
    }
  }
  if (out.host.empty()) {
    error = "no host in \"" + std::string(text) + "\"";
    return std::nullopt;
  }
  out.port = default_port;
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value == 0 || value > 65535) {
      error = "bad port \"" + std::string(port_text) + "\" (1-65535)";
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

std::string format_host_port(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace blockd::client
