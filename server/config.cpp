#include "server/config.h"

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>
#include <cstdio>
#include <iostream>
#include <tuple>
#include <sys/stat.h>

#include "common/logging.h"
#include "common/names.h"
#include "common/size.h"
#include "server/config_file.h"

namespace blockd::server {

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string current;
  for (char c : text) {
    if (c == separator) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  return parts;
}

}  // namespace

bool is_valid_volume_name(const std::string& name) {
  // One rule for every name blockd accepts (common/names.h).
  return common::is_dns_label(name);
}

std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& error) {
  ListenAddress address;
  if (text.rfind("unix:", 0) == 0) {
    address.kind = ListenAddress::Kind::kUnix;
    address.path = text.substr(5);
    if (address.path.empty() || address.path.size() >= 108) {
      error = "'" + text + "': a Unix socket path must be 1 to 107 characters, e.g. unix:/run/blockd/nbd.sock";
      return std::nullopt;
    }
    return address;
  }
  // "[IPv6]:PORT" or "IPv4:PORT"; a bare IPv6 address would be ambiguous.
  std::string host, port_text;
  const auto no_port = "'" + text + "' has no port; write ADDRESS:PORT, e.g. 127.0.0.1:10809 or [::1]:10809";
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("]:");
    if (close == std::string::npos) {
      error = text.find(']') == std::string::npos
                  ? "'" + text + "' is not an IPv4 or IPv6 address: ']' is missing"
                  : no_port;
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.find(':');
    if (colon == std::string::npos || text.find(':', colon + 1) != std::string::npos) {
      error = text.find(':') == std::string::npos ? no_port
                                                  : "'" + text + "': put an IPv6 address in brackets, e.g. [::1]:10809";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) host = "::";
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec) {
    error = "'" + text + "': '" + host + "' is not an IPv4 or IPv6 address (host names are not resolved)";
    return std::nullopt;
  }
  unsigned long port = 0;
  const bool digits_only = !port_text.empty() && port_text.size() <= 5 &&
                           port_text.find_first_not_of("0123456789") == std::string::npos;
  if (digits_only) port = std::stoul(port_text);
  if (!digits_only || port > 65535) {
    error = "'" + text + "': port must be a number from 0 to 65535 (0 picks a free port)";
    return std::nullopt;
  }
  address.host = host;
  address.port = static_cast<std::uint16_t>(port);
  return address;
}

std::string to_string(const ListenAddress& address) {
  if (address.kind == ListenAddress::Kind::kUnix) return "unix:" + address.path;
  if (address.host.find(':') != std::string::npos)
    return "[" + address.host + "]:" + std::to_string(address.port);
  return address.host + ":" + std::to_string(address.port);
}

std::optional<VolumeSpec> parse_volume_spec(const std::string& text, std::string& error) {
  VolumeSpec spec;
  const std::string usage =
      " (expected name=NAME,path=PATH[,size=SIZE][,read-only][,io=direct][,description=TEXT] or "
      "name=NAME,backend=memory,size=SIZE)";
  for (const std::string& item : split(text, ',')) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key == "name") {
      spec.name = value;
    } else if (key == "path") {
      spec.path = value;
    } else if (key == "size") {
      spec.size = common::parse_size(value);
      if (!spec.size || *spec.size == 0) {
        error = "volume '" + text + "': size '" + value + "' is not a size such as 512, 64MiB, 10GiB";
        return std::nullopt;
      }
    } else if (key == "backend") {
      if (value == "memory") {
        spec.backend = VolumeSpec::Backend::kMemory;
      } else if (value == "file") {
        spec.backend = VolumeSpec::Backend::kFile;
      } else {
        error = "volume '" + text + "': backend '" + value + "' is unknown; use file or memory";
        return std::nullopt;
      }
    } else if (key == "read-only" || key == "ro") {
      if (!value.empty() && value != "true" && value != "false") {
        error = "volume '" + text + "': read-only takes no value, or true/false";
        return std::nullopt;
      }
      spec.read_only = value != "false";
    } else if (key == "io") {
      const auto io = storage::parse_io_mode(value);
      if (!io) {
        error = "volume '" + text + "': io '" + value + "' is unknown; use buffered or direct";
        return std::nullopt;
      }
      spec.io = *io;
    } else if (key == "description") {
      spec.description = value;
    } else {
      error = "volume '" + text + "': unknown key '" + key + "'" + usage;
      return std::nullopt;
    }
  }
  if (!is_valid_volume_name(spec.name)) {
    error = "volume '" + text + "': name '" + spec.name +
            "' must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit" + usage;
    return std::nullopt;
  }
  if (spec.backend == VolumeSpec::Backend::kFile && spec.path.empty()) {
    error = "volume '" + text + "': path= is required for a file or block device" + usage;
    return std::nullopt;
  }
  if (spec.backend == VolumeSpec::Backend::kMemory && !spec.size) {
    error = "volume '" + text + "': a memory volume needs size=" + usage;
    return std::nullopt;
  }
  if (spec.backend == VolumeSpec::Backend::kMemory && spec.io == storage::IoMode::kDirect) {
    error = "volume '" + text + "': io=direct is for files and block devices, not memory";
    return std::nullopt;
  }
  if (spec.size && *spec.size % 512 != 0) {
    error = "volume '" + text + "': size must be a multiple of 512 bytes";
    return std::nullopt;
  }
  return spec;
}

namespace {

// The file's value for everything the command line did not set; `given(flag)` says
// whether the command line set it.
template <typename Given>
void merge_file(const FileConfig& file, const Given& given, ServerConfig& config) {
  if (!given("--listen")) config.listen = file.listen;
  if (!given("--state-dir")) config.state_dir = file.state_dir;
  if (!given("--control-socket")) config.control_socket = file.control_socket;
  if (!given("--control-listen") && file.control_listen) config.control_listen = file.control_listen;
  if (!given("--metrics-listen") && file.metrics_listen) config.metrics_listen = file.metrics_listen;
  if (!given("--workers") && file.workers) config.workers = *file.workers;
  if (!given("--busy-poll-us") && file.busy_poll) config.busy_poll = *file.busy_poll;
  if (!given("--log-level") && file.log_level) config.log_level = *file.log_level;
  if (!given("--handshake-timeout") && file.handshake_timeout) config.handshake_timeout = *file.handshake_timeout;
  if (!given("--shutdown-timeout") && file.shutdown_timeout) config.shutdown_timeout = *file.shutdown_timeout;
  if (!given("--max-connections") && file.max_connections) config.max_connections = *file.max_connections;
  if (!given("--lease-grace") && file.lease_grace) config.lease_grace = *file.lease_grace;
  config.storage_classes = file.storage_classes;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, ServerConfig& config) {
  CLI::App app{"blockd: a network block device server (NBD protocol) for stateful workloads"};
  app.set_version_flag("--version", "blockd 0.1.0");
  std::vector<std::string> listen, volumes;
  std::string log_level = "info", control_listen, metrics_listen;
  std::string config_path;
  double handshake_timeout = 30, shutdown_timeout = 10, lease_grace = 120;
  app.add_option("--config", config_path,
                 "The TOML config file (default /etc/blockd/blockd.toml, read when it exists); "
                 "command-line flags override it");
  app.add_option("--listen", listen,
                 "Address to listen on: IPv4:PORT, [IPv6]:PORT or unix:PATH; repeatable; port 0 "
                 "picks a free port (default [::]:10809)");
  app.add_option("--volume", volumes,
                 "Export a volume that is not in the catalog: "
                 "name=NAME,path=PATH[,size=SIZE][,read-only][,io=direct][,description=TEXT] "
                 "or name=NAME,backend=memory,size=SIZE; repeatable. A missing file is created "
                 "sparse with the given size.");
  app.add_option("--state-dir", config.state_dir,
                 "Where the catalog lives (catalog.pb) and, without storage classes, the volumes "
                 "(default /var/lib/blockd)");
  app.add_option("--control-socket", config.control_socket,
                 "The control API's Unix socket (default /run/blockd/control.sock)");
  app.add_option("--control-listen", control_listen,
                 "Also serve the control API on this TCP address, IPv4:PORT or [IPv6]:PORT "
                 "(default: off; the API has no authentication)");
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve /metrics (Prometheus), /healthz and /readyz on this TCP address too, "
                 "IPv4:PORT or [IPv6]:PORT (default: off; /metrics is always on the control socket)");
  app.add_option("--workers", config.workers, "Worker threads, each with its own io_uring ring (default: one per core)")
      ->check(CLI::Range(0U, 256U));
  unsigned busy_poll_us = 0;
  app.add_option("--busy-poll-us", busy_poll_us,
                 "After handling requests, a worker keeps polling for this many microseconds before "
                 "it sleeps: lower latency at low queue depth, for CPU time (default 0: off)")
      ->check(CLI::Range(0U, kMaxBusyPollMicroseconds));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--handshake-timeout", handshake_timeout,
                 "Seconds a client may take to finish the handshake (default 30)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--shutdown-timeout", shutdown_timeout,
                 "Seconds to wait for in-flight requests at shutdown before closing connections (default 10)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--lease-grace", lease_grace,
                 "Seconds a lease outlives its holder's last connection, so a reconnecting client "
                 "keeps it; also how long the previous holders keep their leases after a restart (default 120)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--max-connections", config.max_connections,
                 "Connections served at once; further ones are closed at accept (default 1024)")
      ->check(CLI::Range(1U, 1000000U));
  app.add_flag("--unsafe-ack-without-sync", config.unsafe_ack_without_sync,
               "TESTING ONLY: acknowledge FUA and FLUSH without syncing. Loses data on power loss.")
      ->group("Testing");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  auto fail = [](const std::string& message) {
    std::cerr << "blockd: " << message << "\n";
    return std::optional<int>(kExitUsage);
  };
  for (const auto& text : listen) {
    std::string error;
    auto address = parse_listen_address(text, error);
    if (!address) return fail("--listen " + error);
    config.listen.push_back(*address);
  }
  // --control-listen and --metrics-listen: TCP only (the Unix socket is --control-socket).
  for (auto [flag, text, target] : {std::tuple{"--control-listen", &control_listen, &config.control_listen},
                                    std::tuple{"--metrics-listen", &metrics_listen, &config.metrics_listen}}) {
    if (text->empty()) continue;
    std::string error;
    auto address = parse_listen_address(*text, error);
    if (!address) return fail(std::string(flag) + " " + error);
    if (address->kind != ListenAddress::Kind::kTcp)
      return fail(std::string(flag) + " takes a TCP address; the Unix socket is --control-socket PATH");
    *target = *address;
  }
  for (const auto& text : volumes) {
    std::string error;
    auto spec = parse_volume_spec(text, error);
    if (!spec) return fail("--volume " + error);
    for (const auto& earlier : config.volumes)
      if (earlier.name == spec->name)
        return fail("--volume " + text + ": the name '" + spec->name + "' is used twice");
    config.volumes.push_back(*spec);
  }
  for (const auto* path : {&config.state_dir, &config.control_socket}) {
    const char* flag = path == &config.state_dir ? "--state-dir" : "--control-socket";
    if (app.count(flag) && (path->empty() || path->front() != '/'))
      return fail(std::string(flag) + " '" + *path + "' must be an absolute path");
  }
  if (config.control_socket.size() >= 108)
    return fail("--control-socket is " + std::to_string(config.control_socket.size()) +
                " bytes long; a Unix socket path must be at most 107");
  common::parse_log_level(log_level, config.log_level);
  config.log_level_on_command_line = app.count("--log-level") > 0;
  config.handshake_timeout = std::chrono::milliseconds(static_cast<long>(handshake_timeout * 1000));
  config.shutdown_timeout = std::chrono::milliseconds(static_cast<long>(shutdown_timeout * 1000));
  config.lease_grace = std::chrono::milliseconds(static_cast<long>(lease_grace * 1000));
  config.busy_poll = std::chrono::microseconds(busy_poll_us);
  if (app.count("--state-dir")) config.state_dir = storage::normalize_directory(config.state_dir);

  // The file: the one named, or the default one if it exists (a node configured only by
  // flags, or a test, needs none).
  if (config_path.empty() && file_exists(std::string(kDefaultConfigPath))) config_path = kDefaultConfigPath;
  if (!config_path.empty()) {
    std::string error;
    auto file = parse_config_file(config_path, error);
    if (!file) {
      std::cerr << "blockd: " << error << "\n";
      return kExitConfig;
    }
    // A volume named on the command line may not collide with the file's settings; the
    // merge itself cannot fail.
    merge_file(*file, [&](const char* flag) { return app.count(flag) > 0; }, config);
    config.config_path = config_path;
  }
  return std::nullopt;
}

}  // namespace blockd::server
