// ServerAddress: where blockd's control API listens, as blockctl is told it
// (`--server`, else `BLOCKD_SERVER`, else the default Unix socket).
// A value type: no threads, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace blockd::client {

inline constexpr std::string_view kDefaultServer = "unix:///run/blockd/control.sock";

class ServerAddress {
 public:
  enum class Kind { kUnix, kTcp };

  // Accepts "unix:///abs/path", "unix:/abs/path", "unix:relative/path" and
  // "http://host[:port][/]" (IPv6 hosts in brackets; port defaults to 80).
  // On failure returns nullopt and says why in `error`.
  static std::optional<ServerAddress> parse(std::string_view text, std::string& error);

  // The address to use given an optional --server value: the flag, else the
  // BLOCKD_SERVER environment variable, else kDefaultServer.
  static std::optional<ServerAddress> resolve(const std::optional<std::string>& flag,
                                              std::string& error);

  Kind kind() const { return kind_; }
  const std::string& path() const { return path_; }  // kUnix
  const std::string& host() const { return host_; }  // kTcp, without brackets
  std::uint16_t port() const { return port_; }       // kTcp
  // The canonical spelling, for messages: "unix:///run/blockd/control.sock", "http://[::1]:8080".
  std::string to_string() const;

 private:
  Kind kind_ = Kind::kUnix;
  std::string path_;
  std::string host_;
  std::uint16_t port_ = 0;
};

}  // namespace blockd::client
