#include "tools/attach_commands.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/control_client.h"
#include "client/control_error.h"
#include "client/ioctl_nbd.h"
#include "client/kernel_nbd.h"
#include "client/nbd_error.h"
#include "client/nbd_handshake.h"
#include "client/nbd_interface.h"
#include "client/supervisor.h"
#include "tools/nbd_target.h"
#include "tools/table.h"
#include "tools/usage_error.h"

namespace blockd::tools {

namespace {

using StateMap = std::map<std::string, std::string>;

std::string state_dir() {
  const char* env = std::getenv("BLOCKD_ATTACH_DIR");
  return env != nullptr && *env != '\0' ? env : "/run/blockd/attach";
}

std::string state_path(unsigned index) { return state_dir() + "/nbd" + std::to_string(index) + ".state"; }

void mkdirs(const std::string& path) {
  std::string at;
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    at += "/" + part;
    ::mkdir(at.c_str(), 0755);
  }
}

// key=value lines, written to a temporary file and renamed: a reader sees the old or the new.
void write_state(unsigned index, const StateMap& state) {
  mkdirs(state_dir());
  const std::string path = state_path(index);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [k, v] : state) out << k << "=" << v << "\n";
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

std::optional<StateMap> read_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  StateMap state;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) state[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return state;
}

std::vector<std::pair<std::string, StateMap>> all_states() {
  std::vector<std::pair<std::string, StateMap>> out;
  DIR* dir = ::opendir(state_dir().c_str());
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (!name.ends_with(".state")) continue;
    const std::string path = state_dir() + "/" + name;
    if (auto s = read_state(path)) out.emplace_back(path, *s);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::string read_sysfs(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text;
}

// Alive and not a zombie (a shell may not have reaped a supervisor that ended).
bool process_alive(long pid) {
  if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) != 0) return false;
  const std::string stat = read_sysfs("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

long to_long(const std::string& text) {
  try {
    return std::stol(text);
  } catch (...) {
    return 0;
  }
}

void log_line(std::string_view text) { std::cerr << "blockctl attach: " << text << std::endl; }

// Holders are [A-Za-z0-9._:-] (the export-name grammar), so no JSON escaping is needed.
// ttl 0: no ttlSeconds (ReleaseLeaseRequest has none).
std::string lease_body(const std::string& holder, const std::string* mode, int ttl) {
  std::string body = "{\"holder\":\"" + holder + "\"";
  if (mode != nullptr) body += ",\"mode\":\"" + *mode + "\"";
  if (ttl > 0) body += ",\"ttlSeconds\":" + std::to_string(ttl);
  return body + "}";
}

std::string lease_target(const std::string& volume, const char* verb) {
  return "/v1/volumes/" + client::url_encode(volume) + "/lease/" + verb;
}

// The socket goes to the kernel: no timeouts may follow it there.
void clear_socket_timeouts(int fd) {
  timeval zero{};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
}

struct Handshaken {
  common::UniqueFd fd;
  client::ExportInfo info;
};

Handshaken handshake(const client::NbdAddress& address) {
  // A bounded handshake (a server that accepts and says nothing cannot hang us), then
  // the timeouts are cleared for the kernel.
  Handshaken h{client::nbd_connect(address, std::chrono::seconds(15)), {}};
  client::NegotiateOptions options;
  options.structured_replies = false;  // the kernel speaks simple replies only
  options.base_allocation = false;
  h.info = client::nbd_negotiate(h.fd.get(), address.export_name(), options);
  clear_socket_timeouts(h.fd.get());
  return h;
}

void wait_readable(unsigned index, std::chrono::seconds limit) {
  const std::string device = "/dev/nbd" + std::to_string(index);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::string last;
  for (;;) {
    const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char sector[512];
      const ssize_t n = ::pread(fd, sector, sizeof sector, 0);
      const int err = errno;
      ::close(fd);
      if (n == static_cast<ssize_t>(sizeof sector)) return;
      last = n < 0 ? std::strerror(err) : "short read";
    } else {
      last = std::strerror(errno);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error(device + " does not answer reads after " + std::to_string(limit.count()) + "s: " + last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

}  // namespace

std::optional<unsigned> parse_nbd_device(const std::string& text) {
  std::string_view s = text;
  if (s.starts_with("/dev/")) s.remove_prefix(5);
  if (!s.starts_with("nbd")) return std::nullopt;
  s.remove_prefix(3);
  if (s.empty() || s.size() > 6) return std::nullopt;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value;
}

std::string default_holder() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string name;
  for (const char* p = host; *p != '\0'; ++p) {
    const char ch = *p;
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                    ch == '.' || ch == '_' || ch == ':';
    name += ok ? ch : '_';
  }
  return name.empty() ? "localhost" : name;
}

void attach(const GlobalOptions& g, const AttachOptions& o) {
  if (o.connections < 1 || o.connections > 16) throw UsageError("--connections must be 1..16");
  if (o.timeout < 1) throw UsageError("--timeout must be at least 1 second");
  if (o.dead_conn_timeout < 1) throw UsageError("--dead-conn-timeout must be at least 1 second");
  const auto requested = client::parse_nbd_interface(o.interface);
  if (!requested) throw UsageError("--interface must be auto, netlink or ioctl, not \"" + o.interface + "\"");
  std::optional<unsigned> wanted;
  if (!o.device.empty()) {
    wanted = parse_nbd_device(o.device);
    if (!wanted) throw UsageError("--device must be /dev/nbdN, not \"" + o.device + "\"");
  }
  const std::string holder = o.holder.empty() ? default_holder() : o.holder;

  // Where the data is, and whether there is a control API for the lease.
  std::optional<std::string> server = o.server ? o.server : g.server;
  std::optional<client::ControlClient> api;
  client::NbdAddress address;
  if (server && (server->starts_with("nbd://") || server->starts_with("nbd+unix://"))) {
    address = nbd_target_from_uri(*server, o.volume);
  } else {
    std::string error;
    auto control = client::ServerAddress::resolve(server, error);
    if (!control) throw UsageError(error);
    api.emplace(*control);
    api->get_volume(o.volume);  // "volume not found" reads better than NBD's "unknown export"
    address = nbd_target_from_status(api->status(), o.volume);
  }
  const std::string base_export = address.export_name().empty() ? o.volume : address.export_name();
  address.set_export_name(base_export + "?holder=" + holder + (o.read_only ? "&mode=ro" : ""));

  // The kernel first: no lease is taken for a machine that cannot attach anyway.
  if (!client::nbd_module_loaded()) {
    throw std::runtime_error("the nbd kernel module is not loaded: load it with 'modprobe nbd' "
                             "(and add nbd to /etc/modules-load.d/ to keep it)");
  }
  // Netlink when the kernel has it (reconnects, a device that outlives us), else ioctl.
  const auto choice = client::choose_nbd_interface(*requested, client::nbd_netlink_available());
  log_line(choice.log);
  const bool ioctl_mode = choice.chosen == client::NbdInterface::kIoctl;
  std::unique_ptr<client::KernelNbd> kernel_owner;
  client::IoctlNbd* ioctl_kernel = nullptr;
  std::optional<client::LinkDeadMonitor> monitor;
  if (ioctl_mode) {
    auto k = std::make_unique<client::IoctlNbd>();
    ioctl_kernel = k.get();
    kernel_owner = std::move(k);
  } else {
    kernel_owner = std::make_unique<client::NetlinkNbd>();
    monitor.emplace();  // before CONNECT, so no death goes unheard
  }
  client::KernelNbd& kernel = *kernel_owner;
  if (wanted) {
    for (const auto& s : kernel.status(*wanted)) {
      if (s.connected) {
        const std::string pid = read_sysfs("/sys/block/nbd" + std::to_string(*wanted) + "/pid");
        throw std::runtime_error("device /dev/nbd" + std::to_string(*wanted) + " is busy: already connected" +
                                 (pid.empty() ? "" : " (pid " + pid + ")"));
      }
    }
  }

  const std::string mode = o.read_only ? "ro" : "rw";
  bool leased = false;
  auto release = [&] {
    if (api && leased) {
      try {
        client::throw_unless_success(api->post(lease_target(o.volume, "release"), lease_body(holder, nullptr, 0)));
      } catch (const std::exception& e) {
        log_line(std::string("cannot release the lease: ") + e.what());
      }
      leased = false;
    }
  };
  if (api) {
    auto r = api->post(lease_target(o.volume, "acquire"), lease_body(holder, &mode, o.lease_ttl));
    try {
      client::throw_unless_success(r);
    } catch (const client::ControlError& e) {
      throw client::ControlError(e.code(), "cannot lease volume \"" + o.volume + "\" for " + holder + ": " + e.what(), e.http_status());
    }
    leased = true;
  }

  const auto started = std::chrono::steady_clock::now();
  std::vector<Handshaken> conns;
  std::uint32_t index = 0;
  client::ExportInfo info;
  try {
    for (int i = 0; i < o.connections; ++i) conns.push_back(handshake(address));
    info = conns.front().info;
    if (o.connections > 1 && !info.has(common::nbd::kFlagCanMultiConn)) {
      throw std::runtime_error("the server does not allow several connections to one export (no CAN_MULTI_CONN); "
                               "use --connections 1");
    }
    if (!o.read_only && info.read_only()) log_line("the server exports \"" + o.volume + "\" read-only");
    client::NbdConnectRequest request;
    request.index = wanted;
    request.size_bytes = info.size;
    // The kernel's logical block size: the server's minimum, at least 512, at most a page.
    request.block_size = std::clamp<std::uint64_t>(info.min_block, 512, 4096);
    request.server_flags = info.transmission_flags;
    request.client_flags = 0;  // keep the device when the supervisor's netlink socket closes
    request.timeout = std::chrono::seconds(o.timeout);
    request.dead_conn_timeout = std::chrono::seconds(o.dead_conn_timeout);
    request.backend = address.to_uri();
    for (auto& c : conns) request.socket_fds.push_back(c.fd.get());
    index = kernel.connect(request);
    conns.clear();  // the kernel holds its own references to the sockets
  } catch (...) {
    release();
    throw;
  }
  const std::string device = "/dev/nbd" + std::to_string(index);
  try {
    wait_readable(index, std::chrono::seconds(30));
  } catch (...) {
    try {
      kernel.disconnect(index);
    } catch (...) {
    }
    release();
    throw;
  }
  const auto attach_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();

  StateMap state{{"volume", o.volume},
                 {"device", device},
                 {"index", std::to_string(index)},
                 {"server", address.to_uri()},
                 {"control", api ? api->address().to_string() : ""},
                 {"holder", holder},
                 {"mode", mode},
                 {"connections", std::to_string(o.connections)},
                 {"interface", client::to_string(choice.chosen)},
                 {"pid", std::to_string(::getpid())},
                 {"state", "attached"},
                 {"reason", ""}};
  write_state(index, state);
  std::cout << device << std::endl;
  log_line(device + " attached: volume " + o.volume + " (" + std::to_string(info.size) + " bytes), " +
           std::to_string(o.connections) + " connection(s) to " + address.to_uri() + " in " +
           std::to_string(attach_ms) + " ms over " + client::to_string(choice.chosen) +
           (ioctl_mode ? " (lost connections are not replaced)" : "") + "; supervising (detach with: blockctl detach " +
           device + ")");

  // Signals arrive through a signalfd, so the loop below is the only thread.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  common::UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));

  client::Supervisor::Options so;
  so.index = index;
  so.connections = o.connections;
  so.backend = address.to_uri();
  so.renew = api.has_value();
  so.replace_connections = !ioctl_mode;
  so.renew_interval = std::chrono::seconds(std::max(1, o.lease_ttl / 3));
  client::Supervisor supervisor(
      so, kernel, [&] { return handshake(address).fd; },
      [&] {
        client::throw_unless_success(api->post(lease_target(o.volume, "renew"), lease_body(holder, nullptr, o.lease_ttl)));
      },
      log_line, client::Supervisor::Clock::now());

  auto last_state = client::Supervisor::State::kAttached;
  client::Supervisor::TimePoint down_since{};
  bool down = false;
  for (;;) {
    const auto now = client::Supervisor::Clock::now();
    const auto next = supervisor.tick(now);
    if (supervisor.state() != last_state) {
      if (supervisor.state() == client::Supervisor::State::kAttached && down) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - down_since).count();
        log_line("reconnected in " + std::to_string(ms) + " ms");
        down = false;
      }
      last_state = supervisor.state();
      state["state"] = to_string(last_state);
      state["reason"] = supervisor.reason();
      write_state(index, state);
    }
    if (supervisor.state() == client::Supervisor::State::kBroken) {
      throw std::runtime_error("the lease on volume \"" + o.volume + "\" was lost: " + supervisor.reason() + "; " +
                               device + " is disconnected and its I/O fails");
    }
    if (supervisor.state() == client::Supervisor::State::kFailed) {
      throw std::runtime_error(device + " (volume \"" + o.volume + "\") failed: " + supervisor.reason());
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    // netlink: link-dead notices; ioctl: the end of NBD_DO_IT.
    pollfd fds[2] = {{monitor ? monitor->fd() : ioctl_kernel->ended_fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    const int rc = ::poll(fds, 2, static_cast<int>(std::clamp<long long>(wait, 0, 60'000)));
    if (rc < 0 && errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    if (rc > 0 && (fds[0].revents & POLLIN) != 0 && ioctl_kernel != nullptr) {
      std::uint64_t count = 0;
      (void)!::read(ioctl_kernel->ended_fd(), &count, sizeof count);
      if (!ioctl_kernel->disconnect_requested()) {
        const int error = ioctl_kernel->end_error();
        log_line("NBD_DO_IT returned: " + device + " has stopped (" +
                 (error != 0 ? std::string(std::strerror(error)) : std::string("every connection closed")) + ")");
        supervisor.on_device_ended(client::Supervisor::Clock::now());
      }
    } else if (rc > 0 && (fds[0].revents & POLLIN) != 0) {
      for (std::uint32_t dead : monitor->read_events()) {
        if (dead != index) continue;
        if (!down) {
          down = true;
          down_since = client::Supervisor::Clock::now();
        }
        supervisor.on_link_dead(client::Supervisor::Clock::now());
      }
    }
    if (rc > 0 && (fds[1].revents & POLLIN) != 0) {
      signalfd_siginfo si{};
      (void)!::read(sigfd.get(), &si, sizeof si);
      log_line("signal " + std::to_string(si.ssi_signo) + ": detaching " + device);
      state["state"] = "detaching";
      write_state(index, state);
      std::string failure;
      try {
        supervisor.detach();
      } catch (const std::exception& e) {
        failure = e.what();
      }
      release();
      ::unlink(state_path(index).c_str());
      if (!failure.empty()) throw std::runtime_error("cannot disconnect " + device + ": " + failure);
      log_line(device + " detached" + std::string(api ? ", lease released" : ""));
      return;
    }
  }
}

void detach(const GlobalOptions& g, const std::string& what) {
  const auto index = parse_nbd_device(what);
  std::optional<std::pair<std::string, StateMap>> found;
  for (auto& entry : all_states()) {
    const StateMap& s = entry.second;
    if ((index && s.count("index") && s.at("index") == std::to_string(*index)) ||
        (!index && s.count("volume") && s.at("volume") == what)) {
      found = entry;
      break;
    }
  }
  if (!found && !index) throw std::runtime_error("no attachment of volume \"" + what + "\" (see blockctl attached)");
  const unsigned dev = found ? static_cast<unsigned>(to_long(found->second["index"])) : *index;
  const std::string device = "/dev/nbd" + std::to_string(dev);

  if (found) {
    const long pid = to_long(found->second["pid"]);
    if (process_alive(pid)) {
      // The supervisor disconnects, releases the lease and removes its state file.
      ::kill(static_cast<pid_t>(pid), SIGTERM);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      struct stat st {};
      while (process_alive(pid) && ::stat(found->first.c_str(), &st) == 0) {
        if (std::chrono::steady_clock::now() >= deadline) {
          throw std::runtime_error("the supervisor of " + device + " (pid " + std::to_string(pid) +
                                   ") did not stop within 30s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (::stat(found->first.c_str(), &st) != 0) {
        if (!g.quiet) std::cerr << "detached " << device << " (volume " << found->second["volume"] << ")\n";
        return;
      }
    }
  }
  // No supervisor (it died, or the device was attached by something else): do it here,
  // through the interface it was attached with (netlink when unknown and present).
  const auto interface =
      found ? client::parse_nbd_interface(found->second["interface"]).value_or(client::NbdInterface::kAuto)
            : client::NbdInterface::kAuto;
  const auto kernel = client::open_kernel_nbd(interface);
  bool connected = false;
  for (const auto& s : kernel->status(dev)) connected |= s.connected;
  if (connected) kernel->disconnect(dev);
  if (found) {
    const std::string control = found->second["control"];
    // A broken lease is not ours to release any more.
    if (!control.empty() && found->second["state"] != "broken") {
      std::string error;
      if (auto address = client::ServerAddress::parse(control, error)) {
        try {
          client::ControlClient api(*address);
          client::throw_unless_success(api.post(lease_target(found->second["volume"], "release"),
                                                lease_body(found->second["holder"], nullptr, 0)));
        } catch (const std::exception& e) {
          std::cerr << "blockctl: warning: cannot release the lease of " << found->second["holder"] << " on volume \""
                    << found->second["volume"] << "\": " << e.what() << "\n";
        }
      }
    }
    ::unlink(found->first.c_str());
  } else if (!connected) {
    throw std::runtime_error(device + " is not attached");
  }
  if (!g.quiet) std::cerr << "detached " << device << "\n";
}

void attached(const GlobalOptions& g) {
  struct Row {
    std::string volume, device, server, holder, connections, interface, state, pid;
  };
  std::vector<Row> rows;
  std::map<unsigned, bool> kernel_connected;
  bool have_kernel = false;
  if (client::nbd_module_loaded()) {
    try {
      client::NetlinkNbd kernel;
      for (const auto& s : kernel.status(std::nullopt)) kernel_connected[s.index] = s.connected;
      have_kernel = true;
    } catch (const std::exception&) {
    }
    if (!have_kernel) {
      // No netlink family (the ioctl interface): sysfs says which devices run.
      for (const auto& s : client::sysfs_nbd_status("/sys/block", std::nullopt)) kernel_connected[s.index] = s.connected;
      have_kernel = true;
    }
  }
  std::map<unsigned, bool> seen;
  for (auto& [path, s] : all_states()) {
    const unsigned index = static_cast<unsigned>(to_long(s["index"]));
    seen[index] = true;
    const bool connected = have_kernel ? kernel_connected[index]
                                       : !read_sysfs("/sys/block/nbd" + std::to_string(index) + "/pid").empty();
    std::string state = s["state"];
    const bool alive = process_alive(to_long(s["pid"]));
    if (state != "broken" && state != "failed") {
      if (!connected) state = "disconnected";
      else if (!alive) state = "unsupervised";
    }
    const std::string interface = s["interface"].empty() ? "netlink" : s["interface"];  // older state files
    rows.push_back({s["volume"], s["device"], s["server"], s["holder"], s["connections"], interface, state, s["pid"]});
  }
  // Devices connected by something else (nbd-client, a dead blockctl whose state is gone).
  for (const auto& [index, connected] : kernel_connected) {
    if (!connected || seen.count(index)) continue;
    const std::string sys = "/sys/block/nbd" + std::to_string(index);
    rows.push_back({"-", "/dev/nbd" + std::to_string(index), read_sysfs(sys + "/backend"), "-", "-", "-",
                    "connected (not blockctl)", read_sysfs(sys + "/pid")});
  }
  if (g.output == OutputFormat::kJson) {
    std::cout << "{\n  \"attachments\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::cout << (i ? "," : "") << "\n    {\"volume\": \"" << json_escape(r.volume) << "\", \"device\": \""
                << json_escape(r.device) << "\", \"server\": \"" << json_escape(r.server) << "\", \"holder\": \""
                << json_escape(r.holder) << "\", \"connections\": " << (r.connections == "-" ? "0" : r.connections)
                << ", \"interface\": \"" << json_escape(r.interface) << "\", \"replacesConnections\": "
                << (r.interface == "netlink" ? "true" : "false") << ", \"state\": \"" << json_escape(r.state)
                << "\", \"pid\": " << to_long(r.pid) << "}";
    }
    std::cout << (rows.empty() ? "" : "\n  ") << "]\n}\n";
    return;
  }
  if (g.output == OutputFormat::kName) {
    for (const Row& r : rows) std::cout << r.device << "\n";
    return;
  }
  Table table({"VOLUME", "DEVICE", "SERVER", "HOLDER", "CONNECTIONS", "INTERFACE", "STATE"},
              {Table::Align::kLeft, Table::Align::kLeft, Table::Align::kLeft, Table::Align::kLeft,
               Table::Align::kRight, Table::Align::kLeft, Table::Align::kLeft});
  bool any_ioctl = false;
  for (const Row& r : rows) {
    table.add_row({r.volume, r.device, r.server, r.holder, r.connections, r.interface, r.state});
    any_ioctl |= r.interface == "ioctl";
  }
  std::cout << table.render();
  if (any_ioctl) {
    std::cout << "ioctl: lost connections are not replaced: a blockd restart or a dropped connection fails the "
                 "device's I/O, and the device ends with its supervisor\n";
  }
}

void add_attach_commands(CLI::App& app, GlobalOptions& g) {
  auto o = std::make_shared<AttachOptions>();
  CLI::App* at = app.add_subcommand("attach", "Attach a volume as /dev/nbdN (kernel NBD driver) and supervise it");
  at->add_option("VOLUME", o->volume, "Volume name")->required();
  at->add_option("--server", o->server,
                 "nbd://HOST:PORT to attach without the control API (GO admission only), or the control API "
                 "(unix:///PATH, http://HOST:PORT)");
  at->add_option("--holder", o->holder, "Lease holder (default: the host name)");
  at->add_option("--connections", o->connections, "Connections to the server (kernel multi-conn)")
      ->capture_default_str();
  at->add_flag("--read-only", o->read_only, "Attach read-only (a shared read lease, mode=ro)");
  at->add_option("--device", o->device, "/dev/nbdN to use (default: any free device)");
  at->add_option("--timeout", o->timeout, "Seconds before the kernel retries a request on another connection")
      ->capture_default_str();
  at->add_option("--dead-conn-timeout", o->dead_conn_timeout,
                 "Seconds I/O waits for a lost connection to be replaced before it fails")
      ->capture_default_str();
  at->add_option("--lease-ttl", o->lease_ttl, "Lease time-to-live in seconds, renewed every third of it")
      ->capture_default_str();
  at->add_option("--interface", o->interface,
                 "Kernel interface: auto (netlink when the kernel has it, else ioctl), netlink, or ioctl "
                 "(lost connections are not replaced)")
      ->capture_default_str();
  at->callback([&g, o] { attach(g, *o); });

  auto target = std::make_shared<std::string>();
  CLI::App* de = app.add_subcommand("detach", "Disconnect an attached device and release its lease");
  de->add_option("DEVICE_OR_VOLUME", *target, "/dev/nbdN or a volume name")->required();
  de->callback([&g, target] { detach(g, *target); });

  app.add_subcommand("attached", "List attachments: volume, device, server, holder, connections, interface, state")
      ->callback([&g] { attached(g); });
}

}  // namespace blockd::tools
