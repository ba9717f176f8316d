// StorageClass and StorageClassSet (server/storage/storage_class.h).
#include "server/storage/storage_class.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace {

using blockd::server::storage::Allocation;
using blockd::server::storage::fallback_storage_class;
using blockd::server::storage::IoMode;
using blockd::server::storage::normalize_directory;
using blockd::server::storage::parse_allocation;
using blockd::server::storage::parse_io_mode;
using blockd::server::storage::StorageClass;
using blockd::server::storage::StorageClassSet;
using testing::HasSubstr;

StorageClass make(const std::string& name, const std::string& dir, bool is_default = false) {
  return StorageClass{name, dir, Allocation::kSparse, IoMode::kBuffered, is_default};
}

std::string error_of(std::vector<StorageClass> classes) {
  try {
    StorageClassSet set(std::move(classes));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(StorageClass, Spellings) {
  EXPECT_EQ(parse_allocation("sparse"), Allocation::kSparse);
  EXPECT_EQ(parse_allocation("preallocate"), Allocation::kPreallocate);
  EXPECT_FALSE(parse_allocation("Sparse"));
  EXPECT_FALSE(parse_allocation("thick"));
  EXPECT_EQ(parse_io_mode("buffered"), IoMode::kBuffered);
  EXPECT_EQ(parse_io_mode("direct"), IoMode::kDirect);
  EXPECT_FALSE(parse_io_mode("o_direct"));
  EXPECT_EQ(to_string(Allocation::kPreallocate), "preallocate");
  EXPECT_EQ(to_string(IoMode::kDirect), "direct");
}

TEST(StorageClass, NormalizeDirectory) {
  EXPECT_EQ(normalize_directory("/srv/blockd/"), "/srv/blockd");
  EXPECT_EQ(normalize_directory("/srv//blockd/./fast/"), "/srv/blockd/fast");
  EXPECT_EQ(normalize_directory("/srv/x/../y"), "/srv/y");
  EXPECT_EQ(normalize_directory("/"), "/");
}

TEST(StorageClass, Fallback) {
  const StorageClass c = fallback_storage_class("/var/lib/blockd/");
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.directory, "/var/lib/blockd/volumes");
  EXPECT_EQ(c.allocation, Allocation::kSparse);
  EXPECT_EQ(c.io, IoMode::kBuffered);
  EXPECT_TRUE(c.is_default);
}

TEST(StorageClassSet, ASingleClassIsTheDefault) {
  StorageClassSet set({make("only", "/srv/only/")});
  EXPECT_EQ(set.default_class().name, "only");
  EXPECT_TRUE(set.all().front().is_default);
  EXPECT_EQ(set.all().front().directory, "/srv/only");  // normalised
}

TEST(StorageClassSet, LookupByNameAndDefault) {
  StorageClassSet set({make("fast", "/srv/fast"), make("bulk", "/srv/bulk", true)});
  EXPECT_EQ(set.default_class().name, "bulk");
  ASSERT_NE(set.find("fast"), nullptr);
  EXPECT_EQ(set.find("fast")->directory, "/srv/fast");
  EXPECT_EQ(set.find("nope"), nullptr);
  EXPECT_EQ(set.all().size(), 2U);
  EXPECT_EQ(set.all()[0].name, "fast");  // declaration order
}

TEST(StorageClassSet, InvalidSetsAreExplained) {
  EXPECT_THAT(error_of({}), HasSubstr("no storage class: declare at least one [[storage_class]]"));
  EXPECT_THAT(error_of({make("Fast", "/srv")}), HasSubstr("storage class name 'Fast' must be"));
  EXPECT_THAT(error_of({make("fast", "srv/fast")}),
              HasSubstr("storage class 'fast': directory 'srv/fast' must be an absolute path"));
  EXPECT_THAT(error_of({make("fast", "")}), HasSubstr("must be an absolute path"));
  EXPECT_THAT(error_of({make("a", "/a", true), make("a", "/b")}), HasSubstr("storage class 'a' is declared twice"));
  EXPECT_THAT(error_of({make("a", "/a", true), make("b", "/b", true)}),
              HasSubstr("storage classes 'a' and 'b' are both the default"));
  EXPECT_THAT(error_of({make("a", "/a"), make("b", "/b")}), HasSubstr("no storage class is the default"));
}

}  // namespace
