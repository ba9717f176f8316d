#include "server/lease/duration_text.h"

namespace blockd::server::lease {

std::string duration_text(Duration duration) {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(duration).count();
  if (seconds < 0) seconds = 0;
  const auto days = seconds / 86400;
  const auto hours = seconds / 3600 % 24;
  const auto minutes = seconds / 60 % 60;
  const auto rest = seconds % 60;
  std::string out;
  if (days > 0) out += std::to_string(days) + "d";
  if (days > 0 || hours > 0) out += std::to_string(hours) + "h";
  if (days > 0 || hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  out += std::to_string(rest) + "s";
  return out;
}

}  // namespace blockd::server::lease
