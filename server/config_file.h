// FileConfig: what blockd reads from its TOML config file (default /etc/blockd/blockd.toml),
// and the parser that turns the file into it. Command-line flags override the file; the
// merge is the caller's, which is why every value the command line also sets is either
// optional here (nullopt: the file does not set it, ServerConfig's default applies) or,
// for settings only the file knows so far, carries its default.
//
// Every error names the file, the line and column (toml++ source regions), what is wrong
// and how to write it correctly, e.g.
//   /etc/blockd/blockd.toml:7:1: unknown key 'directroy' in [[storage_class]]; did you mean 'directory'? ...
//
// Thread affinity: start-up only; plain functions without shared state.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>

#include "server/config.h"
#include "server/storage/storage_class.h"

namespace blockd::server {

inline constexpr std::string_view kDefaultConfigPath = "/etc/blockd/blockd.toml";
inline constexpr std::string_view kDefaultStateDir = "/var/lib/blockd";
inline constexpr std::string_view kDefaultControlSocket = "/run/blockd/control.sock";

struct FileConfig {
  std::vector<ListenAddress> listen;  // empty: the file sets none
  std::string state_dir{kDefaultStateDir};            // absolute, normalised
  std::string control_socket{kDefaultControlSocket};  // absolute, < 108 bytes
  std::optional<ListenAddress> control_listen;        // TCP only; off unless set
  std::optional<ListenAddress> metrics_listen;        // TCP only; off unless set
  std::optional<unsigned> workers;                    // 0: one per core
  std::optional<std::chrono::microseconds> busy_poll;  // busy_poll_us; 0: off
  std::optional<spdlog::level::level_enum> log_level;
  std::optional<std::chrono::milliseconds> handshake_timeout;
  std::optional<std::chrono::milliseconds> shutdown_timeout;
  std::optional<unsigned> max_connections;
  std::optional<std::chrono::milliseconds> lease_grace;
  // In file order, validated as a set (names unique, exactly one default, absolute
  // directories). Empty when the file declares none: then the caller uses
  // storage::fallback_storage_class(state_dir).
  std::vector<storage::StorageClass> storage_classes;
};

// Reads and validates `path`. Returns the config, or fills `error` and returns nullopt.
// A missing file is an error here; whether a missing *default* file is acceptable is the
// caller's decision.
std::optional<FileConfig> parse_config_file(const std::string& path, std::string& error);

// The same for text already in memory; `source_name` is the file name used in messages.
std::optional<FileConfig> parse_config_text(std::string_view text, const std::string& source_name,
                                            std::string& error);

}  // namespace blockd::server
