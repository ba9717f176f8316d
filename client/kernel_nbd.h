// The kernel bridge: the Linux NBD driver's generic netlink family "nbd"
// (<linux/nbd-netlink.h>; drivers/block/nbd.c nbd_genl_connect, nbd_genl_reconfigure,
// nbd_genl_disconnect, nbd_genl_status, and the NBD_CMD_LINK_DEAD multicast).
//
// KernelNbd is the seam: the supervisor talks to it, the tests give it a fake.
// NetlinkNbd is the real one (libnl-genl-3). The build_*_message() functions make the
// exact nl_msg NetlinkNbd sends, so the tests can check attributes without a kernel.
//
// Thread affinity: a NetlinkNbd / LinkDeadMonitor owns a netlink socket and is used by
// one thread at a time. Errors: KernelNbdError with the kernel's errno and what it means.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct nl_msg;
struct nl_sock;

namespace blockd::client {

class KernelNbdError : public std::runtime_error {
 public:
  KernelNbdError(const std::string& message, int error) : std::runtime_error(message), error_(error) {}
  int error() const { return error_; }  // a positive errno, or 0 when not from the kernel

 private:
  int error_;
};

struct NbdConnectRequest {
  std::optional<std::uint32_t> index;  // /dev/nbdN; unset: the kernel picks a free one
  std::uint64_t size_bytes = 0;
  std::uint64_t block_size = 512;      // a power of two, 512..PAGE_SIZE
  std::uint64_t server_flags = 0;      // the transmission flags the server sent at GO
  std::uint64_t client_flags = 0;      // NBD_CFLAG_*
  std::chrono::seconds timeout{30};    // per request, then requeued (nbd_xmit_timeout)
  std::chrono::seconds dead_conn_timeout{60};  // how long I/O waits for a reconfigure
  std::vector<int> socket_fds;         // connected, past NBD_OPT_GO, simple replies only
  std::string backend;                 // shown in /sys/block/nbdN/backend
};

struct NbdDeviceStatus {
  std::uint32_t index = 0;
  bool connected = false;
};

class KernelNbd {
 public:
  virtual ~KernelNbd() = default;
  // Returns the index of the device the kernel connected.
  virtual std::uint32_t connect(const NbdConnectRequest& request) = 0;
  // Each fd replaces one dead connection (the kernel ignores fds beyond the dead ones).
  // `backend` must repeat the connect's backend identifier: the kernel refuses a
  // reconfigure without it ("must specify backend", EINVAL) once one was set.
  virtual void reconfigure(std::uint32_t index, const std::vector<int>& socket_fds,
                           const std::string& backend) = 0;
  virtual void disconnect(std::uint32_t index) = 0;
  virtual std::vector<NbdDeviceStatus> status(std::optional<std::uint32_t> index) = 0;
};

struct NlMsgDeleter {
  void operator()(nl_msg* msg) const;
};
using NlMsgPtr = std::unique_ptr<nl_msg, NlMsgDeleter>;

NlMsgPtr build_connect_message(int family, const NbdConnectRequest& request);
NlMsgPtr build_reconfigure_message(int family, std::uint32_t index, const std::vector<int>& socket_fds,
                                   const std::string& backend);
NlMsgPtr build_disconnect_message(int family, std::uint32_t index);
NlMsgPtr build_status_message(int family, std::optional<std::uint32_t> index);
// NBD_ATTR_DEVICE_LIST of a status reply.
std::vector<NbdDeviceStatus> parse_status_reply(nl_msg* msg);
// NBD_ATTR_INDEX of a connect reply or a link-dead notification.
std::optional<std::uint32_t> parse_index(nl_msg* msg);
// The genl command of a message (NBD_CMD_*).
std::uint8_t message_command(nl_msg* msg);

// "is the nbd module loaded" (/sys/module/nbd), for messages before netlink is tried.
bool nbd_module_loaded();

class NetlinkNbd final : public KernelNbd {
 public:
  // Throws KernelNbdError: "the nbd kernel module is not loaded (modprobe nbd)" or
  // "the kernel's nbd module has no netlink interface".
  NetlinkNbd();
  ~NetlinkNbd() override;
  NetlinkNbd(const NetlinkNbd&) = delete;
  NetlinkNbd& operator=(const NetlinkNbd&) = delete;

  std::uint32_t connect(const NbdConnectRequest& request) override;
  void reconfigure(std::uint32_t index, const std::vector<int>& socket_fds, const std::string& backend) override;
  void disconnect(std::uint32_t index) override;
  std::vector<NbdDeviceStatus> status(std::optional<std::uint32_t> index) override;

 private:
  nl_sock* sock_ = nullptr;
  int family_ = 0;
};

// Members of "nbd_mc_group": NBD_CMD_LINK_DEAD names a device one of whose connections
// died. Non-blocking: poll fd(), then read_events().
class LinkDeadMonitor {
 public:
  LinkDeadMonitor();  // throws KernelNbdError
  ~LinkDeadMonitor();
  LinkDeadMonitor(const LinkDeadMonitor&) = delete;
  LinkDeadMonitor& operator=(const LinkDeadMonitor&) = delete;

  int fd() const;
  // The device index of every link-dead notification waiting on the socket.
  std::vector<std::uint32_t> read_events();

 private:
  nl_sock* sock_ = nullptr;
  std::vector<std::uint32_t> pending_;
};

}  // namespace blockd::client
