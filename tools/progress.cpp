#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "common/size.h"

namespace blockd::tools {

namespace {

constexpr int kBarWidth = 30;
constexpr auto kTerminalInterval = std::chrono::milliseconds(100);

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<std::uint64_t>(seconds + 0.5);
  char out[32];
  if (s >= 3600) {
    std::snprintf(out, sizeof out, "%llu:%02llu:%02llu", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60), static_cast<unsigned long long>(s % 60));
  } else {
    std::snprintf(out, sizeof out, "%llu:%02llu", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  }
  return out;
}

}  // namespace

Progress::Mode Progress::detect(std::FILE* out, bool quiet) {
  if (quiet) return Mode::kQuiet;
  return ::isatty(::fileno(out)) ? Mode::kTerminal : Mode::kPlain;
}

Progress::Progress(std::string label, std::uint64_t total, Mode mode, std::FILE* out,
                   std::chrono::seconds plain_interval)
    : label_(std::move(label)),
      total_(total),
      mode_(mode),
      out_(out),
      interval_(mode == Mode::kTerminal ? std::chrono::steady_clock::duration(kTerminalInterval)
                                        : std::chrono::steady_clock::duration(plain_interval)),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

std::string Progress::line(const std::string& label, std::uint64_t done, std::uint64_t total,
                           double seconds, bool bar) {
  const double fraction = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const double mib_s = seconds > 0 ? static_cast<double>(done) / seconds / (1 << 20) : 0.0;
  const double eta = done == 0 || seconds <= 0 ? NAN : seconds * (1.0 - fraction) / fraction;
  char text[256];
  if (bar) {
    const int filled = static_cast<int>(fraction * kBarWidth);
    const std::string bars = std::string(static_cast<std::size_t>(filled), '#') +
                             std::string(static_cast<std::size_t>(kBarWidth - filled), '.');
    std::snprintf(text, sizeof text, "%s [%s] %3d%%  %8.1f MiB/s  ETA %s", label.c_str(), bars.c_str(),
                  static_cast<int>(fraction * 100), mib_s, format_eta(eta).c_str());
  } else {
    std::snprintf(text, sizeof text, "%s: %d%% (%s of %s), %.1f MiB/s, ETA %s", label.c_str(),
                  static_cast<int>(fraction * 100), common::format_size(done).c_str(),
                  common::format_size(total).c_str(), mib_s, format_eta(eta).c_str());
  }
  return text;
}

void Progress::update(std::uint64_t done) {
  done_ = done;
  if (mode_ == Mode::kQuiet) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < interval_) return;
  last_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const std::string text = line(label_, done, total_, seconds, mode_ == Mode::kTerminal);
  if (mode_ == Mode::kTerminal) {
    // "\033[K" clears what a longer previous line left behind.
    std::fprintf(out_, "\r%s\033[K", text.c_str());
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
  drawn_ = true;
}

void Progress::finish() {
  if (mode_ == Mode::kQuiet) return;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string text = line(label_, done_, total_, seconds, mode_ == Mode::kTerminal);
  if (mode_ == Mode::kTerminal) {
    std::fprintf(out_, "\r%s\033[K\n", text.c_str());
  } else if (drawn_ || seconds >= 1.0) {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

}  // namespace blockd::tools
