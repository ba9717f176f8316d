#include "common/size.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <utility>

namespace blockd::common {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<unsigned> unit_shift(std::string_view unit) {
  const std::string u = lower(unit);
  if (u.empty() || u == "b") return 0;
  static constexpr std::array<std::pair<char, unsigned>, 6> kUnits = {
      {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}, {'p', 50}, {'e', 60}}};
  for (auto [letter, shift] : kUnits) {
    if (u[0] != letter) continue;
    const std::string_view rest = std::string_view(u).substr(1);
    if (rest.empty() || rest == "b" || rest == "ib") return shift;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || ptr == begin) return std::nullopt;
  std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  const auto shift = unit_shift(unit);
  if (!shift) return std::nullopt;
  if (*shift > 0 && number > (UINT64_MAX >> *shift)) return std::nullopt;
  return number << *shift;
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<const char*, 7> kNames = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  double value = static_cast<double>(bytes);
  // 1023.95 and above would print as "1024.0": step up to the next unit instead.
  while (value >= 1023.95 && unit + 1 < kNames.size()) {
    value /= 1024.0;
    ++unit;
  }
  char out[32];
  if (unit == 0 || value == static_cast<double>(static_cast<std::uint64_t>(value))) {
    std::snprintf(out, sizeof out, "%.0f %s", value, kNames[unit]);
  } else {
    std::snprintf(out, sizeof out, "%.1f %s", value, kNames[unit]);
  }
  return out;
}

}  // namespace blockd::common
