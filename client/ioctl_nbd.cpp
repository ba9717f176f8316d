#include "client/ioctl_nbd.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/nbd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace blockd::client {

namespace {

class SystemDeviceCalls final : public NbdDeviceCalls {
 public:
  int open(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
  }
  int ioctl(int fd, unsigned long request, unsigned long arg) override {
    int rc;
    do {
      rc = ::ioctl(fd, request, arg);
    } while (rc < 0 && errno == EINTR && request != NBD_DO_IT);
    return rc >= 0 ? rc : -errno;
  }
  void close(int fd) override { ::close(fd); }
};

std::string device_path(const std::string& dir, std::uint32_t index) {
  return dir + "/nbd" + std::to_string(index);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::optional<std::uint32_t> nbd_index(const char* name) {
  if (std::strncmp(name, "nbd", 3) != 0 || name[3] == '\0') return std::nullopt;
  std::uint64_t value = 0;
  for (const char* p = name + 3; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || p - name > 9) return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(*p - '0');
  }
  return static_cast<std::uint32_t>(value);
}

using namespace std::chrono_literals;

}  // namespace

NbdDeviceCalls& system_device_calls() {
  static SystemDeviceCalls calls;
  return calls;
}

std::vector<std::uint32_t> list_nbd_devices(const std::string& sys_block) {
  std::vector<std::uint32_t> out;
  DIR* dir = ::opendir(sys_block.c_str());
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    if (auto index = nbd_index(e->d_name)) out.push_back(*index);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<NbdDeviceStatus> sysfs_nbd_status(const std::string& sys_block, std::optional<std::uint32_t> index) {
  std::vector<NbdDeviceStatus> out;
  for (std::uint32_t i : list_nbd_devices(sys_block)) {
    if (index && i != *index) continue;
    out.push_back({i, exists(device_path(sys_block, i) + "/pid")});
  }
  return out;
}

std::vector<std::uint32_t> free_nbd_devices(const std::string& sys_block) {
  std::vector<std::uint32_t> out;
  for (const auto& s : sysfs_nbd_status(sys_block, std::nullopt)) {
    if (!s.connected) out.push_back(s.index);
  }
  return out;
}

const char* ioctl_name(unsigned long request) {
  switch (request) {
    case NBD_SET_SOCK: return "NBD_SET_SOCK";
    case NBD_SET_BLKSIZE: return "NBD_SET_BLKSIZE";
    case NBD_SET_SIZE: return "NBD_SET_SIZE";
    case NBD_DO_IT: return "NBD_DO_IT";
    case NBD_CLEAR_SOCK: return "NBD_CLEAR_SOCK";
    case NBD_SET_SIZE_BLOCKS: return "NBD_SET_SIZE_BLOCKS";
    case NBD_DISCONNECT: return "NBD_DISCONNECT";
    case NBD_SET_TIMEOUT: return "NBD_SET_TIMEOUT";
    case NBD_SET_FLAGS: return "NBD_SET_FLAGS";
    default: return "NBD_?";
  }
}

std::string explain_ioctl_error(const std::string& call, int error, std::uint32_t index) {
  const std::string device = "/dev/nbd" + std::to_string(index);
  std::string what;
  switch (error) {
    case EPERM:
    case EACCES:
      what = "not permitted: attaching needs CAP_SYS_ADMIN (run as root)";
      break;
    case ENOENT:
    case ENXIO:
    case ENODEV:
      what = device + " does not exist (the nbd module makes nbds_max devices, 16 by default: "
                      "modprobe nbd nbds_max=N)";
      break;
    case EBUSY:
      what = device + " is busy (already connected, or being set up by another process)";
      break;
    case EINVAL:
      if (call == "NBD_SET_SOCK") {
        what = device + " refused the socket (is it connected through netlink? see dmesg)";
      } else if (call == "NBD_DO_IT") {
        what = device + " cannot start (no socket, or several connections without the server's CAN_MULTI_CONN)";
      } else if (call == "NBD_SET_BLKSIZE" || call == "NBD_SET_SIZE") {
        what = "the kernel refused the size or block size, or " + device + " is connected through netlink";
      } else {
        what = device + " refused it (EINVAL: connected through netlink? see dmesg)";
      }
      break;
    case ENOTTY:
      what = device + " is not an nbd device, or the kernel does not know this ioctl";
      break;
    case ETIMEDOUT:
      what = "a request timed out on the last connection";
      break;
    default:
      what = std::strerror(error);
  }
  return call + " " + device + ": " + what;
}

IoctlNbd::IoctlNbd(NbdDeviceCalls& calls, NbdPaths paths, std::chrono::milliseconds start_timeout,
                   std::chrono::milliseconds disconnect_wait)
    : calls_(calls), paths_(std::move(paths)), start_timeout_(start_timeout), disconnect_wait_(disconnect_wait) {
  ended_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ended_fd_ < 0) throw KernelNbdError(std::string("eventfd: ") + std::strerror(errno), errno);
}

IoctlNbd::~IoctlNbd() {
  if (thread_.joinable()) {
    bool running;
    {
      std::lock_guard lock(mutex_);
      running = !ended_;
    }
    if (running && index_) {
      try {
        disconnect(*index_);
      } catch (const std::exception&) {
      }
    }
    join();
  }
  ::close(ended_fd_);
}

void IoctlNbd::join() {
  if (thread_.joinable()) thread_.join();
}

bool IoctlNbd::ended() const {
  std::lock_guard lock(mutex_);
  return ended_;
}

bool IoctlNbd::disconnect_requested() const {
  std::lock_guard lock(mutex_);
  return disconnect_requested_;
}

int IoctlNbd::end_error() const {
  std::lock_guard lock(mutex_);
  return end_error_;
}

// The device's own thread: every ioctl of the setup, then NBD_DO_IT for the device's life.
void IoctlNbd::run(std::uint32_t index, NbdConnectRequest request) {
  // A signal delivered to this thread would end NBD_DO_IT, and with it the device.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);

  auto finish = [&](const std::string& call, int setup_error, int end_error) {
    {
      std::lock_guard lock(mutex_);
      setup_call_ = call;
      setup_error_ = setup_error;
      end_error_ = end_error;
      ended_ = true;
    }
    changed_.notify_all();
    const std::uint64_t one = 1;
    (void)!::write(ended_fd_, &one, sizeof one);
  };

  const int fd = calls_.open(device_path(paths_.dev, index));
  if (fd < 0) {
    finish("open", -fd, 0);
    return;
  }
  const std::pair<unsigned long, unsigned long> settings[] = {
      {NBD_SET_BLKSIZE, static_cast<unsigned long>(request.block_size)},
      {NBD_SET_SIZE, static_cast<unsigned long>(request.size_bytes)},
      {NBD_SET_TIMEOUT, static_cast<unsigned long>(request.timeout.count())},
      {NBD_SET_FLAGS, static_cast<unsigned long>(request.server_flags)},
  };
  for (const auto& [call, arg] : settings) {
    const int rc = calls_.ioctl(fd, call, arg);
    if (rc < 0) {
      calls_.close(fd);
      finish(ioctl_name(call), -rc, 0);
      return;
    }
  }
  bool have_socket = false;
  for (int sock : request.socket_fds) {
    const int rc = calls_.ioctl(fd, NBD_SET_SOCK, static_cast<unsigned long>(sock));
    if (rc < 0) {
      // Only a device we gave a socket to is ours to clear; one that refused the first
      // socket may be someone else's (CLEAR_SOCK works on any device, netlink's too).
      if (have_socket) calls_.ioctl(fd, NBD_CLEAR_SOCK, 0);
      calls_.close(fd);
      finish("NBD_SET_SOCK", -rc, 0);
      return;
    }
    have_socket = true;
  }
  {
    std::lock_guard lock(mutex_);
    configured_ = true;
  }
  changed_.notify_all();

  const int rc = calls_.ioctl(fd, NBD_DO_IT, 0);
  // The device has stopped (every connection gone, or disconnected). Clearing the sockets
  // fails what is still queued and lets a later setup (any task) use the device again.
  calls_.ioctl(fd, NBD_CLEAR_SOCK, 0);
  calls_.close(fd);
  finish("NBD_DO_IT", 0, rc < 0 ? -rc : 0);
}

bool IoctlNbd::wait_ended(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds limit) {
  return changed_.wait_for(lock, limit, [this] { return ended_; });
}

std::uint32_t IoctlNbd::start(std::uint32_t index, const NbdConnectRequest& request) {
  {
    std::lock_guard lock(mutex_);
    index_ = index;
    configured_ = ended_ = disconnect_requested_ = false;
    setup_call_.clear();
    setup_error_ = end_error_ = 0;
  }
  thread_ = std::thread(&IoctlNbd::run, this, index, request);
  const std::string pid = device_path(paths_.sys_block, index) + "/pid";
  std::unique_lock lock(mutex_);
  std::optional<std::chrono::steady_clock::time_point> deadline;
  for (;;) {
    if (ended_) {
      const std::string call = setup_call_;
      const int error = setup_error_ != 0 ? setup_error_ : (end_error_ != 0 ? end_error_ : EIO);
      const bool during_setup = setup_error_ != 0;
      lock.unlock();
      join();
      index_.reset();
      if (!during_setup && end_error_ == 0) {
        throw KernelNbdError("NBD_DO_IT /dev/nbd" + std::to_string(index) +
                                 ": the device stopped at once (the server closed the connections? see dmesg)",
                             EIO);
      }
      throw KernelNbdError(explain_ioctl_error(call, error, index), error);
    }
    if (configured_) {
      if (exists(pid)) return index;
      if (!deadline) deadline = std::chrono::steady_clock::now() + start_timeout_;
      if (std::chrono::steady_clock::now() >= *deadline) break;
    }
    changed_.wait_for(lock, 20ms);
  }
  lock.unlock();
  // NBD_DO_IT never showed up in sysfs: tear the half-started device down.
  const int fd = calls_.open(device_path(paths_.dev, index));
  if (fd >= 0) {
    calls_.ioctl(fd, NBD_CLEAR_SOCK, 0);
    calls_.close(fd);
  }
  join();
  index_.reset();
  throw KernelNbdError("NBD_DO_IT /dev/nbd" + std::to_string(index) + ": the device did not start within " +
                           std::to_string(start_timeout_.count()) + " ms (no " + pid + ")",
                       ETIMEDOUT);
}

std::uint32_t IoctlNbd::connect(const NbdConnectRequest& request) {
  {
    std::lock_guard lock(mutex_);
    if (index_ || thread_.joinable()) {
      throw KernelNbdError("IoctlNbd: one device per instance (/dev/nbd" + std::to_string(index_.value_or(0)) +
                               " is set up already)",
                           EBUSY);
    }
  }
  if (request.index) return start(*request.index, request);
  const auto candidates = free_nbd_devices(paths_.sys_block);
  if (candidates.empty()) {
    throw KernelNbdError("no free nbd device: every " + paths_.sys_block +
                             "/nbdN has a pid (load the module with more: modprobe nbd nbds_max=N)",
                         ENOSPC);
  }
  // Another process may take a free device between our look and our NBD_SET_SOCK (EBUSY):
  // then the next one.
  for (std::size_t i = 0;; ++i) {
    try {
      return start(candidates[i], request);
    } catch (const KernelNbdError& e) {
      if (e.error() != EBUSY || i + 1 >= candidates.size() || i >= 3) throw;
    }
  }
}

void IoctlNbd::reconfigure(std::uint32_t index, const std::vector<int>&, const std::string&) {
  throw KernelNbdError("/dev/nbd" + std::to_string(index) +
                           ": the ioctl interface cannot replace a connection (no NBD_CMD_RECONFIGURE)",
                       ENOTSUP);
}

void IoctlNbd::disconnect(std::uint32_t index) {
  std::unique_lock lock(mutex_);
  const bool ours = index_ && *index_ == index;
  if (ours && ended_) {  // stopped already (or disconnected before)
    lock.unlock();
    join();
    return;
  }
  if (ours) disconnect_requested_ = true;
  lock.unlock();

  const int fd = calls_.open(device_path(paths_.dev, index));
  if (fd < 0) throw KernelNbdError(explain_ioctl_error("open", -fd, index), -fd);
  const int rc = calls_.ioctl(fd, NBD_DISCONNECT, 0);
  if (!ours) {
    // Not set up by us (nbd-client, say): what `nbd-client -d` does.
    calls_.ioctl(fd, NBD_CLEAR_SOCK, 0);
    calls_.close(fd);
    if (rc < 0) throw KernelNbdError(explain_ioctl_error("NBD_DISCONNECT", -rc, index), -rc);
    return;
  }
  // NBD_CMD_DISC went out on every connection; NBD_DO_IT returns once the server has
  // closed them. If it does not, shut the sockets down ourselves.
  lock.lock();
  bool done = wait_ended(lock, disconnect_wait_);
  lock.unlock();
  if (!done) {
    calls_.ioctl(fd, NBD_CLEAR_SOCK, 0);
    lock.lock();
    done = wait_ended(lock, disconnect_wait_);
    lock.unlock();
  }
  calls_.close(fd);
  if (!done) {
    throw KernelNbdError("NBD_DISCONNECT /dev/nbd" + std::to_string(index) +
                             ": NBD_DO_IT did not return, even after NBD_CLEAR_SOCK",
                         ETIMEDOUT);
  }
  join();
}

std::vector<NbdDeviceStatus> IoctlNbd::status(std::optional<std::uint32_t> index) {
  return sysfs_nbd_status(paths_.sys_block, index);
}

}  // namespace blockd::client
