// ServiceManager: blockd's side of systemd (sd_notify(3), sd_listen_fds(3)), a no-op
// when blockd was not started by systemd (no NOTIFY_SOCKET, no LISTEN_FDS), so the same
// binary runs by hand, under a test and as blockd.service.
//
// - READY=1 once the catalog is loaded and every listener accepts (Type=notify);
//   STATUS= lines with volumes and connections; STOPPING=1 while draining; RELOADING=1
//   around a SIGHUP reload.
// - WATCHDOG=1 only while every worker's event loop turns (the Server checks that before
//   calling watchdog()), so a stuck worker stops the heartbeat and systemd restarts us.
// - Socket activation: the sockets systemd passed (blockd.socket), by their
//   FileDescriptorName: "control" is the control API's socket, anything else an NBD one.
//
// Thread affinity: the main thread. Ownership: owns nothing but the adopted fds until the
// listeners take them.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace blockd::server {

struct ActivatedSocket {
  int fd = -1;
  std::string name;  // FileDescriptorName= ("nbd", "control", or systemd's default "unknown")
};

class ServiceManager {
 public:
  // Reads (and unsets) LISTEN_FDS / LISTEN_FDNAMES, and whether a watchdog is asked for.
  ServiceManager();

  // The sockets systemd passed, in order; empty when not socket-activated.
  const std::vector<ActivatedSocket>& activated() const { return activated_; }
  // Half of WatchdogSec: how often to send WATCHDOG=1; nullopt when no watchdog is set.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

  void ready(const std::string& status) const;
  void status(const std::string& status) const;
  void reloading() const;
  void reloaded(const std::string& status) const;
  void stopping() const;
  void watchdog() const;

 private:
  void notify(const std::string& state) const;

  std::vector<ActivatedSocket> activated_;
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace blockd::server
