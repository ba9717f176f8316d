// Shared by the lease tests: an in-memory GenerationStore that can be told to fail, and a
// fixture owning a FakeClock, the store and a LeaseManager. Tickets are locals of each
// test, so they die before the fixture's manager (which must outlive them).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/lease/fake_clock.h"
#include "server/lease/generation_store.h"
#include "server/lease/lease_manager.h"

namespace blockd::server::lease::testing {

using namespace std::chrono_literals;

class MemoryGenerationStore final : public GenerationStore {
 public:
  struct Record {
    std::string volume;
    std::uint64_t generation;
    std::string writer;
  };

  std::uint64_t load(const std::string& volume) override {
    ++loads;
    if (fail_load) throw std::runtime_error("catalog unreadable");
    const auto it = generations.find(volume);
    return it == generations.end() ? 0 : it->second;
  }

  void persist(const std::string& volume, std::uint64_t generation, const std::string& writer) override {
    if (fail_persist) throw std::runtime_error("No space left on device");
    // A generation must never go backwards on disk, whatever the manager believes.
    EXPECT_GT(generation, generations[volume]) << "volume " << volume;
    generations[volume] = generation;
    writers[volume] = writer;
    persisted.push_back({volume, generation, writer});
  }

  std::map<std::string, std::uint64_t> generations;
  std::map<std::string, std::string> writers;
  std::vector<Record> persisted;
  int loads = 0;
  bool fail_persist = false;
  bool fail_load = false;
};

inline constexpr AllowedModes kRwo{true, false};
inline constexpr AllowedModes kRwoRox{true, true};
inline constexpr AllowedModes kRox{false, true};

class LeaseTest : public ::testing::Test {
 protected:
  LeaseManager::Options options() const {
    LeaseManager::Options o;
    o.grace = 120s;
    return o;
  }

  // Simulates a blockd restart: a new manager over the same store.
  void restart(const std::vector<LeaseManager::PreviousHolder>& previous = {}) {
    manager.reset();
    manager = std::make_unique<LeaseManager>(options(), clock, store, previous);
  }

  std::unique_ptr<SessionTicket> admit_ok(const std::string& volume, const std::string& holder,
                                          LeaseMode mode = LeaseMode::kReadWrite, AllowedModes allowed = kRwo) {
    AdmitResult result = manager->admit(volume, holder, mode, allowed);
    EXPECT_TRUE(result.admitted()) << holder << " on " << volume << ": " << result.refusal.message;
    return std::move(result.ticket);
  }

  Refusal admit_refused(const std::string& volume, const std::string& holder, LeaseMode mode = LeaseMode::kReadWrite,
                        AllowedModes allowed = kRwo) {
    AdmitResult result = manager->admit(volume, holder, mode, allowed);
    EXPECT_FALSE(result.admitted()) << holder << " was admitted on " << volume;
    return result.refusal;
  }

  FakeClock clock;
  MemoryGenerationStore store;
  std::unique_ptr<LeaseManager> manager = std::make_unique<LeaseManager>(options(), clock, store);
};

}  // namespace blockd::server::lease::testing
