// blockctl's command line (CLI11): the command tree, --help everywhere, and the
// mapping of outcomes to exit codes: 0 success, 1 failure (the server said no, cannot
// connect, I/O, verification), 2 usage (CLI11's parse errors and UsageError).
#pragma once

namespace blockd::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

int run_cli(int argc, char** argv);

}  // namespace blockd::tools
