// ServerConfig: everything blockd is told at start-up, and the parsers that turn
// command-line text into it. Every parse error is a message that says what is wrong
// and how to write it correctly.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "server/storage/storage_class.h"

namespace blockd::server {

struct ListenAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // TCP: an IPv4 or IPv6 literal
  std::uint16_t port = 0;
  std::string path;  // Unix
};

struct VolumeSpec {
  enum class Backend { kFile, kMemory };
  std::string name;
  Backend backend = Backend::kFile;
  std::string path;
  std::optional<std::uint64_t> size;
  bool read_only = false;
  // io=direct: O_DIRECT for aligned requests, as a storage class's io = "direct".
  storage::IoMode io = storage::IoMode::kBuffered;
  std::string description;
};

struct ServerConfig {
  std::vector<ListenAddress> listen;  // empty: the default [::]:10809
  // Volumes named on the command line: served, never in the catalog. The catalog's
  // volumes (created through the control API) are served too.
  std::vector<VolumeSpec> volumes;
  std::string config_path;            // the file read, or empty when none was
  std::string state_dir = "/var/lib/blockd";  // catalog.pb, and the fallback class's volumes
  std::string control_socket = "/run/blockd/control.sock";
  std::optional<ListenAddress> control_listen;  // TCP; off unless set
  std::optional<ListenAddress> metrics_listen;  // TCP, /metrics /healthz /readyz only; off unless set
  // From the config file; empty: storage::fallback_storage_class(state_dir).
  std::vector<storage::StorageClass> storage_classes;
  unsigned workers = 0;  // 0: one per core
  unsigned ring_entries = 256;
  // Busy polling (--busy-poll-us): after handling work, a worker keeps polling for this
  // long before it sleeps. 0: off, the worker sleeps as soon as it is idle.
  std::chrono::microseconds busy_poll{0};
  spdlog::level::level_enum log_level = spdlog::level::info;
  bool log_level_on_command_line = false;  // then a SIGHUP reload keeps it
  std::chrono::milliseconds handshake_timeout{30'000};
  std::chrono::milliseconds shutdown_timeout{10'000};
  unsigned max_connections = 1024;
  // How long a lease outlives its holder's last connection (DESIGN.md §4): longer than
  // the kernel's dead-connection timeout, so a reconnecting client keeps it.
  std::chrono::milliseconds lease_grace{120'000};
  bool unsafe_ack_without_sync = false;
};

inline constexpr std::uint16_t kDefaultPort = 10809;
// Past 10 ms a busy-polling worker would mostly burn a core for nothing.
inline constexpr unsigned kMaxBusyPollMicroseconds = 10'000;

// Exit codes (README "Running blockd"): 1 cannot start or run, 2 bad command line,
// 3 bad config file (systemd's RestartPreventExitStatus: restarting cannot fix it).
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitConfig = 3;

// Each returns the parsed value, or fills `error` and returns nullopt.
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& error);
std::optional<VolumeSpec> parse_volume_spec(const std::string& text, std::string& error);
bool is_valid_volume_name(const std::string& name);
std::string to_string(const ListenAddress& address);

// Parses argv, then reads the config file (--config PATH, or /etc/blockd/blockd.toml when
// it exists) and merges it: a flag given on the command line wins over the file.
// Returns the exit code to use when blockd must not start (0 after --help/--version,
// kExitUsage for a bad command line, kExitConfig for a bad config file; the message is
// already printed), or nullopt when `config` is ready.
std::optional<int> parse_command_line(int argc, char** argv, ServerConfig& config);

}  // namespace blockd::server
