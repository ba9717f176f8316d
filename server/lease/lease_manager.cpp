#include "server/lease/lease_manager.h"

#include "common/logging.h"
#include "server/lease/duration_text.h"
#include "server/lease/export_request.h"
#include "server/lease/lease_error.h"

namespace blockd::server::lease {

namespace {

HolderFacts facts_of(const HolderEntry& entry, TimePoint now) {
  HolderFacts facts;
  facts.holder = entry.holder;
  facts.held_for = now - entry.held_since;
  facts.connections = static_cast<int>(entry.sessions.size());
  if (const auto deadline = entry.expires_at()) facts.expires_in = *deadline - now;
  return facts;
}

LeaseErrorCode error_code_for(RefusalCode code) {
  switch (code) {
    case RefusalCode::kInvalidHolder: return LeaseErrorCode::kInvalidArgument;
    case RefusalCode::kInternal: return LeaseErrorCode::kInternal;
    default: return LeaseErrorCode::kFailedPrecondition;
  }
}

void run_all(const std::vector<std::function<void()>>& handlers) {
  for (const auto& handler : handlers) {
    if (handler) handler();
  }
}

}  // namespace

LeaseManager::LeaseManager(Options options, const Clock& clock, GenerationStore& store,
                           const std::vector<PreviousHolder>& previous)
    : options_(options),
      clock_(clock),
      store_(store),
      log_(common::logger("lease")),
      refusal_log_(options.refusal_log_interval) {
  if (options_.grace <= Duration::zero()) throw LeaseError(LeaseErrorCode::kInvalidArgument, "grace must be positive");
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  for (const auto& holder : previous) restore_locked(holder, now);
}

LeaseManager::~LeaseManager() {
  // A ticket that outlives its manager would call into freed memory when it closes.
  if (open_tickets_ != 0) log_->critical("lease manager destroyed with open_sessions={}", open_tickets_);
}

// ---- NBD GO -------------------------------------------------------------------------

AdmitResult LeaseManager::admit(const std::string& volume, const std::string& holder, LeaseMode mode,
                                AllowedModes allowed) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  AdmitResult result;
  VolumeLease* lease = nullptr;
  try {
    lease = &volume_locked(volume);
    expire_locked(*lease, now);
    if (auto refusal = check_locked(*lease, holder, mode, allowed, false, now)) {
      result.refusal = std::move(*refusal);
    } else {
      HolderEntry& entry = grant_locked(*lease, holder, mode, now, "connect");
      result.ticket = issue_locked(*lease, entry, mode, now);
      return result;
    }
  } catch (const std::exception& error) {
    // The store failed (load or persist): grant_locked changed nothing before it threw.
    result.refusal = refusal::internal(volume, error.what());
  }
  if (lease != nullptr) {
    log_refusal_locked(*lease, holder, mode, result.refusal, now);
  } else {
    log_->error("refused volume={} holder={} mode={} reason=\"{}\"", volume, holder, to_string(mode),
                result.refusal.message);
  }
  return result;
}

std::optional<Refusal> LeaseManager::probe(const std::string& volume, const std::string& holder, LeaseMode mode,
                                           AllowedModes allowed) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  try {
    VolumeLease& lease = volume_locked(volume);
    expire_locked(lease, now);
    return check_locked(lease, holder, mode, allowed, false, now);
  } catch (const std::exception& error) {
    return refusal::internal(volume, error.what());
  }
}

// ---- control API --------------------------------------------------------------------

LeaseInfo LeaseManager::acquire(const std::string& volume, const std::string& holder, LeaseMode mode,
                                AllowedModes allowed, std::optional<Duration> ttl) {
  const Duration lifetime = ttl_or_grace(ttl);
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  VolumeLease& lease = volume_locked(volume);
  expire_locked(lease, now);
  if (auto refusal = check_locked(lease, holder, mode, allowed, true, now)) {
    log_refusal_locked(lease, holder, mode, *refusal, now);
    throw LeaseError(error_code_for(refusal->code), refusal->message);
  }
  HolderEntry* entry = nullptr;
  try {
    entry = &grant_locked(lease, holder, mode, now, "acquire");
  } catch (const std::exception& error) {
    const Refusal refusal = refusal::internal(volume, error.what());
    log_refusal_locked(lease, holder, mode, refusal, now);
    throw LeaseError(LeaseErrorCode::kInternal, refusal.message);
  }
  entry->api_until = now + lifetime;
  entry->released = false;
  entry->restart_grace = false;
  lease.unbar(holder);  // an explicit acquire is the decision a break asks for
  log_->info("acquired volume={} holder={} mode={} generation={} ttl={}", volume, holder,
             to_string(entry->mode), lease.generation(), duration_text(lifetime));
  return lease.info(now);
}

LeaseInfo LeaseManager::renew(const std::string& volume, const std::string& holder, std::optional<Duration> ttl) {
  const Duration lifetime = ttl_or_grace(ttl);
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  VolumeLease& lease = volume_locked(volume);
  expire_locked(lease, now);
  HolderEntry& entry = holder_entry_locked(lease, holder, "renew", now);
  entry.api_until = now + lifetime;
  entry.released = false;
  log_->info("renewed volume={} holder={} mode={} generation={} ttl={} connections={}", volume, holder,
             to_string(entry.mode), lease.generation(), duration_text(lifetime), entry.sessions.size());
  return lease.info(now);
}

LeaseInfo LeaseManager::release(const std::string& volume, const std::string& holder) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  VolumeLease& lease = volume_locked(volume);
  expire_locked(lease, now);
  HolderEntry& entry = holder_entry_locked(lease, holder, "release", now);
  if (!entry.connected()) {
    log_->info("released volume={} holder={} mode={} generation={}", volume, holder, to_string(entry.mode),
               lease.generation());
    lease.remove(holder);
    return lease.info(now);
  }
  entry.released = true;
  entry.api_until.reset();
  entry.grace_until.reset();
  log_->info("release requested volume={} holder={} generation={} connections={}: ends with the last connection",
             volume, holder, lease.generation(), entry.sessions.size());
  return lease.info(now);
}

BreakStart LeaseManager::begin_break(const std::string& volume, const std::optional<std::string>& to_holder,
                                     std::function<void()> on_finished, std::optional<Duration> to_ttl) {
  if (to_holder && !is_valid_holder(*to_holder)) {
    throw LeaseError(LeaseErrorCode::kInvalidArgument, refusal::invalid_holder(*to_holder).message);
  }
  const Duration lifetime = ttl_or_grace(to_ttl);
  std::vector<std::function<void()>> fence_handlers;
  std::function<void()> finished;
  BreakStart start;
  {
    std::lock_guard lock(mutex_);
    const TimePoint now = clock_.now();
    VolumeLease& lease = volume_locked(volume);
    expire_locked(lease, now);
    if (const auto& running = lease.breaking()) {
      throw LeaseError(LeaseErrorCode::kFailedPrecondition,
                       refusal::breaking(volume, lease.generation(), static_cast<int>(running->fenced.size())).message);
    }
    const std::uint64_t next = lease.generation() + 1;
    persist_break_locked(lease, next, to_holder.value_or(""));
    lease.set_generation(next);
    lease.breaking() = BreakInProgress{to_holder, lifetime, {}, std::move(on_finished)};
    fence_handlers = fence_locked(lease, to_holder, start);
    start.volume = volume;
    start.generation = next;
    start.fenced_connections = static_cast<int>(lease.breaking()->fenced.size());
    if (start.fenced_connections == 0) {
      finished = finish_break_locked(lease, now);
      start.finished = true;
    }
  }
  run_all(fence_handlers);
  if (finished) finished();
  return start;
}

LeaseInfo LeaseManager::show(const std::string& volume) {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  VolumeLease& lease = volume_locked(volume);
  expire_locked(lease, now);
  return lease.info(now);
}

std::vector<LeaseInfo> LeaseManager::list() {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  std::vector<LeaseInfo> out;
  for (auto& [name, lease] : volumes_) {
    expire_locked(lease, now);
    out.push_back(lease.info(now));
  }
  return out;
}

std::optional<std::string> LeaseManager::busy_reason(const std::string& volume) {
  const LeaseInfo info = show(volume);
  if (info.state == LeaseState::kFree) return std::nullopt;
  std::string holders;
  for (const auto& holder : info.holders) holders += (holders.empty() ? "\"" : ", \"") + holder.holder + "\"";
  if (info.state == LeaseState::kBreaking) {
    return "volume \"" + volume + "\" has a lease break in progress (generation " + std::to_string(info.generation) +
           "); try again when it has finished";
  }
  return "volume \"" + volume + "\" is leased (" + std::string(to_string(info.state)) + ") by " + holders +
         " (generation " + std::to_string(info.generation) +
         "); release the lease or break it first: blockctl lease break " + volume;
}

bool LeaseManager::forget(const std::string& volume) {
  std::lock_guard lock(mutex_);
  const auto it = volumes_.find(volume);
  if (it == volumes_.end()) return true;
  expire_locked(it->second, clock_.now());
  if (it->second.state() != LeaseState::kFree) return false;
  volumes_.erase(it);
  return true;
}

void LeaseManager::expire_due() {
  std::lock_guard lock(mutex_);
  const TimePoint now = clock_.now();
  for (auto& [name, lease] : volumes_) expire_locked(lease, now);
}

// ---- SessionTicket callbacks --------------------------------------------------------

void LeaseManager::close_session(SessionTicket& ticket) {
  std::function<void()> finished;
  {
    std::lock_guard lock(mutex_);
    const TimePoint now = clock_.now();
    --open_tickets_;
    VolumeLease& lease = volumes_.at(ticket.volume());  // a volume with tickets is never forgotten
    auto& breaking = lease.breaking();
    if (breaking && breaking->fenced.erase(ticket.id()) != 0) {
      log_->info("fenced session closed volume={} holder={} generation={} session={} still_open={}", ticket.volume(),
                 ticket.holder(), ticket.generation(), ticket.id(), breaking->fenced.size());
      if (breaking->fenced.empty()) finished = finish_break_locked(lease, now);
    } else if (HolderEntry* entry = lease.find(ticket.holder()); entry && entry->sessions.erase(ticket.id()) != 0) {
      if (!entry->connected()) last_connection_closed_locked(lease, *entry, now);
    } else {
      log_->error("closed an unknown session volume={} holder={} session={}", ticket.volume(), ticket.holder(),
                  ticket.id());
    }
  }
  if (finished) finished();
}

void LeaseManager::set_fence_handler(SessionTicket& ticket, std::function<void()> handler) {
  {
    std::lock_guard lock(mutex_);
    if (!ticket.fenced()) {
      ticket.fence_handler_ = std::move(handler);
      return;
    }
  }
  if (handler) handler();  // fenced before the session got round to registering
}

// ---- helpers (mutex_ held) ----------------------------------------------------------

VolumeLease& LeaseManager::volume_locked(const std::string& volume) {
  const auto it = volumes_.find(volume);
  if (it != volumes_.end()) return it->second;
  std::uint64_t generation = 0;
  try {
    generation = store_.load(volume);  // nothing inserted yet if it throws
  } catch (const LeaseError&) {
    throw;
  } catch (const std::exception& error) {
    log_->error("cannot load generation volume={} error=\"{}\"", volume, error.what());
    throw LeaseError(LeaseErrorCode::kInternal,
                     "cannot read the generation of volume \"" + volume + "\": " + error.what());
  }
  return volumes_.try_emplace(volume, volume, generation).first->second;
}

void LeaseManager::expire_locked(VolumeLease& lease, TimePoint now) {
  for (const HolderEntry& gone : lease.expire(now)) {
    const TimePoint deadline = gone.expires_at().value_or(now);
    log_->info("expired volume={} holder={} mode={} generation={} held_for={} expired_ago={}{}", lease.name(),
               gone.holder, to_string(gone.mode), lease.generation(), duration_text(deadline - gone.held_since),
               duration_text(now - deadline), gone.restart_grace ? " after=restart_grace" : "");
  }
}

std::optional<Refusal> LeaseManager::check_locked(VolumeLease& lease, const std::string& holder, LeaseMode mode,
                                                  AllowedModes allowed, bool explicit_request, TimePoint now) {
  if (!is_valid_holder(holder)) return refusal::invalid_holder(holder);
  if (const auto& running = lease.breaking()) {
    return refusal::breaking(lease.name(), lease.generation(), static_cast<int>(running->fenced.size()));
  }
  if (lease.barred(holder) && !explicit_request) {
    return refusal::broken_holder(lease.name(), lease.generation(), holder);
  }
  if (const HolderEntry* own = lease.find(holder)) {
    // Joining: the write holder may open any session; a reader only more read sessions.
    if (own->mode == LeaseMode::kReadWrite || mode == LeaseMode::kReadOnly) return std::nullopt;
  }
  if (!allowed.allows(mode)) return refusal::mode_not_allowed(lease.name(), mode, allowed);
  return conflict_locked(lease, mode, now);
}

// Another holder's lease that excludes `mode`, if any.
std::optional<Refusal> LeaseManager::conflict_locked(VolumeLease& lease, LeaseMode mode, TimePoint now) {
  if (const HolderEntry* writer = lease.writer()) {
    const HolderFacts facts = facts_of(*writer, now);
    if (writer->restart_grace && !writer->connected()) return refusal::restart_grace(lease.name(), lease.generation(), facts);
    return refusal::held_for_writing(lease.name(), lease.generation(), facts, mode);
  }
  if (mode == LeaseMode::kReadWrite && lease.state() == LeaseState::kRead) {
    return refusal::shared_by_readers(lease.name(), lease.generation(), lease.reader_names(), now - lease.held_since());
  }
  return std::nullopt;
}

// Joins the holder's lease, or creates it; a new write lease first persists the next
// generation (throws if that fails, having changed nothing).
HolderEntry& LeaseManager::grant_locked(VolumeLease& lease, const std::string& holder, LeaseMode mode, TimePoint now,
                                        const char* via) {
  if (HolderEntry* own = lease.find(holder)) return *own;
  if (mode == LeaseMode::kReadWrite) {
    const std::uint64_t next = lease.generation() + 1;
    store_.persist(lease.name(), next, holder);
    lease.set_generation(next);
  }
  HolderEntry& entry = lease.add(holder, mode, now);
  log_->info("granted volume={} holder={} mode={} generation={} via={}", lease.name(), holder, to_string(mode),
             lease.generation(), via);
  return entry;
}

std::unique_ptr<SessionTicket> LeaseManager::issue_locked(VolumeLease& lease, HolderEntry& entry, LeaseMode mode,
                                                          TimePoint now) {
  auto ticket = std::make_unique<SessionTicket>(SessionTicket::Key{}, *this, next_ticket_id_++, lease.name(),
                                                entry.holder, mode, lease.generation());
  entry.sessions.emplace(ticket->id(), ticket.get());
  entry.grace_until.reset();
  entry.restart_grace = false;
  entry.released = false;
  ++open_tickets_;
  log_->info("admitted volume={} holder={} session_mode={} lease_mode={} generation={} session={} connections={} "
             "held_for={}",
             lease.name(), entry.holder, to_string(mode), to_string(entry.mode), lease.generation(), ticket->id(),
             entry.sessions.size(), duration_text(now - entry.held_since));
  return ticket;
}

// The live lease `holder` has on the volume, for renew and release; throws kNotFound.
HolderEntry& LeaseManager::holder_entry_locked(VolumeLease& lease, const std::string& holder, const char* operation,
                                               TimePoint now) {
  if (const auto& running = lease.breaking()) {
    throw LeaseError(LeaseErrorCode::kFailedPrecondition,
                     refusal::breaking(lease.name(), lease.generation(), static_cast<int>(running->fenced.size())).message);
  }
  if (HolderEntry* entry = lease.find(holder)) return *entry;
  std::string message = std::string("cannot ") + operation + ": \"" + holder + "\" holds no lease on volume \"" +
                        lease.name() + "\"";
  if (auto other = conflict_locked(lease, LeaseMode::kReadWrite, now)) message += " (" + other->message + ")";
  throw LeaseError(LeaseErrorCode::kNotFound, message);
}

// Persists a break's generation before anything is fenced; throws LeaseError(kInternal).
void LeaseManager::persist_break_locked(const VolumeLease& lease, std::uint64_t generation, const std::string& writer) {
  try {
    store_.persist(lease.name(), generation, writer);
  } catch (const std::exception& error) {
    log_->error("break failed volume={} generation={} error=\"{}\": nothing was fenced", lease.name(), generation,
                error.what());
    throw LeaseError(LeaseErrorCode::kInternal, "cannot break the lease on volume \"" + lease.name() +
                                                    "\": recording generation " + std::to_string(generation) +
                                                    " failed: " + error.what() + "; nothing was fenced");
  }
}

// Fences every session of the current holders and takes their leases away; returns the
// sessions' fence handlers, to run once the mutex is released.
std::vector<std::function<void()>> LeaseManager::fence_locked(VolumeLease& lease,
                                                              const std::optional<std::string>& to_holder,
                                                              BreakStart& start) {
  std::vector<std::function<void()>> handlers;
  auto& fenced = lease.breaking()->fenced;
  for (auto& [name, entry] : lease.take_holders()) {
    for (const auto& [id, ticket] : entry.sessions) {
      ticket->fenced_.store(true, std::memory_order_release);
      handlers.push_back(std::exchange(ticket->fence_handler_, {}));
      fenced.emplace(id, ticket);
    }
    if (name != to_holder) lease.bar(name);
    start.fenced_holders.push_back(name);
    log_->warn("broke lease volume={} holder={} mode={} old_generation={} generation={} fenced_connections={} to={}",
               lease.name(), name, to_string(entry.mode), lease.generation() - 1, lease.generation(),
               entry.sessions.size(), to_holder.value_or("none"));
  }
  if (start.fenced_holders.empty()) {
    log_->warn("broke lease volume={} holder=none generation={} to={}", lease.name(), lease.generation(),
               to_holder.value_or("none"));
  }
  return handlers;
}

// Step 2 of a break: every fenced session has closed. Returns on_finished, to run once the
// mutex is released.
std::function<void()> LeaseManager::finish_break_locked(VolumeLease& lease, TimePoint now) {
  BreakInProgress done = std::move(*lease.breaking());
  lease.breaking().reset();
  if (done.to_holder) {
    HolderEntry& entry = lease.add(*done.to_holder, LeaseMode::kReadWrite, now);
    entry.api_until = now + done.to_ttl;
    lease.unbar(*done.to_holder);
    log_->info("granted volume={} holder={} mode=rw generation={} via=break ttl={}", lease.name(), *done.to_holder,
               lease.generation(), duration_text(done.to_ttl));
  }
  log_->info("break finished volume={} generation={} holder={}", lease.name(), lease.generation(),
             done.to_holder.value_or("none"));
  return std::move(done.drained);
}

void LeaseManager::last_connection_closed_locked(VolumeLease& lease, HolderEntry& entry, TimePoint now) {
  if (entry.released) {
    log_->info("released volume={} holder={} mode={} generation={} (last connection closed)", lease.name(),
               entry.holder, to_string(entry.mode), lease.generation());
    lease.remove(entry.holder);
    return;
  }
  entry.grace_until = now + options_.grace;
  log_->info("last connection closed volume={} holder={} mode={} generation={} grace={}", lease.name(), entry.holder,
             to_string(entry.mode), lease.generation(), duration_text(options_.grace));
}

void LeaseManager::restore_locked(const PreviousHolder& previous, TimePoint now) {
  if (!is_valid_holder(previous.holder)) {
    throw LeaseError(LeaseErrorCode::kInvalidArgument, refusal::invalid_holder(previous.holder).message);
  }
  VolumeLease& lease = volume_locked(previous.volume);
  if (lease.state() != LeaseState::kFree && (previous.mode == LeaseMode::kReadWrite || lease.writer() != nullptr)) {
    log_->warn("ignored previous holder volume={} holder={}: the volume already has one", previous.volume,
               previous.holder);
    return;
  }
  HolderEntry& entry = lease.add(previous.holder, previous.mode, now);
  entry.grace_until = now + options_.grace;
  entry.restart_grace = true;
  log_->info("restored volume={} holder={} mode={} generation={} grace={}", previous.volume, previous.holder,
             to_string(previous.mode), lease.generation(), duration_text(options_.grace));
}

void LeaseManager::log_refusal_locked(const VolumeLease& lease, const std::string& holder, LeaseMode mode,
                                      const Refusal& refusal, TimePoint now) {
  std::uint64_t suppressed = 0;
  if (!refusal_log_.allow(lease.name() + "\n" + holder, now, suppressed)) return;
  const auto level = refusal.code == RefusalCode::kInternal ? spdlog::level::err : spdlog::level::warn;
  log_->log(level, "refused volume={} holder={} mode={} generation={} suppressed={} reason=\"{}\"", lease.name(),
            holder, to_string(mode), lease.generation(), suppressed, refusal.message);
}

Duration LeaseManager::ttl_or_grace(std::optional<Duration> ttl) const {
  if (ttl && *ttl <= Duration::zero()) throw LeaseError(LeaseErrorCode::kInvalidArgument, "ttl must be positive");
  return ttl.value_or(options_.grace);
}

}  // namespace blockd::server::lease
