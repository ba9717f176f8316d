// The kernel bridge's fallback: the NBD driver's classic ioctl interface (<linux/nbd.h>;
// drivers/block/nbd.c __nbd_ioctl, nbd_add_socket, nbd_start_device_ioctl), for kernels
// whose nbd module has no generic netlink family "nbd" (before 4.12), or when forced
// (`blockctl attach --interface ioctl`).
//
// How the interface works, and what it means here:
// - One task sets a device up: open /dev/nbdN, NBD_SET_BLKSIZE, NBD_SET_SIZE,
//   NBD_SET_TIMEOUT, NBD_SET_FLAGS (the server's transmission flags), one NBD_SET_SOCK per
//   connection (the kernel refuses sockets from a second task with EBUSY, "Device being
//   setup by another task"), then NBD_DO_IT, which starts the device and blocks until
//   every connection is gone. So IoctlNbd runs all of them on one dedicated thread per
//   device, with every signal blocked there (a signal would end NBD_DO_IT and the device).
// - The device lives only as long as that NBD_DO_IT: when the process dies the kernel
//   shuts the sockets down and fails the queued I/O. Unlike a netlink attachment, an ioctl
//   attachment cannot outlive its supervisor; the destructor disconnects.
// - There is no NBD_CMD_RECONFIGURE and no dead-connection timeout: a connection that
//   dies is never replaced (the kernel sends its requests over the others); when the last
//   one dies NBD_DO_IT returns and the device's I/O fails. reconfigure() throws ENOTSUP;
//   ended_fd() tells the supervisor that the device ended.
// - NBD_DISCONNECT (sends NBD_CMD_DISC on every connection; the server closes them, and
//   NBD_DO_IT returns) and NBD_CLEAR_SOCK (shuts the sockets down, fails what is queued,
//   and lets another task set the device up again) work from any task; detach uses both.
// - Status comes from sysfs: /sys/block/nbdN/pid exists while NBD_DO_IT runs (it names
//   the thread in NBD_DO_IT, for any interface), /sys/block/nbdN/size is in sectors.
//
// NbdDeviceCalls is the seam for the system calls, so the tests check the exact ioctl
// sequence, the thread it runs on and the errors without a kernel.
//
// Thread affinity: an IoctlNbd is used by one thread at a time (besides its own NBD_DO_IT
// thread). Errors: KernelNbdError with the kernel's errno and what it means.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/kernel_nbd.h"

namespace blockd::client {

class NbdDeviceCalls {
 public:
  virtual ~NbdDeviceCalls() = default;
  // open(2) read-write, close-on-exec: a descriptor, or -errno.
  virtual int open(const std::string& path) = 0;
  // ioctl(2) with an integer argument: >= 0, or -errno.
  virtual int ioctl(int fd, unsigned long request, unsigned long arg) = 0;
  virtual void close(int fd) = 0;
};

// The real system calls.
NbdDeviceCalls& system_device_calls();

struct NbdPaths {
  std::string dev = "/dev";              // /dev/nbdN
  std::string sys_block = "/sys/block";  // /sys/block/nbdN/{pid,size}
};

// The nbdN devices under `sys_block`, by index.
std::vector<std::uint32_t> list_nbd_devices(const std::string& sys_block);
// sysfs status of every device (or one): connected while /sys/block/nbdN/pid exists.
std::vector<NbdDeviceStatus> sysfs_nbd_status(const std::string& sys_block, std::optional<std::uint32_t> index);
// The devices whose pid file is absent, lowest index first (what ioctl mode picks from
// when no --device is given: the kernel chooses only for netlink).
std::vector<std::uint32_t> free_nbd_devices(const std::string& sys_block);

// What an errno from one of the ioctls (or the open) means, for people.
std::string explain_ioctl_error(const std::string& call, int error, std::uint32_t index);
// "NBD_SET_SOCK" for the request number.
const char* ioctl_name(unsigned long request);

class IoctlNbd final : public KernelNbd {
 public:
  // start_timeout: how long connect() waits for NBD_DO_IT to show in sysfs;
  // disconnect_wait: how long disconnect() waits for the server to close the connections
  // after NBD_DISCONNECT before it shuts them down (NBD_CLEAR_SOCK).
  explicit IoctlNbd(NbdDeviceCalls& calls = system_device_calls(), NbdPaths paths = {},
                    std::chrono::milliseconds start_timeout = std::chrono::seconds(15),
                    std::chrono::milliseconds disconnect_wait = std::chrono::seconds(5));
  // A device still running is disconnected: it cannot outlive its NBD_DO_IT thread.
  ~IoctlNbd() override;
  IoctlNbd(const IoctlNbd&) = delete;
  IoctlNbd& operator=(const IoctlNbd&) = delete;

  // Sets the device up on a new thread and returns once NBD_DO_IT runs (/sys/block/nbdN/pid
  // exists). Without request.index: the first free device (retried on the next one if
  // another process takes it first). dead_conn_timeout, client_flags and backend have no
  // ioctl equivalent and are ignored. One device per IoctlNbd.
  std::uint32_t connect(const NbdConnectRequest& request) override;
  // Always throws KernelNbdError(ENOTSUP): the ioctl interface cannot replace a connection.
  void reconfigure(std::uint32_t index, const std::vector<int>& socket_fds, const std::string& backend) override;
  // Our device: NBD_DISCONNECT, wait for NBD_DO_IT to return (then NBD_CLEAR_SOCK if it
  // does not within a few seconds), join the thread. Any other device: NBD_DISCONNECT and
  // NBD_CLEAR_SOCK, as `nbd-client -d` does. A device that already ended: nothing.
  void disconnect(std::uint32_t index) override;
  std::vector<NbdDeviceStatus> status(std::optional<std::uint32_t> index) override;

  // An eventfd, readable once NBD_DO_IT returned for the device connect() started: the
  // device has ended (all connections lost, or disconnected).
  int ended_fd() const { return ended_fd_; }
  bool ended() const;
  // Whether the end was asked for (disconnect()), as opposed to every connection dying.
  bool disconnect_requested() const;
  // NBD_DO_IT's errno when it returned an error (ETIMEDOUT after a request timed out on
  // the last connection), else 0.
  int end_error() const;

 private:
  void run(std::uint32_t index, NbdConnectRequest request);
  std::uint32_t start(std::uint32_t index, const NbdConnectRequest& request);
  void join();
  bool wait_ended(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds limit);

  NbdDeviceCalls& calls_;
  NbdPaths paths_;
  std::chrono::milliseconds start_timeout_;
  std::chrono::milliseconds disconnect_wait_;
  int ended_fd_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::thread thread_;
  std::optional<std::uint32_t> index_;  // the device connect() set up
  bool configured_ = false;             // every NBD_SET_* done; NBD_DO_IT is next
  bool ended_ = false;                  // the thread is done (setup failed, or NBD_DO_IT returned)
  std::string setup_call_;              // the call that failed during setup (or NBD_DO_IT)
  int setup_error_ = 0;
  int end_error_ = 0;
  bool disconnect_requested_ = false;
};

}  // namespace blockd::client
