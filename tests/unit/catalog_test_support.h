// Helpers for the catalog tests: a scratch directory tree under /tmp (removed on
// destruction) with a state directory, two storage classes and a backup directory for
// the fault injector, and short ways to build requests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/proto/blockd.pb.h"
#include "server/catalog/catalog.h"
#include "server/storage/storage_class.h"

namespace blockd::test {

// BASE/blockd-catalog-XXXXXX/{state,sparse,thick,backup}
class CatalogDirs {
 public:
  // /tmp is a real disk file system here (fsync, fallocate and holes behave as in
  // production); memory_base() is for the crash tests' thousands of runs, whose
  // durability is modelled by the fault injector rather than the disk.
  explicit CatalogDirs(const std::string& base = "/tmp") {
    // The catalog logs every create and recovery; thousands of crash runs would bury
    // the test output. The tests check the RecoveryReport instead.
    common::logger("catalog")->set_level(spdlog::level::off);
    std::string pattern = base + "/blockd-catalog-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed in " + base);
    root_ = pattern;
    for (const char* sub : {"/state", "/sparse", "/thick", "/backup"}) std::filesystem::create_directory(root_ + sub);
  }
  CatalogDirs(const CatalogDirs&) = delete;
  CatalogDirs& operator=(const CatalogDirs&) = delete;
  ~CatalogDirs() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  // /dev/shm (tmpfs) when there is one, else /tmp.
  static std::string memory_base() {
    std::error_code ignored;
    return std::filesystem::is_directory("/dev/shm", ignored) ? "/dev/shm" : "/tmp";
  }

  const std::string& root() const { return root_; }
  std::string state() const { return root_ + "/state"; }
  std::string sparse() const { return root_ + "/sparse"; }
  std::string thick() const { return root_ + "/thick"; }
  std::string backup() const { return root_ + "/backup"; }

  // "sparse" (the default) and "thick" (preallocated).
  server::storage::StorageClassSet classes() const {
    using server::storage::Allocation;
    using server::storage::StorageClass;
    std::vector<StorageClass> list;
    list.push_back(StorageClass{"sparse", sparse(), Allocation::kSparse, server::storage::IoMode::kBuffered, true});
    list.push_back(StorageClass{"thick", thick(), Allocation::kPreallocate, server::storage::IoMode::kDirect, false});
    return server::storage::StorageClassSet(std::move(list));
  }

  // Names of the entries in a directory, sorted.
  static std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string root_;
};

inline v1::CreateVolumeRequest create_request(const std::string& name, const std::string& size,
                                              const std::string& storage_class = "") {
  v1::CreateVolumeRequest request;
  request.set_name(name);
  request.set_size(size);
  request.set_storage_class(storage_class);
  return request;
}

inline v1::ResizeVolumeRequest resize_request(const std::string& name, const std::string& size) {
  v1::ResizeVolumeRequest request;
  request.set_name(name);
  request.set_size(size);
  return request;
}

// name -> size of every volume listed.
inline std::map<std::string, std::uint64_t> sizes(const server::catalog::Catalog& catalog) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& v : catalog.list_volumes()) out[v.name()] = v.size_bytes();
  return out;
}

}  // namespace blockd::test
