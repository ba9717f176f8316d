#include "client/supervisor.h"

#include <algorithm>
#include <cerrno>
#include <exception>
#include <vector>

namespace blockd::client {

namespace {

std::string millis(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

const char* to_string(Supervisor::State state) {
  switch (state) {
    case Supervisor::State::kAttached: return "attached";
    case Supervisor::State::kReconnecting: return "reconnecting";
    case Supervisor::State::kBroken: return "broken";
    case Supervisor::State::kFailed: return "failed";
    case Supervisor::State::kDetached: return "detached";
  }
  return "?";
}

Supervisor::Supervisor(Options options, KernelNbd& kernel, Connector connector, Renewer renewer, Logger log,
                       TimePoint now)
    : options_(options),
      kernel_(kernel),
      connector_(std::move(connector)),
      renewer_(std::move(renewer)),
      log_(std::move(log)),
      backoff_(options.backoff_initial),
      next_attempt_(now),
      next_renew_(now + options.renew_interval) {}

bool Supervisor::is_lease_refusal(std::string_view message) {
  // "the lease on volume ... is being broken ...; try again shortly" is transient: the
  // next attempt learns whether it was ours ("was broken": final) or not.
  return message.find("NBD_REP_ERR_POLICY") != std::string_view::npos &&
         message.find("try again") == std::string_view::npos;
}

bool Supervisor::is_broken_lease(std::string_view message) {
  return message.find("was broken") != std::string_view::npos;
}

void Supervisor::on_link_dead(TimePoint now) {
  if (state_ == State::kBroken || state_ == State::kFailed || state_ == State::kDetached) return;
  if (!options_.replace_connections) {
    dead_ = std::min(dead_ + 1, options_.connections);
    log_("a connection of /dev/nbd" + std::to_string(options_.index) + " died (" + std::to_string(dead_) + " of " +
         std::to_string(options_.connections) +
         " dead); the ioctl interface cannot replace it: I/O goes on over the others while any is left");
    return;
  }
  // More notifications than connections mean a replaced socket died again before we
  // heard of the first death; the kernel's ENOSPC tells us when none is left dead.
  dead_ = std::min(dead_ + 1, options_.connections);
  if (state_ != State::kReconnecting) {
    state_ = State::kReconnecting;
    backoff_ = options_.backoff_initial;
    next_attempt_ = now;
  }
  log_("a connection of /dev/nbd" + std::to_string(options_.index) + " died (" + std::to_string(dead_) + " of " +
       std::to_string(options_.connections) + " dead); reconnecting");
}

void Supervisor::on_device_ended(TimePoint) {
  if (state_ == State::kBroken || state_ == State::kFailed || state_ == State::kDetached) return;
  const std::string device = "/dev/nbd" + std::to_string(options_.index);
  // Why did every connection go? One handshake says whether it is the lease: a fenced
  // holder is refused by policy ("was broken", or "being broken" while the break drains;
  // either way the lease is not ours any more).
  std::string why;
  try {
    common::UniqueFd probe = connector_();
    why = "the server is reachable again, but";
  } catch (const std::exception& e) {
    if (std::string_view(e.what()).find("NBD_REP_ERR_POLICY") != std::string_view::npos) {
      state_ = State::kBroken;
      reason_ = e.what();
      dead_ = 0;
      log_("the lease is lost (" + reason_ + "): " + device + " has stopped for good; its I/O fails from now on");
      return;
    }
    why = std::string("the server cannot be reached (") + e.what() + ") and";
  }
  state_ = State::kFailed;
  dead_ = options_.connections;
  reason_ = "every connection of " + device + " to the server was lost; " + why +
            " the ioctl interface cannot give the kernel new connections, so its I/O fails: detach it and "
            "attach again";
  log_(reason_);
}

Supervisor::TimePoint Supervisor::tick(TimePoint now) {
  if (state_ == State::kReconnecting && now >= next_attempt_) attempt(now);
  if (options_.renew && (state_ == State::kAttached || state_ == State::kReconnecting) && now >= next_renew_) {
    renew(now);
  }
  if (state_ == State::kBroken || state_ == State::kFailed || state_ == State::kDetached) {
    return now + std::chrono::hours(1);
  }
  TimePoint next = options_.renew ? next_renew_ : now + std::chrono::hours(1);
  if (state_ == State::kReconnecting) next = std::min(next, next_attempt_);
  return next;
}

void Supervisor::attempt(TimePoint now) {
  while (state_ == State::kReconnecting && dead_ > 0) {
    common::UniqueFd fd;
    try {
      fd = connector_();
    } catch (const std::exception& e) {
      if (is_lease_refusal(e.what())) {
        fence(e.what());
        return;
      }
      log_(std::string("reconnect failed: ") + e.what() + "; retrying in " + millis(backoff_));
      next_attempt_ = now + backoff_;
      backoff_ = std::min(backoff_ * 2, options_.backoff_max);
      return;
    }
    try {
      kernel_.reconfigure(options_.index, {fd.get()}, options_.backend);
    } catch (const KernelNbdError& e) {
      if (e.error() == ENOSPC) {
        // Nothing dead any more: our count was ahead of the kernel.
        dead_ = 0;
        break;
      }
      log_(std::string("cannot hand the new connection to the kernel: ") + e.what() + "; retrying in " +
           millis(backoff_));
      next_attempt_ = now + backoff_;
      backoff_ = std::min(backoff_ * 2, options_.backoff_max);
      return;
    }
    --dead_;
    ++reconnects_;
    log_("replaced a dead connection of /dev/nbd" + std::to_string(options_.index) + " (" +
         std::to_string(dead_) + " still dead)");
  }
  if (state_ == State::kReconnecting) {
    state_ = State::kAttached;
    backoff_ = options_.backoff_initial;
    log_("/dev/nbd" + std::to_string(options_.index) + " has all its connections again");
  }
}

void Supervisor::renew(TimePoint now) {
  try {
    renewer_();
    next_renew_ = now + options_.renew_interval;
  } catch (const std::exception& e) {
    if (is_broken_lease(e.what())) {
      fence(e.what());
      return;
    }
    // blockd restarting, say: the connections (or the grace period) keep the lease; try
    // again soon.
    const auto retry = std::min<std::chrono::milliseconds>(options_.renew_interval, std::chrono::seconds(5));
    log_(std::string("lease renewal failed: ") + e.what() + "; retrying in " + millis(retry));
    next_renew_ = now + retry;
  }
}

void Supervisor::fence(const std::string& why) {
  state_ = State::kBroken;
  reason_ = why;
  dead_ = 0;
  const std::string device = "/dev/nbd" + std::to_string(options_.index);
  try {
    kernel_.disconnect(options_.index);
  } catch (const std::exception& e) {
    log_("cannot disconnect " + device + ": " + e.what());
  }
  log_("the lease is lost (" + why + "): " + device + " is disconnected for good; its I/O fails from now on");
}

void Supervisor::detach() {
  if (state_ == State::kDetached) return;
  // Broken: disconnected already. Failed: the kernel ended the device itself.
  if (state_ != State::kBroken && state_ != State::kFailed) kernel_.disconnect(options_.index);
  state_ = State::kDetached;
}

}  // namespace blockd::client
