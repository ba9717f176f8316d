#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace blockd::common {

namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

spdlog::sink_ptr shared_sink() {
  // stderr, no colour: the output goes to journald or a test's log file.
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

}  // namespace

bool parse_log_level(std::string_view text, spdlog::level::level_enum& out) {
  static constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  for (int i = 0; i < static_cast<int>(std::size(kNames)); ++i) {
    if (text == kNames[i]) {
      out = static_cast<spdlog::level::level_enum>(i);
      return true;
    }
  }
  return false;
}

void set_log_level(spdlog::level::level_enum level) {
  std::lock_guard lock(registry_mutex());
  spdlog::set_level(level);
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(registry_mutex());
  if (auto existing = spdlog::get(name)) return existing;
  auto created = std::make_shared<spdlog::logger>(name, shared_sink());
  created->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  created->set_level(spdlog::get_level());
  created->flush_on(spdlog::level::info);
  spdlog::register_logger(created);
  return created;
}

}  // namespace blockd::common
