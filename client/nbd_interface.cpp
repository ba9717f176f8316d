#include "client/nbd_interface.h"

#include <linux/nbd-netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include <cerrno>

#include "client/ioctl_nbd.h"

namespace blockd::client {

std::optional<NbdInterface> parse_nbd_interface(std::string_view text) {
  if (text == "auto") return NbdInterface::kAuto;
  if (text == "netlink") return NbdInterface::kNetlink;
  if (text == "ioctl") return NbdInterface::kIoctl;
  return std::nullopt;
}

const char* to_string(NbdInterface interface) {
  switch (interface) {
    case NbdInterface::kAuto: return "auto";
    case NbdInterface::kNetlink: return "netlink";
    case NbdInterface::kIoctl: return "ioctl";
  }
  return "?";
}

namespace {

constexpr const char* kIoctlLimits =
    "a lost connection cannot be replaced (no NBD_CMD_RECONFIGURE), so a blockd restart or a dropped "
    "connection fails the device's I/O, and the device ends with this process";

}  // namespace

InterfaceChoice choose_nbd_interface(NbdInterface requested, bool netlink_available) {
  switch (requested) {
    case NbdInterface::kNetlink:
      if (!netlink_available) {
        throw KernelNbdError("--interface netlink: the kernel's nbd module has no netlink interface (generic "
                             "netlink family \"nbd\" not found; a kernel older than 4.12?); use --interface ioctl",
                             ENOTSUP);
      }
      return {NbdInterface::kNetlink, "using the netlink interface (generic netlink family \"nbd\", as asked)"};
    case NbdInterface::kIoctl:
      return {NbdInterface::kIoctl, std::string("using the ioctl interface (NBD_SET_SOCK, NBD_DO_IT), as asked: ") +
                                        kIoctlLimits};
    case NbdInterface::kAuto:
      break;
  }
  if (netlink_available) return {NbdInterface::kNetlink, "using the netlink interface (generic netlink family \"nbd\")"};
  return {NbdInterface::kIoctl,
          std::string("the generic netlink family \"nbd\" is absent (a kernel older than 4.12?): using the ioctl "
                      "interface (NBD_SET_SOCK, NBD_DO_IT); ") +
              kIoctlLimits};
}

bool nbd_netlink_available() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return false;
  bool found = false;
  if (genl_connect(sock) >= 0) found = genl_ctrl_resolve(sock, NBD_GENL_FAMILY_NAME) >= 0;
  nl_socket_free(sock);
  return found;
}

std::unique_ptr<KernelNbd> open_kernel_nbd(NbdInterface interface) {
  if (interface == NbdInterface::kAuto) interface = choose_nbd_interface(interface, nbd_netlink_available()).chosen;
  if (interface == NbdInterface::kNetlink) return std::make_unique<NetlinkNbd>();
  return std::make_unique<IoctlNbd>();
}

}  // namespace blockd::client
