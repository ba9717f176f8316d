// UringProbe: checks at start-up that io_uring is usable and has every operation
// blockd submits, and explains precisely what is missing when it is not
// (a kernel built without it, a sysctl, a seccomp filter, a memlock limit, an old kernel).
#pragma once

#include <functional>
#include <string>

struct io_uring;

namespace blockd::server::io {

class UringProbe {
 public:
  // The kernel seams, replaceable in unit tests.
  struct Kernel {
    std::function<int(unsigned entries, io_uring* ring)> queue_init;
    std::function<bool(io_uring* ring, int opcode)> has_opcode;  // valid after queue_init
    std::function<void(io_uring* ring)> queue_exit;
    std::function<std::string()> io_uring_disabled_sysctl;  // contents of the sysctl, "" if absent
  };
  static Kernel real_kernel();

  // Empty when io_uring is usable; otherwise one message that says what is missing and how to fix it.
  static std::string diagnose(const Kernel& kernel = real_kernel());
};

}  // namespace blockd::server::io
