// Catalog crash safety: for create, resize and delete, crash at EVERY step that changes
// the disk (n = 0, 1, ... until the operation completes), optionally followed by a power
// cut that loses what was not yet durable; then restart (a fresh Catalog on the real file
// system), recover(), and check that the catalog and the files agree:
//   - the catalog loads (never torn), and no operation is left pending, on disk;
//   - a volume is listed iff its file exists, with the catalog's size;
//   - no file is left over in a class directory, and recovery reports nothing unknown;
//   - the volumes are the state before the operation or after it, and "after" once the
//     operation has returned (a power cut right after success loses nothing).
// Then the same with a crash in the middle of recovery itself. And the controls: with
// fsyncs dropped, the same checks must catch the loss.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <set>

#include "catalog_test_support.h"
#include "fault_injecting_file_system.h"
#include "server/catalog/catalog.h"
#include "server/catalog/real_file_system.h"

namespace {

using blockd::server::catalog::Catalog;
using blockd::server::catalog::CatalogStore;
using blockd::server::catalog::RealFileSystem;
using blockd::test::CatalogDirs;
using blockd::test::CrashInjected;
using blockd::test::create_request;
using blockd::test::FaultInjectingFileSystem;
using blockd::test::resize_request;
using State = std::map<std::string, std::uint64_t>;

constexpr std::uint64_t kMiB = 1 << 20;

struct Scenario {
  std::string name;
  std::function<void(Catalog&)> setup;      // runs on the real file system, durably
  std::function<void(Catalog&)> operation;  // runs with faults
  State before;
  State after;
};

std::vector<Scenario> scenarios() {
  auto keep = [](Catalog& c) { c.create_volume(create_request("keep", "1MiB")); };
  auto keep_and_target = [](const std::string& cls) {
    return [cls](Catalog& c) {
      c.create_volume(create_request("keep", "1MiB"));
      c.create_volume(create_request("target", "2MiB", cls));
    };
  };
  return {
      {"create sparse", keep, [](Catalog& c) { c.create_volume(create_request("target", "4MiB")); },
       {{"keep", kMiB}}, {{"keep", kMiB}, {"target", 4 * kMiB}}},
      {"create preallocated", keep,
       [](Catalog& c) { c.create_volume(create_request("target", "4MiB", "thick")); }, {{"keep", kMiB}},
       {{"keep", kMiB}, {"target", 4 * kMiB}}},
      {"resize sparse", keep_and_target("sparse"),
       [](Catalog& c) { c.resize_volume(resize_request("target", "8MiB")); },
       {{"keep", kMiB}, {"target", 2 * kMiB}}, {{"keep", kMiB}, {"target", 8 * kMiB}}},
      {"resize preallocated", keep_and_target("thick"),
       [](Catalog& c) { c.resize_volume(resize_request("target", "8MiB")); },
       {{"keep", kMiB}, {"target", 2 * kMiB}}, {{"keep", kMiB}, {"target", 8 * kMiB}}},
      {"delete", keep_and_target("sparse"), [](Catalog& c) { c.delete_volume("target"); },
       {{"keep", kMiB}, {"target", 2 * kMiB}}, {{"keep", kMiB}}},
  };
}

// Restarts on the real file system and checks every invariant. Returns "" when all
// hold, else what is wrong.
std::string check_after_restart(const CatalogDirs& dirs, const std::set<State>& allowed) {
  try {
    RealFileSystem real;
    FaultInjectingFileSystem fs(real, dirs.backup());  // no faults: only to skip real fsyncs
    Catalog catalog(fs, dirs.state(), dirs.classes());
    const auto report = catalog.recover();
    std::string problems;
    for (const auto& p : report.problems) problems += " problem: " + p + ";";
    for (const auto& f : report.unknown_files) problems += " unknown file: " + f + ";";
    if (!problems.empty()) return "recovery reported" + problems;

    CatalogStore store(fs, dirs.state());
    if (store.load().has_pending()) return "an operation is still pending on disk after recovery";

    State listed;
    std::set<std::string> expected_files;
    for (const auto& v : catalog.list_volumes()) {
      listed[v.name()] = v.size_bytes();
      struct stat st {};
      if (::stat(v.backing_path().c_str(), &st) != 0) return "volume " + v.name() + " has no file";
      if (static_cast<std::uint64_t>(st.st_size) != v.size_bytes())
        return "volume " + v.name() + ": file is " + std::to_string(st.st_size) + " bytes, catalog says " +
               std::to_string(v.size_bytes());
      expected_files.insert(v.backing_path());
    }
    for (const std::string& dir : {dirs.sparse(), dirs.thick()})
      for (const auto& name : CatalogDirs::list(dir))
        if (expected_files.count(dir + "/" + name) == 0) return "left-over file " + dir + "/" + name;
    for (const auto& name : CatalogDirs::list(dirs.state()))
      if (name != "catalog.pb") return "left-over file in the state directory: " + name;

    if (allowed.count(listed) == 0) {
      std::string got;
      for (const auto& [name, size] : listed) got += " " + name + "=" + std::to_string(size);
      return "the volumes are {" + got + " }, neither the state before nor the one after";
    }
    return "";
  } catch (const std::exception& e) {
    return std::string("restart failed: ") + e.what();
  }
}

const char* model_name(unsigned model) {
  switch (model) {
    case 0: return "process crash";
    case FaultInjectingFileSystem::kLoseUnsyncedData: return "power cut losing unsynced data";
    case FaultInjectingFileSystem::kLoseUnsyncedDirectoryEntries: return "power cut losing unsynced directory entries";
    default: return "power cut losing both";
  }
}

// Runs `scenario` with a crash at step n, for n = 0, 1, ... until it completes. Returns
// the number of steps the operation takes. Each failed check is reported (with the
// steps taken) through `failures` rather than asserted, so that the controls can count.
std::size_t crash_everywhere(const Scenario& scenario, unsigned model, bool drop_file_fsyncs,
                             bool drop_directory_fsyncs, std::vector<std::string>& failures) {
  for (std::size_t n = 0;; ++n) {
    CatalogDirs dirs(CatalogDirs::memory_base());
    RealFileSystem real;
    {
      FaultInjectingFileSystem quiet(real, dirs.backup());  // durable by fiat
      Catalog setup(quiet, dirs.state(), dirs.classes());
      setup.recover();
      scenario.setup(setup);
    }
    FaultInjectingFileSystem fault(real, dirs.backup());
    fault.drop_fsyncs(drop_file_fsyncs, drop_directory_fsyncs);
    bool completed = false;
    std::size_t steps = 0;
    {
      Catalog catalog(fault, dirs.state(), dirs.classes());
      catalog.recover();
      const std::size_t start = fault.steps();
      fault.crash_at_step(n);
      try {
        scenario.operation(catalog);
        completed = true;
      } catch (const CrashInjected&) {
      }
      steps = fault.steps() - start;
    }
    // A power cut right after the operation returned must lose nothing either.
    if (model != 0) fault.power_cut(model);
    const std::set<State> allowed =
        completed ? std::set<State>{scenario.after} : std::set<State>{scenario.before, scenario.after};
    const std::string problem = check_after_restart(dirs, allowed);
    if (!problem.empty())
      failures.push_back(scenario.name + ", " + model_name(model) + (completed ? " after it returned" : "") +
                         " at step " + std::to_string(n) + ": " + problem + "\nsteps:\n" + fault.history());
    if (completed) return steps;
  }
}

class CrashEverywhere : public testing::TestWithParam<unsigned> {};

TEST_P(CrashEverywhere, CatalogAndFilesStayConsistent) {
  const unsigned model = GetParam();
  for (const Scenario& scenario : scenarios()) {
    std::vector<std::string> failures;
    const std::size_t steps = crash_everywhere(scenario, model, false, false, failures);
    for (const auto& failure : failures) ADD_FAILURE() << failure;
    // Intent save (5 steps) + file change (2 to 4) + final save (5): every one was a crash point.
    EXPECT_GE(steps, 12U) << scenario.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CrashEverywhere,
                         testing::Values(0U, FaultInjectingFileSystem::kLoseUnsyncedData,
                                         FaultInjectingFileSystem::kLoseUnsyncedDirectoryEntries,
                                         FaultInjectingFileSystem::kLoseBoth),
                         [](const testing::TestParamInfo<unsigned>& param_info) {
                           switch (param_info.param) {
                             case 0: return std::string("ProcessCrash");
                             case 1: return std::string("PowerCutLosingData");
                             case 2: return std::string("PowerCutLosingDirectoryEntries");
                             default: return std::string("PowerCutLosingBoth");
                           }
                         });

// Recovery may itself be interrupted: crash the operation at every step, then crash the
// first recovery at every step, and check that a second recovery still gets it right.
TEST(CrashDuringRecovery, SecondRecoveryFinishesTheJob) {
  std::size_t recoveries_checked = 0;
  for (const Scenario& scenario : scenarios()) {
    for (std::size_t n = 0;; ++n) {
      bool operation_completed = false;
      for (std::size_t m = 0;; ++m) {
        CatalogDirs dirs(CatalogDirs::memory_base());
        RealFileSystem real;
        {
          FaultInjectingFileSystem quiet(real, dirs.backup());
          Catalog setup(quiet, dirs.state(), dirs.classes());
          setup.recover();
          scenario.setup(setup);
        }
        FaultInjectingFileSystem fault(real, dirs.backup());
        {
          Catalog catalog(fault, dirs.state(), dirs.classes());
          catalog.recover();
          fault.crash_at_step(n);
          try {
            scenario.operation(catalog);
            operation_completed = true;
          } catch (const CrashInjected&) {
          }
        }
        if (operation_completed) break;
        fault.power_cut(FaultInjectingFileSystem::kLoseBoth);

        FaultInjectingFileSystem second(real, dirs.backup());
        bool recovery_completed = false;
        try {
          Catalog catalog(second, dirs.state(), dirs.classes());
          second.crash_at_step(m);
          catalog.recover();
          recovery_completed = true;
        } catch (const CrashInjected&) {
        }
        if (!recovery_completed) second.power_cut(FaultInjectingFileSystem::kLoseBoth);
        const std::string problem = check_after_restart(dirs, {scenario.before, scenario.after});
        EXPECT_EQ(problem, "") << scenario.name << ", operation crashed at step " << n << ", recovery at step " << m
                               << "\nrecovery steps:\n"
                               << second.history();
        ++recoveries_checked;
        if (recovery_completed) break;
      }
      if (operation_completed) break;
    }
  }
  EXPECT_GT(recoveries_checked, 100U);
}

// The controls: an implementation that skipped its fsyncs would pass the process-crash
// runs, so the power-cut runs must be what catches it.
TEST(CrashEverywhereControl, DroppedFileFsyncsAreCaught) {
  std::vector<std::string> failures;
  crash_everywhere(scenarios().front(), FaultInjectingFileSystem::kLoseUnsyncedData, true, false, failures);
  EXPECT_FALSE(failures.empty()) << "losing unsynced data went unnoticed";
}

TEST(CrashEverywhereControl, DroppedDirectoryFsyncsAreCaught) {
  for (const Scenario& scenario : scenarios()) {
    std::vector<std::string> failures;
    crash_everywhere(scenario, FaultInjectingFileSystem::kLoseUnsyncedDirectoryEntries, false, true, failures);
    EXPECT_FALSE(failures.empty()) << scenario.name << ": losing unsynced directory entries went unnoticed";
  }
}

TEST(CrashEverywhereControl, ProcessCrashAloneCannotSeeDroppedFsyncs) {
  // Why the power-cut models exist: without them, dropping every fsync passes.
  std::vector<std::string> failures;
  crash_everywhere(scenarios().front(), 0, true, true, failures);
  EXPECT_TRUE(failures.empty()) << failures.front();
}

}  // namespace
