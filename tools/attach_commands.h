// blockctl attach / detach / attached: a volume as /dev/nbdN through the kernel's NBD
// driver (client/kernel_nbd.h), kept alive by client::Supervisor in the foreground.
// Each attachment has a state file, /run/blockd/attach/nbdN.state (BLOCKD_ATTACH_DIR
// overrides the directory), holding the supervisor's PID and the kernel interface
// (netlink, or the ioctl fallback), so `detach` can stop it and `attached` can list it. Throws like every command (commands.h).
#pragma once

#include <optional>
#include <string>

#include "tools/commands.h"

namespace CLI {
class App;
}

namespace blockd::tools {

struct AttachOptions {
  std::string volume;
  std::optional<std::string> server;  // nbd://HOST:PORT: no control API; else the control API
  std::string holder;                 // default: the host name
  int connections = 1;
  bool read_only = false;
  std::string device;                 // /dev/nbdN; default: any free device
  int timeout = 30;                   // seconds, per request (then requeued on another connection)
  int dead_conn_timeout = 60;         // seconds I/O waits for a reconnect
  int lease_ttl = 60;                 // seconds; renewed every third of it
  std::string interface = "auto";     // auto | netlink | ioctl (client/nbd_interface.h)
};

// Runs until detached (SIGTERM/SIGINT/SIGHUP: returns) or the lease is lost (throws:
// exit 1, the device disconnected).
void attach(const GlobalOptions& g, const AttachOptions& o);
void detach(const GlobalOptions& g, const std::string& device_or_volume);
void attached(const GlobalOptions& g);

// "/dev/nbd3" or "nbd3" -> 3; nullopt for anything else.
std::optional<unsigned> parse_nbd_device(const std::string& text);
// The host name made into a holder (letters, digits, '.', '_', ':', '-').
std::string default_holder();

// attach, detach, attached; `g` must outlive the app's parse.
void add_attach_commands(CLI::App& app, GlobalOptions& g);

}  // namespace blockd::tools
