// Which interface of the kernel's NBD driver `blockctl attach` uses: generic netlink
// (NetlinkNbd, the default whenever the family "nbd" resolves: reconnects through
// NBD_CMD_RECONFIGURE, a dead-connection timeout, a device that outlives its supervisor)
// or the classic ioctls (IoctlNbd: for kernels without the family, or forced with
// --interface ioctl; a lost connection is never replaced).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "client/kernel_nbd.h"

namespace blockd::client {

enum class NbdInterface { kAuto, kNetlink, kIoctl };

// "auto", "netlink", "ioctl"; nullopt for anything else.
std::optional<NbdInterface> parse_nbd_interface(std::string_view text);
const char* to_string(NbdInterface interface);

struct InterfaceChoice {
  NbdInterface chosen = NbdInterface::kNetlink;  // never kAuto
  std::string log;                               // one line saying which, and why
};

// `requested` kAuto takes netlink when the family resolves, else ioctl; kIoctl is taken
// as asked; kNetlink without the family throws KernelNbdError(ENOTSUP).
InterfaceChoice choose_nbd_interface(NbdInterface requested, bool netlink_available);

// Whether the generic netlink family "nbd" resolves (the module loaded, kernel >= 4.12).
bool nbd_netlink_available();

// The bridge for a chosen interface (kAuto: as choose_nbd_interface would pick).
std::unique_ptr<KernelNbd> open_kernel_nbd(NbdInterface interface);

}  // namespace blockd::client
