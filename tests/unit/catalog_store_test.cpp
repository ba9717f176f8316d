// CatalogStore (server/catalog/catalog_store.h): round trips, and a damaged catalog.pb
// (empty, garbage, truncated at every length, any single bit flipped, a newer format)
// is always refused with kDataLoss, never read as a shorter or empty catalog.
#include "server/catalog/catalog_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "catalog_test_support.h"
#include "server/catalog/catalog_error.h"
#include "server/catalog/real_file_system.h"

namespace {

using blockd::server::catalog::CatalogError;
using blockd::server::catalog::CatalogStore;
using blockd::server::catalog::crc32c;
using blockd::server::catalog::ErrorCode;
using blockd::server::catalog::RealFileSystem;
using blockd::test::CatalogDirs;
using testing::HasSubstr;
namespace v1 = blockd::v1;

v1::Catalog sample() {
  v1::Catalog catalog;
  catalog.set_version(7);
  for (int i = 0; i < 3; ++i) {
    v1::Volume* v = catalog.add_volumes();
    v->set_name("vol-" + std::to_string(i));
    v->set_uuid("0b6e2b8e-4f0c-4d5a-9a57-2f5b0c1d2e3" + std::to_string(i));
    v->set_size_bytes((i + 1) * 1048576ULL);
    v->set_storage_class("sparse");
    v->set_backing_path("/srv/vol-" + std::to_string(i) + ".img");
    v->add_access_modes(v1::READ_WRITE_ONCE);
    (*v->mutable_labels())["app"] = "db";
    v->mutable_created_at()->set_seconds(1700000000 + i);
  }
  catalog.mutable_pending()->set_kind(v1::PendingOperation::RESIZE);
  *catalog.mutable_pending()->mutable_volume() = catalog.volumes(0);
  catalog.mutable_pending()->set_new_size_bytes(4 * 1048576ULL);
  return catalog;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Replaces the file by a new one: truncating a file with data makes ext4 flush it
// (auto_da_alloc), which makes thousands of rewrites slow.
void write(const std::string& path, const std::string& content) {
  ::unlink(path.c_str());
  std::ofstream(path, std::ios::binary) << content;
}

TEST(Crc32c, KnownValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283U);  // the CRC-32C check value
  EXPECT_EQ(crc32c(""), 0U);
}

TEST(CatalogStore, MissingFileIsAnEmptyCatalog) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  const v1::Catalog catalog = store.load();
  EXPECT_EQ(catalog.version(), 0U);
  EXPECT_EQ(catalog.volumes_size(), 0);
  EXPECT_FALSE(catalog.has_pending());
  EXPECT_EQ(store.path(), dirs.state() + "/catalog.pb");
}

TEST(CatalogStore, SaveThenLoadRoundTrips) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  store.save(sample());
  EXPECT_EQ(store.load().SerializeAsString(), sample().SerializeAsString());
  EXPECT_EQ(CatalogDirs::list(dirs.state()), std::vector<std::string>{"catalog.pb"});  // no temp file left

  v1::Catalog next = sample();
  next.set_version(8);
  next.clear_pending();
  store.save(next);
  EXPECT_EQ(store.load().SerializeAsString(), next.SerializeAsString());
}

TEST(CatalogStore, FileIsACatalogFileEnvelope) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  store.save(sample());
  v1::CatalogFile file;
  ASSERT_TRUE(file.ParseFromString(read(store.path())));
  EXPECT_EQ(file.format(), 1U);
  EXPECT_EQ(file.crc32c(), crc32c(file.catalog()));
  v1::Catalog inner;
  ASSERT_TRUE(inner.ParseFromString(file.catalog()));
  EXPECT_EQ(inner.version(), 7U);
}

void expect_data_loss(CatalogStore& store, const std::string& text, const std::string& context) {
  try {
    const v1::Catalog loaded = store.load();
    ADD_FAILURE() << context << ": a damaged catalog loaded, with " << loaded.volumes_size() << " volumes";
  } catch (const CatalogError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDataLoss) << context;
    EXPECT_THAT(e.what(), HasSubstr(text)) << context;
  }
}

TEST(CatalogStore, EmptyOrForeignFilesAreRefused) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  write(store.path(), "");
  expect_data_loss(store, store.path() + " is damaged: it is not a blockd catalog (0 bytes)", "empty");
  write(store.path(), "hello, world");
  expect_data_loss(store, "is damaged", "text");
  // A valid protobuf of another type: a bare Catalog without the envelope.
  write(store.path(), sample().SerializeAsString());
  expect_data_loss(store, "is damaged", "bare catalog");
  // The message says what to do.
  expect_data_loss(store, "Restore " + store.path() + " from a backup, or move it aside", "advice");
}

TEST(CatalogStore, EveryTruncationIsRefused) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  store.save(sample());
  const std::string whole = read(store.path());
  for (std::size_t length = 0; length < whole.size(); ++length) {
    write(store.path(), whole.substr(0, length));
    expect_data_loss(store, "is damaged", "truncated to " + std::to_string(length));
  }
}

TEST(CatalogStore, EveryBitFlipIsRefused) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  store.save(sample());
  const std::string whole = read(store.path());
  for (std::size_t bit = 0; bit < whole.size() * 8; ++bit) {
    std::string damaged = whole;
    damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
    write(store.path(), damaged);
    expect_data_loss(store, "", "bit " + std::to_string(bit) + " flipped");
  }
}

TEST(CatalogStore, NewerFormatIsRefusedWithAReason) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  v1::CatalogFile file;
  file.set_format(2);
  file.set_catalog(sample().SerializeAsString());
  file.set_crc32c(crc32c(file.catalog()));
  write(store.path(), file.SerializeAsString());
  expect_data_loss(store, "has catalog format 2, newer than the format 1 this blockd reads", "format 2");
}

TEST(CatalogStore, UnreadableFileIsAnInternalError) {
  CatalogDirs dirs;
  RealFileSystem fs;
  CatalogStore store(fs, dirs.state());
  std::filesystem::create_directory(store.path());  // read(2) on a directory fails with EISDIR
  try {
    store.load();
    ADD_FAILURE() << "a directory loaded as a catalog";
  } catch (const CatalogError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_THAT(e.what(), HasSubstr("cannot read the catalog"));
  }
}

}  // namespace
