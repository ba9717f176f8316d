// Catalog (server/catalog/catalog.h): volume operations on real files under /tmp, their
// validation errors (code and message), the free-space check for preallocated classes
// (a tiny free space injected through the FileSystem seam), recovery's reports (unknown
// files, missing files), I/O errors injected at every step, and concurrent callers.
// Crashes at every step are in catalog_crash_test.cpp.
#include "server/catalog/catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <thread>

#include <google/protobuf/util/message_differencer.h>

#include "catalog_test_support.h"
#include "fault_injecting_file_system.h"
#include "server/catalog/catalog_store.h"
#include "server/catalog/real_file_system.h"

namespace {

using blockd::server::catalog::Catalog;
using blockd::server::catalog::CatalogError;
using blockd::server::catalog::CatalogStore;
using blockd::server::catalog::ErrorCode;
using blockd::server::catalog::RealFileSystem;
using blockd::server::catalog::VolumeFilter;
using blockd::server::storage::Allocation;
using blockd::server::storage::StorageClass;
using blockd::server::storage::StorageClassSet;
using blockd::test::CatalogDirs;
using blockd::test::create_request;
using blockd::test::FaultInjectingFileSystem;
using blockd::test::resize_request;
using testing::HasSubstr;
namespace v1 = blockd::v1;

constexpr std::uint64_t kMiB = 1 << 20;

struct FileState {
  bool exists = false;
  std::uint64_t size = 0;
  std::uint64_t allocated = 0;
};

FileState file_state(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, static_cast<std::uint64_t>(st.st_size), static_cast<std::uint64_t>(st.st_blocks) * 512};
}

// Runs `call`, expects a CatalogError with `code` whose message contains `text`.
template <typename Call>
void expect_error(Call call, ErrorCode code, const std::string& text) {
  try {
    call();
    ADD_FAILURE() << "no error; expected " << to_string(code) << ": " << text;
  } catch (const CatalogError& e) {
    EXPECT_EQ(to_string(e.code()), to_string(code)) << e.what();
    EXPECT_THAT(e.what(), HasSubstr(text));
  }
}

class CatalogTest : public testing::Test {
 protected:
  CatalogTest() : catalog_(std::make_unique<Catalog>(fs_, dirs_.state(), dirs_.classes())) { catalog_->recover(); }

  // A fresh Catalog on the same directories, as after a restart.
  void restart() {
    catalog_.reset();
    catalog_ = std::make_unique<Catalog>(fs_, dirs_.state(), dirs_.classes());
    report_ = catalog_->recover();
  }

  CatalogDirs dirs_;
  RealFileSystem fs_;
  std::unique_ptr<Catalog> catalog_;
  blockd::server::catalog::RecoveryReport report_;
};

// ---------------------------------------------------------------- create

TEST_F(CatalogTest, CreateRecordsEverythingAndMakesASparseFile) {
  auto request = create_request("pg-data-0", "10GiB");
  request.set_description("Postgres primary");
  request.add_access_modes(v1::READ_ONLY_MANY);
  request.add_access_modes(v1::READ_WRITE_ONCE);
  (*request.mutable_labels())["app"] = "postgres";
  (*request.mutable_labels())["example.com/tier"] = "gold";
  const std::uint64_t before = catalog_->version();
  const v1::Volume v = catalog_->create_volume(request);

  EXPECT_EQ(v.name(), "pg-data-0");
  EXPECT_TRUE(std::regex_match(v.uuid(), std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << v.uuid();
  EXPECT_EQ(v.size_bytes(), 10ULL << 30);
  EXPECT_EQ(v.storage_class(), "sparse");  // the default class
  EXPECT_EQ(v.backing_path(), dirs_.sparse() + "/pg-data-0-" + v.uuid() + ".img");
  ASSERT_EQ(v.access_modes_size(), 2);
  EXPECT_EQ(v.access_modes(0), v1::READ_WRITE_ONCE);
  EXPECT_EQ(v.access_modes(1), v1::READ_ONLY_MANY);
  EXPECT_EQ(v.description(), "Postgres primary");
  EXPECT_EQ(v.labels().at("app"), "postgres");
  EXPECT_EQ(v.labels().at("example.com/tier"), "gold");
  EXPECT_GT(v.created_at().seconds(), 1'600'000'000);
  EXPECT_EQ(v.generation(), 0U);
  EXPECT_EQ(catalog_->version(), before + 2);  // the intent, then the outcome

  const FileState file = file_state(v.backing_path());
  EXPECT_TRUE(file.exists);
  EXPECT_EQ(file.size, 10ULL << 30);
  EXPECT_LT(file.allocated, 1 * kMiB);  // sparse
  struct stat st {};
  ASSERT_EQ(::stat(v.backing_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);

  restart();
  const auto again = catalog_->find_volume("pg-data-0");
  ASSERT_TRUE(again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*again, v)) << again->DebugString();
  EXPECT_TRUE(report_.actions.empty());
  EXPECT_TRUE(report_.problems.empty());
  EXPECT_TRUE(report_.unknown_files.empty());
}

TEST_F(CatalogTest, DefaultAccessModeIsReadWriteOnce) {
  const v1::Volume v = catalog_->create_volume(create_request("a", "1MiB"));
  ASSERT_EQ(v.access_modes_size(), 1);
  EXPECT_EQ(v.access_modes(0), v1::READ_WRITE_ONCE);
}

TEST_F(CatalogTest, SizeIsRoundedUpToAMultipleOf512) {
  EXPECT_EQ(catalog_->create_volume(create_request("a", "1000")).size_bytes(), 1024U);
  EXPECT_EQ(catalog_->create_volume(create_request("b", "1")).size_bytes(), 512U);
  EXPECT_EQ(catalog_->create_volume(create_request("c", "512")).size_bytes(), 512U);
  EXPECT_EQ(file_state(catalog_->find_volume("a")->backing_path()).size, 1024U);
}

TEST_F(CatalogTest, PreallocatedClassReservesEveryBlock) {
  const v1::Volume v = catalog_->create_volume(create_request("thick-1", "8MiB", "thick"));
  EXPECT_EQ(v.storage_class(), "thick");
  EXPECT_EQ(v.backing_path(), dirs_.thick() + "/thick-1-" + v.uuid() + ".img");
  const FileState file = file_state(v.backing_path());
  EXPECT_EQ(file.size, 8 * kMiB);
  EXPECT_GE(file.allocated, 8 * kMiB);
}

TEST_F(CatalogTest, UuidsAreUnique) {
  std::set<std::string> uuids;
  for (int i = 0; i < 20; ++i)
    uuids.insert(catalog_->create_volume(create_request("v" + std::to_string(i), "512")).uuid());
  EXPECT_EQ(uuids.size(), 20U);
}

TEST_F(CatalogTest, InvalidCreatesChangeNothing) {
  catalog_->create_volume(create_request("taken", "1MiB"));
  const std::uint64_t version = catalog_->version();
  const auto files = CatalogDirs::list(dirs_.sparse());
  auto create = [&](v1::CreateVolumeRequest request) { return [this, request] { catalog_->create_volume(request); }; };

  expect_error(create(create_request("Bad_Name", "1MiB")), ErrorCode::kInvalidArgument, "volume name 'Bad_Name' must be");
  expect_error(create(create_request("", "1MiB")), ErrorCode::kInvalidArgument, "volume name '' must be");
  expect_error(create(create_request(std::string(64, 'a'), "1MiB")), ErrorCode::kInvalidArgument, "1-63");
  expect_error(create(create_request("taken", "1MiB")), ErrorCode::kAlreadyExists, "volume 'taken' already exists");
  expect_error(create(create_request("x", "")), ErrorCode::kInvalidArgument, "the size is required");
  expect_error(create(create_request("x", "ten")), ErrorCode::kInvalidArgument, "size 'ten' is not a size");
  expect_error(create(create_request("x", "-1")), ErrorCode::kInvalidArgument, "size '-1' is not a size");
  expect_error(create(create_request("x", "1.5GiB")), ErrorCode::kInvalidArgument, "is not a size");
  expect_error(create(create_request("x", "0")), ErrorCode::kInvalidArgument, "must be positive");
  expect_error(create(create_request("x", "65TiB")), ErrorCode::kInvalidArgument, "largest volume blockd makes (64 TiB)");
  expect_error(create(create_request("x", "99999999999999999999")), ErrorCode::kInvalidArgument, "is not a size");
  expect_error(create(create_request("x", "1MiB", "gold")), ErrorCode::kInvalidArgument,
               "storage class 'gold' does not exist; the classes are sparse, thick");

  auto request = create_request("x", "1MiB");
  request.add_access_modes(v1::ACCESS_MODE_UNSPECIFIED);
  expect_error(create(request), ErrorCode::kInvalidArgument, "access mode 0 is not one blockd knows");
  request = create_request("x", "1MiB");
  request.add_access_modes(static_cast<v1::AccessMode>(7));
  expect_error(create(request), ErrorCode::kInvalidArgument, "access mode 7");
  request = create_request("x", "1MiB");
  request.set_description("two\nlines");
  expect_error(create(request), ErrorCode::kInvalidArgument, "control character");
  request.set_description(std::string(1025, 'd'));
  expect_error(create(request), ErrorCode::kInvalidArgument, "at most 1024");
  request.set_description("\xc3\x28");
  expect_error(create(request), ErrorCode::kInvalidArgument, "not valid UTF-8");
  request = create_request("x", "1MiB");
  (*request.mutable_labels())["bad key!"] = "v";
  expect_error(create(request), ErrorCode::kInvalidArgument, "label key 'bad key!' is not valid");
  request = create_request("x", "1MiB");
  (*request.mutable_labels())["ok"] = "-bad";
  expect_error(create(request), ErrorCode::kInvalidArgument, "label ok='-bad'");

  EXPECT_EQ(catalog_->version(), version);
  EXPECT_EQ(CatalogDirs::list(dirs_.sparse()), files);
  EXPECT_EQ(catalog_->list_volumes().size(), 1U);
}

TEST_F(CatalogTest, ADescriptionInAnyLanguageIsKept) {
  auto request = create_request("x", "1MiB");
  request.set_description("Données de production — 本番");
  EXPECT_EQ(catalog_->create_volume(request).description(), "Données de production — 本番");
  restart();
  EXPECT_EQ(catalog_->find_volume("x")->description(), "Données de production — 本番");
}

// ---------------------------------------------------------------- free space

TEST(CatalogFreeSpace, PreallocationMustFitInTheFreeSpace) {
  CatalogDirs dirs;
  RealFileSystem real;
  FaultInjectingFileSystem fs(real, dirs.backup());
  fs.set_free_bytes(3 * kMiB);
  Catalog catalog(fs, dirs.state(), dirs.classes());
  catalog.recover();

  expect_error([&] { catalog.create_volume(create_request("big", "4MiB", "thick")); }, ErrorCode::kResourceExhausted,
               "storage class 'thick' preallocates, and " + dirs.thick() +
                   " has 3 MiB free: a 4 MiB volume does not fit");
  EXPECT_TRUE(CatalogDirs::list(dirs.thick()).empty());
  EXPECT_FALSE(catalog.find_volume("big"));

  // What fits is made; a sparse class is thin and is not checked.
  catalog.create_volume(create_request("fits", "2MiB", "thick"));
  catalog.create_volume(create_request("thin", "1GiB", "sparse"));

  // Growing is checked against the growth.
  expect_error([&] { catalog.resize_volume(resize_request("fits", "6MiB")); }, ErrorCode::kResourceExhausted,
               "growing 'fits' by 4 MiB does not fit");
  EXPECT_EQ(catalog.resize_volume(resize_request("fits", "5MiB")).size_bytes(), 5 * kMiB);
  EXPECT_EQ(catalog.resize_volume(resize_request("thin", "10GiB")).size_bytes(), 10ULL << 30);
}

TEST(CatalogFreeSpace, RealEnospcIsResourceExhausted) {
  CatalogDirs dirs;
  RealFileSystem real;
  FaultInjectingFileSystem fs(real, dirs.backup());
  Catalog catalog(fs, dirs.state(), dirs.classes());
  catalog.recover();
  // The create's steps: 5 for the intent save, then open and fallocate.
  fs.fail_at_step(6, ENOSPC);
  expect_error([&] { catalog.create_volume(create_request("v", "4MiB", "thick")); }, ErrorCode::kResourceExhausted,
               "No space left on device");
  EXPECT_FALSE(catalog.poisoned());
  EXPECT_TRUE(CatalogDirs::list(dirs.thick()).empty());
  EXPECT_TRUE(catalog.list_volumes().empty());
  catalog.create_volume(create_request("v", "4MiB", "thick"));  // and it works afterwards
}

// ---------------------------------------------------------------- resize

TEST_F(CatalogTest, ResizeGrowsTheFile) {
  const v1::Volume v = catalog_->create_volume(create_request("v", "1MiB"));
  const v1::Volume grown = catalog_->resize_volume(resize_request("v", "3MiB"));
  EXPECT_EQ(grown.size_bytes(), 3 * kMiB);
  EXPECT_EQ(grown.uuid(), v.uuid());
  EXPECT_EQ(file_state(v.backing_path()).size, 3 * kMiB);
  EXPECT_EQ(catalog_->resize_volume(resize_request("v", "4000001")).size_bytes(), 4000256U);  // rounded up
  restart();
  EXPECT_EQ(catalog_->find_volume("v")->size_bytes(), 4000256U);
  EXPECT_TRUE(report_.problems.empty());
}

TEST_F(CatalogTest, ResizeToTheSameSizeChangesNothing) {
  catalog_->create_volume(create_request("v", "1MiB"));
  const std::uint64_t version = catalog_->version();
  EXPECT_EQ(catalog_->resize_volume(resize_request("v", "1048576")).size_bytes(), kMiB);
  EXPECT_EQ(catalog_->version(), version);
}

TEST_F(CatalogTest, ShrinkIsRefusedWithAReason) {
  const v1::Volume v = catalog_->create_volume(create_request("v", "2MiB"));
  expect_error([&] { catalog_->resize_volume(resize_request("v", "1MiB")); }, ErrorCode::kFailedPrecondition,
               "volume 'v' is 2 MiB; shrinking it to 1 MiB is refused because the file system or data at its end "
               "would be cut off");
  EXPECT_EQ(file_state(v.backing_path()).size, 2 * kMiB);
  EXPECT_EQ(catalog_->find_volume("v")->size_bytes(), 2 * kMiB);
}

TEST_F(CatalogTest, ResizeErrors) {
  catalog_->create_volume(create_request("v", "1MiB"));
  expect_error([&] { catalog_->resize_volume(resize_request("nope", "2MiB")); }, ErrorCode::kNotFound,
               "volume 'nope' does not exist");
  expect_error([&] { catalog_->resize_volume(resize_request("v", "")); }, ErrorCode::kInvalidArgument,
               "the new size is required");
  expect_error([&] { catalog_->resize_volume(resize_request("v", "lots")); }, ErrorCode::kInvalidArgument,
               "size 'lots' is not a size");
  expect_error([&] { catalog_->resize_volume(resize_request("v", "100TiB")); }, ErrorCode::kInvalidArgument,
               "largest volume");
}

TEST(CatalogClasses, AVolumeWhoseClassIsGoneIsReportedAndCannotBeResized) {
  CatalogDirs dirs;
  RealFileSystem fs;
  {
    Catalog catalog(fs, dirs.state(), dirs.classes());
    catalog.recover();
    catalog.create_volume(create_request("old", "1MiB", "thick"));
  }
  std::vector<StorageClass> only_sparse = {
      {"sparse", dirs.sparse(), Allocation::kSparse, blockd::server::storage::IoMode::kBuffered, true}};
  Catalog catalog(fs, dirs.state(), StorageClassSet(only_sparse));
  const auto report = catalog.recover();
  ASSERT_EQ(report.problems.size(), 1U);
  EXPECT_THAT(report.problems[0], HasSubstr("volume 'old' is in storage class 'thick', which the config file no "
                                            "longer declares"));
  expect_error([&] { catalog.resize_volume(resize_request("old", "2MiB")); }, ErrorCode::kFailedPrecondition,
               "add the class back to resize it");
  catalog.delete_volume("old");  // deleting still works
  EXPECT_TRUE(CatalogDirs::list(dirs.thick()).empty());
}

// ---------------------------------------------------------------- delete

TEST_F(CatalogTest, DeleteRemovesTheVolumeAndItsFile) {
  const v1::Volume keep = catalog_->create_volume(create_request("keep", "1MiB"));
  const v1::Volume gone = catalog_->create_volume(create_request("gone", "1MiB"));
  catalog_->delete_volume("gone");
  EXPECT_FALSE(catalog_->find_volume("gone"));
  EXPECT_FALSE(file_state(gone.backing_path()).exists);
  EXPECT_TRUE(file_state(keep.backing_path()).exists);
  expect_error([&] { catalog_->delete_volume("gone"); }, ErrorCode::kNotFound, "volume 'gone' does not exist");
  restart();
  EXPECT_FALSE(catalog_->find_volume("gone"));
  EXPECT_TRUE(catalog_->find_volume("keep"));
  // The name can be used again, with a new UUID and file.
  const v1::Volume again = catalog_->create_volume(create_request("gone", "1MiB"));
  EXPECT_NE(again.uuid(), gone.uuid());
}

TEST_F(CatalogTest, DeleteCheckCanRefuse) {
  const v1::Volume v = catalog_->create_volume(create_request("busy", "1MiB"));
  const std::uint64_t version = catalog_->version();
  expect_error(
      [&] {
        catalog_->delete_volume("busy", [](const v1::Volume& volume) {
          throw CatalogError(ErrorCode::kFailedPrecondition, "volume '" + volume.name() + "' has 2 clients connected");
        });
      },
      ErrorCode::kFailedPrecondition, "volume 'busy' has 2 clients connected");
  EXPECT_TRUE(catalog_->find_volume("busy"));
  EXPECT_TRUE(file_state(v.backing_path()).exists);
  EXPECT_EQ(catalog_->version(), version);
}

// ---------------------------------------------------------------- queries

TEST_F(CatalogTest, ListFiltersByClassAndLabels) {
  auto a = create_request("a", "1MiB");
  (*a.mutable_labels())["app"] = "db";
  (*a.mutable_labels())["tier"] = "gold";
  auto b = create_request("b", "1MiB", "thick");
  (*b.mutable_labels())["app"] = "db";
  auto c = create_request("c", "1MiB");
  (*c.mutable_labels())["app"] = "web";
  catalog_->create_volume(c);
  catalog_->create_volume(b);
  catalog_->create_volume(a);
  auto names = [&](const VolumeFilter& filter) {
    std::vector<std::string> out;
    for (const auto& v : catalog_->list_volumes(filter)) out.push_back(v.name());
    return out;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(names({"thick", {}}), (std::vector<std::string>{"b"}));
  EXPECT_EQ(names({"", {{"app", "db"}}}), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(names({"", {{"app", "db"}, {"tier", "gold"}}}), (std::vector<std::string>{"a"}));
  EXPECT_EQ(names({"sparse", {{"app", "db"}}}), (std::vector<std::string>{"a"}));
  EXPECT_EQ(names({"", {{"app", "none"}}}), (std::vector<std::string>{}));
}

TEST_F(CatalogTest, StorageClassesAsProto) {
  const auto classes = catalog_->storage_classes();
  const auto& all = classes.all();
  ASSERT_EQ(all.size(), 2U);
  const v1::StorageClass sparse = blockd::server::catalog::to_proto(all[0]);
  EXPECT_EQ(sparse.name(), "sparse");
  EXPECT_EQ(sparse.directory(), dirs_.sparse());
  EXPECT_EQ(sparse.allocation(), v1::StorageClass::SPARSE);
  EXPECT_EQ(sparse.io(), v1::StorageClass::BUFFERED);
  EXPECT_TRUE(sparse.is_default());
  const v1::StorageClass thick = blockd::server::catalog::to_proto(all[1]);
  EXPECT_EQ(thick.allocation(), v1::StorageClass::PREALLOCATE);
  EXPECT_EQ(thick.io(), v1::StorageClass::DIRECT);
  EXPECT_FALSE(thick.is_default());
}

TEST(CatalogStartup, NothingChangesBeforeRecover) {
  CatalogDirs dirs;
  RealFileSystem fs;
  Catalog catalog(fs, dirs.state(), dirs.classes());
  expect_error([&] { catalog.create_volume(create_request("a", "1MiB")); }, ErrorCode::kUnavailable,
               "not been recovered yet");
  EXPECT_TRUE(catalog.list_volumes().empty());
}

TEST(CatalogStartup, DamagedCatalogRefusesToStart) {
  CatalogDirs dirs;
  RealFileSystem fs;
  std::ofstream(dirs.state() + "/catalog.pb") << "this is not a catalog";
  try {
    Catalog catalog(fs, dirs.state(), dirs.classes());
    ADD_FAILURE() << "a damaged catalog was accepted";
  } catch (const CatalogError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDataLoss);
    EXPECT_THAT(e.what(), HasSubstr(dirs.state() + "/catalog.pb is damaged"));
  }
}

TEST(CatalogStartup, StateDirectoryAndClassDirectoriesInsideItAreCreated) {
  CatalogDirs dirs;
  RealFileSystem fs;
  const std::string state = dirs.root() + "/new/state";
  StorageClassSet classes({blockd::server::storage::fallback_storage_class(state)});
  Catalog catalog(fs, state, classes);
  const auto report = catalog.recover();
  EXPECT_TRUE(file_state(state + "/volumes").exists);
  ASSERT_EQ(report.actions.size(), 1U);
  EXPECT_THAT(report.actions[0], HasSubstr("created the directory " + state + "/volumes"));
  const v1::Volume v = catalog.create_volume(create_request("a", "1MiB"));
  EXPECT_EQ(v.backing_path().rfind(state + "/volumes/a-", 0), 0U) << v.backing_path();
}

TEST(CatalogStartup, AMissingClassDirectoryElsewhereIsNotCreated) {
  CatalogDirs dirs;
  RealFileSystem fs;
  const std::string missing = dirs.root() + "/unmounted/disk";
  StorageClassSet classes({StorageClass{"disk", missing, Allocation::kSparse, {}, true}});
  Catalog catalog(fs, dirs.state(), classes);
  const auto report = catalog.recover();
  ASSERT_EQ(report.problems.size(), 1U);
  EXPECT_THAT(report.problems[0], HasSubstr("storage class 'disk': directory " + missing + " does not exist"));
  EXPECT_FALSE(file_state(missing).exists);
  expect_error([&] { catalog.create_volume(create_request("a", "1MiB")); }, ErrorCode::kFailedPrecondition,
               "directory " + missing + " does not exist; create it (and mount its file system)");
}

// ---------------------------------------------------------------- recovery reports

TEST_F(CatalogTest, UnknownFilesAreReportedNeverDeleted) {
  const v1::Volume v = catalog_->create_volume(create_request("known", "1MiB"));
  std::ofstream(dirs_.sparse() + "/stray.img") << "x";
  std::ofstream(dirs_.thick() + "/notes.txt") << "x";
  std::ofstream(dirs_.state() + "/not-in-a-class.img") << "x";  // the state directory is not a class directory
  restart();
  EXPECT_EQ(report_.unknown_files,
            (std::vector<std::string>{dirs_.sparse() + "/stray.img", dirs_.thick() + "/notes.txt"}));
  EXPECT_TRUE(file_state(dirs_.sparse() + "/stray.img").exists);
  EXPECT_TRUE(file_state(dirs_.thick() + "/notes.txt").exists);
  EXPECT_TRUE(file_state(v.backing_path()).exists);
  EXPECT_TRUE(report_.problems.empty());
}

TEST(CatalogRecovery, TheCatalogItselfIsNotAnUnknownFileWhenTheStateDirectoryIsAClass) {
  CatalogDirs dirs;
  RealFileSystem fs;
  StorageClassSet classes({StorageClass{"here", dirs.state(), Allocation::kSparse, {}, true}});
  {
    Catalog catalog(fs, dirs.state(), classes);
    catalog.recover();
    catalog.create_volume(create_request("a", "1MiB"));
  }
  Catalog catalog(fs, dirs.state(), classes);
  const auto report = catalog.recover();
  EXPECT_TRUE(report.unknown_files.empty()) << report.unknown_files.front();
}

TEST_F(CatalogTest, MissingAndWrongSizedFilesAreProblemsNotDeletions) {
  const v1::Volume missing = catalog_->create_volume(create_request("missing", "1MiB"));
  const v1::Volume wrong = catalog_->create_volume(create_request("wrong", "1MiB"));
  ASSERT_EQ(::unlink(missing.backing_path().c_str()), 0);
  ASSERT_EQ(::truncate(wrong.backing_path().c_str(), 4096), 0);
  restart();
  ASSERT_EQ(report_.problems.size(), 2U);
  EXPECT_THAT(report_.problems[0], HasSubstr("volume 'missing': its file " + missing.backing_path() +
                                             " is missing; restore it, or delete the volume"));
  EXPECT_THAT(report_.problems[1],
              HasSubstr("volume 'wrong': its file " + wrong.backing_path() + " is 4096 bytes, but the catalog says 1048576"));
  EXPECT_EQ(catalog_->list_volumes().size(), 2U);  // still listed: an operator decides
  catalog_->delete_volume("missing");             // and can delete the one without a file
}

TEST_F(CatalogTest, AStaleTemporaryCatalogIsRemoved) {
  std::ofstream(dirs_.state() + "/catalog.pb.tmp") << "half a catalog";
  restart();
  EXPECT_FALSE(file_state(dirs_.state() + "/catalog.pb.tmp").exists);
  EXPECT_TRUE(report_.unknown_files.empty());
}

TEST_F(CatalogTest, EachPendingKindIsSettledAndReported) {
  // Hand-made interrupted operations, as a crash would leave them.
  const v1::Volume a = catalog_->create_volume(create_request("a", "1MiB"));
  const v1::Volume b = catalog_->create_volume(create_request("b", "1MiB"));
  CatalogStore store(fs_, dirs_.state());

  {  // CREATE of "c": its file exists, the volume is not listed -> rolled back
    v1::Catalog disk = store.load();
    auto* pending = disk.mutable_pending();
    pending->set_kind(v1::PendingOperation::CREATE);
    pending->mutable_volume()->set_name("c");
    pending->mutable_volume()->set_backing_path(dirs_.sparse() + "/c-x.img");
    std::ofstream(dirs_.sparse() + "/c-x.img") << "partial";
    store.save(disk);
    restart();
    ASSERT_EQ(report_.actions.size(), 1U);
    EXPECT_THAT(report_.actions[0], HasSubstr("rolled back the interrupted creation of volume 'c'"));
    EXPECT_FALSE(file_state(dirs_.sparse() + "/c-x.img").exists);
    EXPECT_FALSE(catalog_->find_volume("c"));
  }
  {  // RESIZE of "a" to 2 MiB, file not grown yet -> finished
    v1::Catalog disk = store.load();
    auto* pending = disk.mutable_pending();
    pending->set_kind(v1::PendingOperation::RESIZE);
    *pending->mutable_volume() = a;
    pending->set_new_size_bytes(2 * kMiB);
    store.save(disk);
    restart();
    ASSERT_EQ(report_.actions.size(), 1U);
    EXPECT_THAT(report_.actions[0], HasSubstr("finished the interrupted resize of volume 'a' from 1048576 to 2097152"));
    EXPECT_EQ(catalog_->find_volume("a")->size_bytes(), 2 * kMiB);
    EXPECT_EQ(file_state(a.backing_path()).size, 2 * kMiB);
  }
  {  // DELETE of "b": already out of the list, file still there -> finished
    v1::Catalog disk = store.load();
    for (int i = 0; i < disk.volumes_size(); ++i)
      if (disk.volumes(i).name() == "b") disk.mutable_volumes()->DeleteSubrange(i, 1);
    disk.mutable_pending()->set_kind(v1::PendingOperation::DELETE);
    *disk.mutable_pending()->mutable_volume() = b;
    store.save(disk);
    restart();
    ASSERT_EQ(report_.actions.size(), 1U);
    EXPECT_THAT(report_.actions[0], HasSubstr("finished the interrupted deletion of volume 'b'"));
    EXPECT_FALSE(file_state(b.backing_path()).exists);
  }
  EXPECT_FALSE(store.load().has_pending());
  EXPECT_TRUE(report_.problems.empty());
}

// ---------------------------------------------------------------- I/O errors at every step

// After an injected EIO at step n, the catalog either kept working (and then memory
// matches the disk after a restart) or refuses changes until restarted; either way a
// restart finds the catalog and files consistent.
TEST(CatalogIoErrors, AnErrorAtAnyStepIsUndoneOrPoisons) {
  struct Op {
    std::string name;
    std::function<void(Catalog&)> run;
  };
  const std::vector<Op> ops = {
      {"create", [](Catalog& c) { c.create_volume(create_request("t", "2MiB")); }},
      {"create preallocated", [](Catalog& c) { c.create_volume(create_request("t", "2MiB", "thick")); }},
      {"resize", [](Catalog& c) { c.resize_volume(resize_request("r", "4MiB")); }},
      {"delete", [](Catalog& c) { c.delete_volume("r"); }},
  };
  for (const Op& op : ops) {
    for (std::size_t n = 0;; ++n) {
      CatalogDirs dirs;
      RealFileSystem real;
      {
        Catalog setup(real, dirs.state(), dirs.classes());
        setup.recover();
        setup.create_volume(create_request("r", "1MiB"));
      }
      FaultInjectingFileSystem fault(real, dirs.backup());
      Catalog catalog(fault, dirs.state(), dirs.classes());
      catalog.recover();
      fault.fail_at_step(n, EIO);
      bool failed = false;
      try {
        op.run(catalog);
      } catch (const CatalogError& e) {
        failed = true;
        EXPECT_EQ(e.code(), ErrorCode::kInternal) << e.what();
        EXPECT_THAT(e.what(), HasSubstr("Input/output error")) << op.name << " step " << n;
      }
      const auto in_memory = blockd::test::sizes(catalog);
      const bool poisoned = catalog.poisoned().has_value();
      if (poisoned) {
        expect_error([&] { catalog.create_volume(create_request("later", "1MiB")); }, ErrorCode::kUnavailable,
                     "Restart blockd");
      }

      Catalog restarted(real, dirs.state(), dirs.classes());
      const auto report = restarted.recover();
      EXPECT_TRUE(report.unknown_files.empty()) << op.name << " step " << n << ": " << report.unknown_files.front();
      EXPECT_TRUE(report.problems.empty()) << op.name << " step " << n << ": " << report.problems.front();
      for (const auto& v : restarted.list_volumes())
        EXPECT_EQ(file_state(v.backing_path()).size, v.size_bytes()) << op.name << " step " << n;
      if (!poisoned) {
        EXPECT_EQ(blockd::test::sizes(restarted), in_memory) << op.name << " step " << n << "\n" << fault.history();
      }
      if (!failed) break;
    }
  }
}

// ---------------------------------------------------------------- concurrency

TEST_F(CatalogTest, ConcurrentCallersAreSerialised) {
  constexpr int kThreads = 4;
  constexpr int kEach = 10;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kEach; ++i) {
          const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
          catalog_->create_volume(create_request(name, "64KiB"));
          catalog_->resize_volume(resize_request(name, "128KiB"));
          if (i % 2 == 0) catalog_->delete_volume(name);
          (void)catalog_->list_volumes();
        }
      } catch (const std::exception&) {
        ++errors;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(catalog_->list_volumes().size(), static_cast<std::size_t>(kThreads * kEach / 2));
  restart();
  EXPECT_EQ(catalog_->list_volumes().size(), static_cast<std::size_t>(kThreads * kEach / 2));
  EXPECT_TRUE(report_.unknown_files.empty());
  EXPECT_TRUE(report_.problems.empty());
  for (const auto& v : catalog_->list_volumes()) EXPECT_EQ(v.size_bytes(), 128U * 1024);
}

}  // namespace

namespace {

// A registered block device: one save, nothing on disk touched, resize refused, delete
// only forgets it. /dev/null stands in for the path (the catalog does not open it; the
// VolumeService reads the real size with BLKGETSIZE64 first); recovery reports that it
// is not a block device.
TEST_F(CatalogTest, RegisteredBlockDeviceIsNeverTouched) {
  v1::CreateVolumeRequest request;
  request.set_name("lv0");
  request.set_device_path("/dev/null");
  const v1::Volume volume = catalog_->register_device(request, 8 * kMiB);
  EXPECT_TRUE(volume.block_device());
  EXPECT_EQ(volume.size_bytes(), 8 * kMiB);
  EXPECT_EQ(volume.storage_class(), "");
  EXPECT_EQ(volume.backing_path(), "/dev/null");

  request.set_name("lv1");
  expect_error([&] { catalog_->register_device(request, 8 * kMiB); }, ErrorCode::kAlreadyExists,
               "block device /dev/null is already volume 'lv0'");
  request.set_device_path("dev/sdb");
  expect_error([&] { catalog_->register_device(request, 8 * kMiB); }, ErrorCode::kInvalidArgument, "absolute");
  request.set_device_path("/dev/zero");
  request.set_size("1GiB");
  expect_error([&] { catalog_->register_device(request, 8 * kMiB); }, ErrorCode::kInvalidArgument, "omit size");
  request.clear_size();
  expect_error([&] { catalog_->register_device(request, 1000); }, ErrorCode::kInvalidArgument, "multiple of 512");
  expect_error([&] { catalog_->resize_volume(resize_request("lv0", "16MiB")); }, ErrorCode::kFailedPrecondition,
               "lvextend");

  restart();
  ASSERT_TRUE(catalog_->find_volume("lv0"));
  EXPECT_TRUE(catalog_->find_volume("lv0")->block_device());
  EXPECT_THAT(report_.problems, testing::Contains(HasSubstr("/dev/null is not a block device any more")));

  catalog_->delete_volume("lv0");
  EXPECT_FALSE(catalog_->find_volume("lv0"));
  struct stat st {};
  EXPECT_EQ(::stat("/dev/null", &st), 0);  // still there, of course
  restart();
  EXPECT_FALSE(catalog_->find_volume("lv0"));
}

}  // namespace
