#include "client/kernel_nbd.h"

#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <utility>

namespace blockd::client {

void NlMsgDeleter::operator()(nl_msg* msg) const { nlmsg_free(msg); }

namespace {

NlMsgPtr new_message(int family, std::uint8_t command) {
  NlMsgPtr msg(nlmsg_alloc());
  if (!msg) throw KernelNbdError("netlink: out of memory", ENOMEM);
  if (genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, command, NBD_GENL_VERSION) == nullptr) {
    throw KernelNbdError("netlink: cannot build the message header", ENOMEM);
  }
  return msg;
}

void check_put(int rc) {
  if (rc < 0) throw KernelNbdError(std::string("netlink: message too large: ") + nl_geterror(rc), EMSGSIZE);
}

void put_sockets(nl_msg* msg, const std::vector<int>& fds) {
  nlattr* socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);
  if (socks == nullptr) check_put(-NLE_NOMEM);
  for (int fd : fds) {
    nlattr* item = nla_nest_start(msg, NBD_SOCK_ITEM);
    if (item == nullptr) check_put(-NLE_NOMEM);
    check_put(nla_put_u32(msg, NBD_SOCK_FD, static_cast<std::uint32_t>(fd)));
    nla_nest_end(msg, item);
  }
  nla_nest_end(msg, socks);
}

// What an errno from the nbd family means, for people.
std::string explain(std::uint8_t command, int error, std::optional<std::uint32_t> index) {
  const std::string device = index ? "/dev/nbd" + std::to_string(*index) : std::string("the device");
  switch (error) {
    case EBUSY:
      return device + " is busy (already connected, or being set up or torn down)";
    case ENOSPC:
      return command == NBD_CMD_RECONFIGURE ? device + " has no dead connection to replace"
                                            : std::string("no free nbd device");
    case ENODEV:
    case ENOENT:
      return device + " does not exist";
    case EINVAL:
      return command == NBD_CMD_RECONFIGURE ? device + " is not connected (or the socket is not usable)"
                                            : "the kernel refused the parameters (EINVAL; see dmesg)";
    case EPERM:
      return "not permitted: attaching needs CAP_SYS_ADMIN (run as root)";
    default:
      return std::strerror(error);
  }
}

const char* command_name(std::uint8_t command) {
  switch (command) {
    case NBD_CMD_CONNECT: return "NBD_CMD_CONNECT";
    case NBD_CMD_DISCONNECT: return "NBD_CMD_DISCONNECT";
    case NBD_CMD_RECONFIGURE: return "NBD_CMD_RECONFIGURE";
    case NBD_CMD_STATUS: return "NBD_CMD_STATUS";
    default: return "NBD_CMD_?";
  }
}

struct Exchange {
  int error = 0;  // negative errno from the kernel's ack
  bool done = false;
  std::function<void(nl_msg*)> on_reply;
};

int on_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  x->error = err->error;
  x->done = true;
  return NL_STOP;
}

int on_ack(nl_msg*, void* arg) {
  static_cast<Exchange*>(arg)->done = true;
  return NL_STOP;
}

int on_valid(nl_msg* msg, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  if (x->on_reply) x->on_reply(msg);
  return NL_OK;
}

// Sends `msg` and reads until the kernel's ack; returns the (positive) errno, 0 on success.
int transact(nl_sock* sock, nl_msg* msg, std::function<void(nl_msg*)> on_reply) {
  Exchange x;
  x.on_reply = std::move(on_reply);
  nl_cb* cb = nl_cb_alloc(NL_CB_DEFAULT);
  if (cb == nullptr) throw KernelNbdError("netlink: out of memory", ENOMEM);
  nl_cb_err(cb, NL_CB_CUSTOM, on_error, &x);
  nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &x);
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &x);
  int rc = nl_send_auto(sock, msg);
  while (rc >= 0 && !x.done) rc = nl_recvmsgs(sock, cb);
  nl_cb_put(cb);
  if (!x.done && rc < 0) throw KernelNbdError(std::string("netlink: ") + nl_geterror(rc), EIO);
  return -x.error;
}

[[noreturn]] void fail(std::uint8_t command, int error, std::optional<std::uint32_t> index) {
  throw KernelNbdError(std::string(command_name(command)) + ": " + explain(command, error, index), error);
}

}  // namespace

NlMsgPtr build_connect_message(int family, const NbdConnectRequest& r) {
  NlMsgPtr msg = new_message(family, NBD_CMD_CONNECT);
  if (r.index) check_put(nla_put_u32(msg.get(), NBD_ATTR_INDEX, *r.index));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_SIZE_BYTES, r.size_bytes));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_BLOCK_SIZE_BYTES, r.block_size));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_SERVER_FLAGS, r.server_flags));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_CLIENT_FLAGS, r.client_flags));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_TIMEOUT, static_cast<std::uint64_t>(r.timeout.count())));
  check_put(nla_put_u64(msg.get(), NBD_ATTR_DEAD_CONN_TIMEOUT,
                        static_cast<std::uint64_t>(r.dead_conn_timeout.count())));
  if (!r.backend.empty()) check_put(nla_put_string(msg.get(), NBD_ATTR_BACKEND_IDENTIFIER, r.backend.c_str()));
  put_sockets(msg.get(), r.socket_fds);
  return msg;
}

NlMsgPtr build_reconfigure_message(int family, std::uint32_t index, const std::vector<int>& fds,
                                   const std::string& backend) {
  NlMsgPtr msg = new_message(family, NBD_CMD_RECONFIGURE);
  check_put(nla_put_u32(msg.get(), NBD_ATTR_INDEX, index));
  if (!backend.empty()) check_put(nla_put_string(msg.get(), NBD_ATTR_BACKEND_IDENTIFIER, backend.c_str()));
  put_sockets(msg.get(), fds);
  return msg;
}

NlMsgPtr build_disconnect_message(int family, std::uint32_t index) {
  NlMsgPtr msg = new_message(family, NBD_CMD_DISCONNECT);
  check_put(nla_put_u32(msg.get(), NBD_ATTR_INDEX, index));
  return msg;
}

NlMsgPtr build_status_message(int family, std::optional<std::uint32_t> index) {
  NlMsgPtr msg = new_message(family, NBD_CMD_STATUS);
  if (index) check_put(nla_put_u32(msg.get(), NBD_ATTR_INDEX, *index));
  return msg;
}

std::uint8_t message_command(nl_msg* msg) {
  auto* gnlh = static_cast<genlmsghdr*>(nlmsg_data(nlmsg_hdr(msg)));
  return gnlh->cmd;
}

std::optional<std::uint32_t> parse_index(nl_msg* msg) {
  nlattr* tb[NBD_ATTR_MAX + 1] = {};
  if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, NBD_ATTR_MAX, nullptr) < 0) return std::nullopt;
  if (tb[NBD_ATTR_INDEX] == nullptr) return std::nullopt;
  return nla_get_u32(tb[NBD_ATTR_INDEX]);
}

std::vector<NbdDeviceStatus> parse_status_reply(nl_msg* msg) {
  std::vector<NbdDeviceStatus> out;
  nlattr* tb[NBD_ATTR_MAX + 1] = {};
  if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, NBD_ATTR_MAX, nullptr) < 0) return out;
  if (tb[NBD_ATTR_DEVICE_LIST] == nullptr) return out;
  nlattr* item = nullptr;
  int rem = 0;
  nla_for_each_nested(item, tb[NBD_ATTR_DEVICE_LIST], rem) {
    if (nla_type(item) != NBD_DEVICE_ITEM) continue;
    nlattr* dev[NBD_DEVICE_ATTR_MAX + 1] = {};
    if (nla_parse_nested(dev, NBD_DEVICE_ATTR_MAX, item, nullptr) < 0) continue;
    if (dev[NBD_DEVICE_INDEX] == nullptr) continue;
    NbdDeviceStatus s;
    s.index = nla_get_u32(dev[NBD_DEVICE_INDEX]);
    s.connected = dev[NBD_DEVICE_CONNECTED] != nullptr && nla_get_u8(dev[NBD_DEVICE_CONNECTED]) != 0;
    out.push_back(s);
  }
  return out;
}

bool nbd_module_loaded() {
  struct stat st {};
  return ::stat("/sys/module/nbd", &st) == 0;
}

namespace {

nl_sock* open_genl(int& family) {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) throw KernelNbdError("netlink: out of memory", ENOMEM);
  int rc = genl_connect(sock);
  if (rc < 0) {
    nl_socket_free(sock);
    throw KernelNbdError(std::string("cannot open a generic netlink socket: ") + nl_geterror(rc), EIO);
  }
  family = genl_ctrl_resolve(sock, NBD_GENL_FAMILY_NAME);
  if (family < 0) {
    nl_socket_free(sock);
    if (!nbd_module_loaded()) {
      throw KernelNbdError("the nbd kernel module is not loaded: load it with 'modprobe nbd'", ENOENT);
    }
    throw KernelNbdError("the kernel's nbd module has no netlink interface (generic netlink family \"nbd\" "
                         "not found; a kernel older than 4.12?)",
                         ENOTSUP);
  }
  return sock;
}

}  // namespace

NetlinkNbd::NetlinkNbd() { sock_ = open_genl(family_); }

NetlinkNbd::~NetlinkNbd() { nl_socket_free(sock_); }

std::uint32_t NetlinkNbd::connect(const NbdConnectRequest& request) {
  NlMsgPtr msg = build_connect_message(family_, request);
  std::optional<std::uint32_t> index;
  const int error = transact(sock_, msg.get(), [&](nl_msg* reply) {
    if (auto i = parse_index(reply)) index = i;
  });
  if (error != 0) fail(NBD_CMD_CONNECT, error, request.index);
  if (!index) index = request.index;
  if (!index) throw KernelNbdError("NBD_CMD_CONNECT: the kernel did not say which device it connected", EPROTO);
  return *index;
}

void NetlinkNbd::reconfigure(std::uint32_t index, const std::vector<int>& socket_fds, const std::string& backend) {
  NlMsgPtr msg = build_reconfigure_message(family_, index, socket_fds, backend);
  const int error = transact(sock_, msg.get(), nullptr);
  if (error != 0) fail(NBD_CMD_RECONFIGURE, error, index);
}

void NetlinkNbd::disconnect(std::uint32_t index) {
  NlMsgPtr msg = build_disconnect_message(family_, index);
  const int error = transact(sock_, msg.get(), nullptr);
  if (error != 0) fail(NBD_CMD_DISCONNECT, error, index);
}

std::vector<NbdDeviceStatus> NetlinkNbd::status(std::optional<std::uint32_t> index) {
  NlMsgPtr msg = build_status_message(family_, index);
  std::vector<NbdDeviceStatus> out;
  const int error = transact(sock_, msg.get(), [&](nl_msg* reply) {
    auto part = parse_status_reply(reply);
    out.insert(out.end(), part.begin(), part.end());
  });
  if (error != 0) fail(NBD_CMD_STATUS, error, index);
  return out;
}

namespace {

int on_notification(nl_msg* msg, void* arg) {
  auto* pending = static_cast<std::vector<std::uint32_t>*>(arg);
  if (message_command(msg) == NBD_CMD_LINK_DEAD) {
    if (auto i = parse_index(msg)) pending->push_back(*i);
  }
  return NL_OK;
}

}  // namespace

LinkDeadMonitor::LinkDeadMonitor() {
  int family = 0;
  sock_ = open_genl(family);
  const int group = genl_ctrl_resolve_grp(sock_, NBD_GENL_FAMILY_NAME, NBD_GENL_MCAST_GROUP_NAME);
  if (group < 0) {
    nl_socket_free(sock_);
    throw KernelNbdError("the nbd netlink family has no \"nbd_mc_group\" (link-dead notifications)", ENOTSUP);
  }
  nl_socket_disable_seq_check(sock_);
  nl_socket_modify_cb(sock_, NL_CB_VALID, NL_CB_CUSTOM, on_notification, &pending_);
  int rc = nl_socket_add_membership(sock_, group);
  if (rc >= 0) rc = nl_socket_set_nonblocking(sock_);
  if (rc < 0) {
    nl_socket_free(sock_);
    throw KernelNbdError(std::string("cannot join nbd_mc_group: ") + nl_geterror(rc), EIO);
  }
}

LinkDeadMonitor::~LinkDeadMonitor() { nl_socket_free(sock_); }

int LinkDeadMonitor::fd() const { return nl_socket_get_fd(sock_); }

std::vector<std::uint32_t> LinkDeadMonitor::read_events() {
  // Non-blocking: nl_recvmsgs_default returns -NLE_AGAIN once the socket is empty.
  for (int i = 0; i < 64; ++i) {
    if (nl_recvmsgs_default(sock_) < 0) break;
  }
  return std::exchange(pending_, {});
}

}  // namespace blockd::client
