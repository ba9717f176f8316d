// Parsing of "host:port" as URLs write it ("[::1]:10809", "127.0.0.1:80", "localhost"),
// shared by the control-API and NBD address parsers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace blockd::client {

struct HostPort {
  std::string host;  // without brackets
  std::uint16_t port = 0;
};

// `default_port` is used when the text has no ":port". Returns nullopt (and says why)
// for an empty host, an unclosed '[', or a port that is not 1-65535.
std::optional<HostPort> parse_host_port(std::string_view text, std::uint16_t default_port,
                                        std::string& error);

// "host:port", with brackets around an IPv6 host.
std::string format_host_port(const std::string& host, std::uint16_t port);

}  // namespace blockd::client
