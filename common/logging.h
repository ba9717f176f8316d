// Logging setup: spdlog, one named logger per subsystem (DESIGN.md §7), all to stderr
// (journald captures it under systemd). Details are written key=value.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace blockd::common {

// Parses "trace|debug|info|warn|error|critical|off"; nullopt-like false on bad input.
bool parse_log_level(std::string_view text, spdlog::level::level_enum& out);

// Sets the level of every logger (existing and future ones).
void set_log_level(spdlog::level::level_enum level);

// The named logger for a subsystem ("server", "nbd", "uring", ...), created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace blockd::common
