// Supervisor: keeps one kernel NBD attachment alive (the part of `blockctl attach` that
// runs after NBD_CMD_CONNECT). A state machine driven from outside — on_link_dead() when
// NBD_CMD_LINK_DEAD names our device, tick(now) whenever the deadline it returned passes —
// so the tests run it against a fake KernelNbd, a fake connector and a fake clock.
//
// - A dead connection is replaced: connect + handshake again (the connector), then
//   NBD_CMD_RECONFIGURE, with backoff between failed attempts. The kernel holds the
//   device's I/O for its dead-connection timeout meanwhile, so a blockd restart (whose
//   lease grace readmits the last writer) costs no I/O error.
// - The lease is renewed every renew_interval through the control API (when there is one).
// - A reconnect refused by lease policy (NBD_REP_ERR_POLICY: the lease was broken, or is
//   now someone else's), or a renewal refused because the lease was broken, is final:
//   the device is disconnected (NBD_CMD_DISCONNECT), so its I/O fails from then on,
//   and the supervisor says why (state kBroken, reason()).
// - With the ioctl interface (Options::replace_connections false) nothing can be
//   replaced: a link-dead notice is only logged, and when the kernel ends the device on
//   its own (NBD_DO_IT returned: every connection gone) on_device_ended() tells why with
//   one probe connection: refused by lease policy -> kBroken, anything else -> kFailed
//   (final too: the device's I/O fails; detach and attach again).
//
// Thread affinity: one thread; the connector and renewer block that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "client/kernel_nbd.h"
#include "common/unique_fd.h"

namespace blockd::client {

class Supervisor {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  enum class State { kAttached, kReconnecting, kBroken, kFailed, kDetached };

  struct Options {
    std::uint32_t index = 0;
    int connections = 1;
    std::string backend;  // the connect's NBD_ATTR_BACKEND_IDENTIFIER, repeated on reconfigure
    bool renew = true;  // false: no control API (--server nbd://), GO admission only
    // false: the ioctl interface, which cannot hand the kernel a new connection
    bool replace_connections = true;
    std::chrono::milliseconds renew_interval{std::chrono::seconds(20)};
    std::chrono::milliseconds backoff_initial{100};
    std::chrono::milliseconds backoff_max{std::chrono::seconds(2)};
  };

  // Returns a connected socket past NBD_OPT_GO; throws (NbdError) when it cannot.
  using Connector = std::function<common::UniqueFd()>;
  // Renews the lease; throws (ControlError) when it cannot.
  using Renewer = std::function<void()>;
  using Logger = std::function<void(std::string_view)>;

  Supervisor(Options options, KernelNbd& kernel, Connector connector, Renewer renewer, Logger log,
             TimePoint now);

  // NBD_CMD_LINK_DEAD for our device: one of its connections died.
  void on_link_dead(TimePoint now);
  // The kernel ended the device by itself (ioctl: NBD_DO_IT returned without a detach).
  void on_device_ended(TimePoint now);
  // Does what is due at `now`; returns when it wants to be called next.
  TimePoint tick(TimePoint now);
  // Disconnects the device (detach); no more reconnects.
  void detach();

  State state() const { return state_; }
  const std::string& reason() const { return reason_; }
  int dead_connections() const { return dead_; }
  int reconnects() const { return reconnects_; }
  std::uint32_t index() const { return options_.index; }

  // An NbdError text meaning the server refused us by lease policy: final (unless the
  // server says to try again: a break still draining).
  static bool is_lease_refusal(std::string_view message);
  // A control API error meaning our lease was broken: final.
  static bool is_broken_lease(std::string_view message);

 private:
  void attempt(TimePoint now);
  void renew(TimePoint now);
  void fence(const std::string& why);

  Options options_;
  KernelNbd& kernel_;
  Connector connector_;
  Renewer renewer_;
  Logger log_;
  State state_ = State::kAttached;
  std::string reason_;
  int dead_ = 0;
  int reconnects_ = 0;
  std::chrono::milliseconds backoff_;
  TimePoint next_attempt_;
  TimePoint next_renew_;
};

const char* to_string(Supervisor::State state);

}  // namespace blockd::client
