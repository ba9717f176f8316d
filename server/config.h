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
  std::string description;
};

struct ServerConfig {
  std::vector<ListenAddress> listen;  // empty: the default [::]:10809
  std::vector<VolumeSpec> volumes;
  unsigned workers = 0;  // 0: one per core
  unsigned ring_entries = 256;
  spdlog::level::level_enum log_level = spdlog::level::info;
  std::chrono::milliseconds handshake_timeout{30'000};
  std::chrono::milliseconds shutdown_timeout{10'000};
  unsigned max_connections = 1024;
  bool unsafe_ack_without_sync = false;
};

inline constexpr std::uint16_t kDefaultPort = 10809;

// Each returns the parsed value, or fills `error` and returns nullopt.
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& error);
std::optional<VolumeSpec> parse_volume_spec(const std::string& text, std::string& error);
bool is_valid_volume_name(const std::string& name);
std::string to_string(const ListenAddress& address);

// Parses argv. Returns the exit code to use when blockd must not start
// (0 after --help/--version, 2 for a usage error, message already printed), or
// nullopt when `config` is ready.
std::optional<int> parse_command_line(int argc, char** argv, ServerConfig& config);

}  // namespace blockd::server
