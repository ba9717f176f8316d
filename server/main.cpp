// blockd: thin entry point. Everything lives in blockd_server so tests can link it.
#include <sys/resource.h>

#include <csignal>
#include <iostream>

#include "common/logging.h"
#include "server/config.h"
#include "server/io/uring_probe.h"
#include "server/server.h"

namespace {

// Each connection is a descriptor: allow as many as the hard limit permits.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace blockd;
  server::ServerConfig config;
  if (auto exit_code = server::parse_command_line(argc, argv, config)) return *exit_code;
  common::set_log_level(config.log_level);
  std::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();

  if (const std::string problem = server::io::UringProbe::diagnose(); !problem.empty()) {
    std::cerr << "blockd: " << problem << "\n";
    return 1;
  }
  try {
    server::Server server(std::move(config));
    return server.run();
  } catch (const std::exception& e) {
    std::cerr << "blockd: " << e.what() << "\n";
    return 1;
  }
}
