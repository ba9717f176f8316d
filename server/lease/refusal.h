// Refusal: why LeaseManager::admit() said no, as a code the caller can map (GO answers
// every one with NBD_REP_ERR_POLICY, except kInternal) and the message sent to the client.
// The builders here are the one place each message is worded; README.md lists them.
//
// Thread affinity: pure functions, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/lease/clock.h"
#include "server/lease/lease_mode.h"

namespace blockd::server::lease {

enum class RefusalCode {
  kInvalidHolder,     // the holder name breaks the grammar's rule
  kModeNotAllowed,    // the volume's access modes do not include the mode asked for
  kHeldForWriting,    // another holder has the write lease (connected or in its grace)
  kSharedByReaders,   // readers share the volume; a writer must wait
  kRestartGrace,      // reserved for the holder from before blockd restarted
  kBreaking,          // a break is draining the old holder's sessions
  kBrokenHolder,      // this holder's lease was broken; it must re-acquire explicitly
  kInternal,          // the new generation could not be persisted (or loaded)
};

struct Refusal {
  RefusalCode code = RefusalCode::kInternal;
  std::string message;
};

// What a message needs to know about the holder it names.
struct HolderFacts {
  std::string holder;
  Duration held_for{};
  int connections = 0;
  std::optional<Duration> expires_in;  // set when it has no connection
};

namespace refusal {

Refusal invalid_holder(const std::string& holder);
Refusal mode_not_allowed(const std::string& volume, LeaseMode asked, AllowedModes allowed);
Refusal held_for_writing(const std::string& volume, std::uint64_t generation, const HolderFacts& writer,
                         LeaseMode asked);
Refusal shared_by_readers(const std::string& volume, std::uint64_t generation, const std::vector<std::string>& readers,
                          Duration held_for);
Refusal restart_grace(const std::string& volume, std::uint64_t generation, const HolderFacts& previous);
Refusal breaking(const std::string& volume, std::uint64_t generation, int fenced_connections);
Refusal broken_holder(const std::string& volume, std::uint64_t generation, const std::string& holder);
Refusal internal(const std::string& volume, const std::string& what);

}  // namespace refusal

}  // namespace blockd::server::lease
