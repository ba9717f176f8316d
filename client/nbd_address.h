// NbdAddress: where an NBD server listens and which export to ask for. Parsed from the
// NBD URI forms libnbd and qemu use (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md):
// "nbd://host[:port][/export]" and "nbd+unix:///[export]?socket=PATH", and from the
// listen addresses blockd reports in GET /v1/status ("127.0.0.1:10809",
// "[::1]:10809", "unix:/run/blockd/nbd.sock"). A value type: no threads, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace blockd::client {

inline constexpr std::uint16_t kNbdDefaultPort = 10809;

class NbdAddress {
 public:
  enum class Kind { kTcp, kUnix };

  static std::optional<NbdAddress> parse_uri(std::string_view uri, std::string& error);
  // A listen address as blockd prints it. A wildcard (0.0.0.0, [::]) becomes the
  // loopback address of the same family: blockctl runs on the node itself.
  static std::optional<NbdAddress> from_listen(std::string_view listen, std::string& error);
  static NbdAddress unix_socket(std::string path);
  static NbdAddress tcp(std::string host, std::uint16_t port);

  Kind kind() const { return kind_; }
  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }
  const std::string& path() const { return path_; }
  const std::string& export_name() const { return export_name_; }
  void set_export_name(std::string name) { export_name_ = std::move(name); }

  // "nbd://127.0.0.1:10809/db", "nbd+unix:///db?socket=/run/blockd/nbd.sock".
  std::string to_uri() const;

 private:
  Kind kind_ = Kind::kTcp;
  std::string host_;
  std::uint16_t port_ = kNbdDefaultPort;
  std::string path_;
  std::string export_name_;
};

}  // namespace blockd::client
