// blockctl: thin main; everything is in blockctl_lib so that tests link it.
#include <csignal>

#include "tools/cli.h"

int main(int argc, char** argv) {
  // A reader that goes away (`blockctl volume export db - | head`) is an error blockctl
  // reports (EPIPE, exit 1), not a silent death by signal; sockets use MSG_NOSIGNAL.
  std::signal(SIGPIPE, SIG_IGN);
  return blockd::tools::run_cli(argc, argv);
}
