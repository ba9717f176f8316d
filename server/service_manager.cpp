#include "server/service_manager.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "common/logging.h"

namespace blockd::server {

ServiceManager::ServiceManager() {
  char** names = nullptr;
  // unset_environment = 1: the variables are for us, not for anything we might start.
  const int count = sd_listen_fds_with_names(1, &names);
  if (count < 0) {
    common::logger("server")->warn("cannot read the sockets passed by systemd: {}", std::strerror(-count));
  }
  for (int i = 0; i < count; ++i) {
    ActivatedSocket socket;
    socket.fd = SD_LISTEN_FDS_START + i;
    socket.name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
    activated_.push_back(socket);
  }
  if (names != nullptr) {
    for (int i = 0; i < count; ++i) std::free(names[i]);
    std::free(names);
  }
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) watchdog_interval_ = std::chrono::microseconds(usec / 2);
}

void ServiceManager::notify(const std::string& state) const {
  // 0 (no NOTIFY_SOCKET) is normal outside systemd; an error is worth a line.
  if (const int result = sd_notify(0, state.c_str()); result < 0)
    common::logger("server")->warn("sd_notify failed state=\"{}\" error=\"{}\"", state, std::strerror(-result));
}

void ServiceManager::ready(const std::string& status) const { notify("READY=1\nSTATUS=" + status); }
void ServiceManager::status(const std::string& status) const { notify("STATUS=" + status); }
void ServiceManager::reloading() const { notify("RELOADING=1\nSTATUS=reloading the configuration"); }
void ServiceManager::reloaded(const std::string& status) const { notify("READY=1\nSTATUS=" + status); }
void ServiceManager::stopping() const { notify("STOPPING=1\nSTATUS=draining connections"); }
void ServiceManager::watchdog() const { notify("WATCHDOG=1"); }

}  // namespace blockd::server
