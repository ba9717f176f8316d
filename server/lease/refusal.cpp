#include "server/lease/refusal.h"

#include "server/lease/duration_text.h"

namespace blockd::server::lease::refusal {

namespace {

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

std::string break_hint(const std::string& volume) { return "; break the lease with: blockctl lease break " + volume; }

std::string connection_text(const HolderFacts& holder) {
  if (holder.connections > 0) {
    return std::to_string(holder.connections) + (holder.connections == 1 ? " connection" : " connections");
  }
  return "no connection, kept for its reconnect for " + duration_text(holder.expires_in.value_or(Duration{})) + " more";
}

// At most five names, so that a volume shared by a hundred readers still fits a message.
std::string holder_list(const std::vector<std::string>& holders) {
  constexpr std::size_t kShown = 5;
  std::string out;
  for (std::size_t i = 0; i < holders.size() && i < kShown; ++i) {
    if (i > 0) out += ", ";
    out += quoted(holders[i]);
  }
  if (holders.size() > kShown) out += " and " + std::to_string(holders.size() - kShown) + " more";
  return out;
}

}  // namespace

Refusal invalid_holder(const std::string& holder) {
  return {RefusalCode::kInvalidHolder,
          "invalid holder " + quoted(holder) + ": use 1-253 characters of A-Z a-z 0-9 . _ : -"};
}

Refusal mode_not_allowed(const std::string& volume, LeaseMode asked, AllowedModes allowed) {
  const std::string modes = std::string(describe(allowed));
  if (asked == LeaseMode::kReadOnly) {
    return {RefusalCode::kModeNotAllowed, "volume " + quoted(volume) +
                                              " does not allow shared readers (ReadOnlyMany); its access modes: " +
                                              modes + "; connect without mode=ro"};
  }
  return {RefusalCode::kModeNotAllowed, "volume " + quoted(volume) +
                                            " does not allow writers (ReadWriteOnce); its access modes: " + modes +
                                            "; connect with mode=ro"};
}

Refusal held_for_writing(const std::string& volume, std::uint64_t generation, const HolderFacts& writer,
                         LeaseMode asked) {
  std::string message = "volume " + quoted(volume) + " is held for writing by " + quoted(writer.holder) +
                        " (generation " + std::to_string(generation) + ", for " + duration_text(writer.held_for) +
                        ", " + connection_text(writer) + ")";
  if (asked == LeaseMode::kReadOnly) message += "; readers are admitted only while no writer holds it";
  return {RefusalCode::kHeldForWriting, message + break_hint(volume)};
}

Refusal shared_by_readers(const std::string& volume, std::uint64_t generation, const std::vector<std::string>& readers,
                          Duration held_for) {
  return {RefusalCode::kSharedByReaders,
          "volume " + quoted(volume) + " is shared read-only by " + holder_list(readers) + " (generation " +
              std::to_string(generation) + ", for " + duration_text(held_for) +
              "); a writer is admitted only when no reader holds it" + break_hint(volume)};
}

Refusal restart_grace(const std::string& volume, std::uint64_t generation, const HolderFacts& previous) {
  return {RefusalCode::kRestartGrace,
          "volume " + quoted(volume) + " is reserved for " + quoted(previous.holder) + " (generation " +
              std::to_string(generation) + "), its holder before blockd restarted, for " +
              duration_text(previous.expires_in.value_or(Duration{})) + " more" + break_hint(volume)};
}

Refusal breaking(const std::string& volume, std::uint64_t generation, int fenced_connections) {
  return {RefusalCode::kBreaking, "the lease on volume " + quoted(volume) + " is being broken (generation " +
                                      std::to_string(generation) + ", waiting for " +
                                      std::to_string(fenced_connections) +
                                      " connection(s) of the old holder to close); try again shortly"};
}

Refusal broken_holder(const std::string& volume, std::uint64_t generation, const std::string& holder) {
  return {RefusalCode::kBrokenHolder,
          "the lease of " + quoted(holder) + " on volume " + quoted(volume) + " was broken (now generation " +
              std::to_string(generation) +
              "); it is not re-admitted automatically: acquire it again with: blockctl lease acquire " + volume +
              " --holder " + holder};
}

Refusal internal(const std::string& volume, const std::string& what) {
  return {RefusalCode::kInternal, "cannot grant the lease on volume " + quoted(volume) + ": " + what +
                                      "; nothing was granted"};
}

}  // namespace blockd::server::lease::refusal
