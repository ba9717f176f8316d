// Progress: what a long copy tells the person waiting for it, on stderr. On a terminal
// one line redrawn with '\r' (bar, percent, MiB/s, ETA) at most ten times a second;
// otherwise (a log, CI) a plain line every few seconds; nothing when quiet.
// Thread affinity: the copying thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace blockd::tools {

class Progress {
 public:
  enum class Mode { kTerminal, kPlain, kQuiet };

  // Terminal when `out` is a tty, else plain; quiet wins.
  static Mode detect(std::FILE* out, bool quiet);

  Progress(std::string label, std::uint64_t total, Mode mode, std::FILE* out = stderr,
           std::chrono::seconds plain_interval = std::chrono::seconds(5));

  void update(std::uint64_t done);
  // The last line ("... 100% ... in 3.2 s"), then a newline on a terminal.
  void finish();

  // For tests: the text of one update without the '\r'.
  static std::string line(const std::string& label, std::uint64_t done, std::uint64_t total,
                          double seconds, bool bar);

 private:
  std::string label_;
  std::uint64_t total_;
  Mode mode_;
  std::FILE* out_;
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  std::uint64_t done_ = 0;
  bool drawn_ = false;
};

}  // namespace blockd::tools
