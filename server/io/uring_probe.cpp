#include "server/io/uring_probe.h"

#include <liburing.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>

namespace blockd::server::io {

namespace {

// Every opcode blockd submits (server/io/ring.cpp).
constexpr std::array<std::pair<int, const char*>, 5> kRequiredOps = {{
    {IORING_OP_READ, "IORING_OP_READ (5.6)"},
    {IORING_OP_WRITE, "IORING_OP_WRITE (5.6)"},
    {IORING_OP_FSYNC, "IORING_OP_FSYNC (5.1)"},
    {IORING_OP_FALLOCATE, "IORING_OP_FALLOCATE (5.6)"},
    {IORING_OP_FADVISE, "IORING_OP_FADVISE (5.6)"},
}};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string explain_setup_failure(int err, const std::string& sysctl) {
  const std::string prefix = "io_uring is not usable: io_uring_setup failed with " +
                             std::string(std::strerror(err)) + ". ";
  switch (err) {
    case ENOSYS:
      return prefix + "This kernel was built without io_uring (CONFIG_IO_URING=n) or is older than 5.6. "
                      "blockd needs Linux 5.6 or newer with io_uring enabled.";
    case EPERM:
      if (!sysctl.empty() && sysctl != "0") {
        return prefix + "The sysctl kernel.io_uring_disabled is " + sysctl +
               ". Set it to 0 (sysctl -w kernel.io_uring_disabled=0), or to 1 and run blockd as a "
               "member of the group named by kernel.io_uring_group.";
      }
      return prefix + "A seccomp filter (a container runtime's default profile, or a systemd "
                      "SystemCallFilter= without io_uring_setup) forbids io_uring. Allow the "
                      "io_uring_setup, io_uring_enter and io_uring_register system calls.";
    case ENOMEM:
      return prefix + "The locked-memory limit (RLIMIT_MEMLOCK) is too small for the rings. "
                      "Raise it (ulimit -l, or LimitMEMLOCK= in the unit).";
    default:
      return prefix + "Check the kernel log (dmesg) and the process's limits.";
  }
}

}  // namespace

UringProbe::Kernel UringProbe::real_kernel() {
  Kernel k;
  k.queue_init = [](unsigned entries, io_uring* ring) { return io_uring_queue_init(entries, ring, 0); };
  k.has_opcode = [](io_uring* ring, int opcode) {
    std::unique_ptr<io_uring_probe, decltype(&io_uring_free_probe)> probe(io_uring_get_probe_ring(ring),
                                                                           &io_uring_free_probe);
    return probe && io_uring_opcode_supported(probe.get(), opcode);
  };
  k.queue_exit = [](io_uring* ring) { io_uring_queue_exit(ring); };
  k.io_uring_disabled_sysctl = [] {
    std::ifstream in("/proc/sys/kernel/io_uring_disabled");
    std::string value;
    std::getline(in, value);
    return trim(value);
  };
  return k;
}

std::string UringProbe::diagnose(const Kernel& kernel) {
  io_uring ring{};
  const int ret = kernel.queue_init(8, &ring);
  if (ret < 0) return explain_setup_failure(-ret, kernel.io_uring_disabled_sysctl());
  std::string missing;
  for (auto [opcode, name] : kRequiredOps) {
    if (kernel.has_opcode(&ring, opcode)) continue;
    missing += missing.empty() ? "" : ", ";
    missing += name;
  }
  kernel.queue_exit(&ring);
  if (missing.empty()) return {};
  return "io_uring is present but lacks operations blockd needs: " + missing +
         ". Run blockd on Linux 5.6 or newer.";
}

}  // namespace blockd::server::io
