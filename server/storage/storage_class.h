// StorageClass: where and how volumes are made (DESIGN.md §3), as the config file's
// [[storage_class]] tables declare them: a directory of volume files, sparse or
// preallocated, buffered or O_DIRECT I/O. StorageClassSet: the node's classes, with
// the one default that a create naming no class gets.
//
// Thread affinity: immutable values once built; safe to share read-only between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace blockd::server::storage {

enum class Allocation {
  kSparse,       // blocks are taken as data is written (thin provisioning)
  kPreallocate,  // every block is reserved at creation and on grow (fallocate)
};

enum class IoMode {
  kBuffered,  // through the page cache
  kDirect,    // O_DIRECT
};

struct StorageClass {
  std::string name;       // a DNS label
  std::string directory;  // absolute, normalised, no trailing '/'
  Allocation allocation = Allocation::kSparse;
  IoMode io = IoMode::kBuffered;
  bool is_default = false;

  bool operator==(const StorageClass&) const = default;
};

// The spellings used by the config file and the API: "sparse", "preallocate",
// "buffered", "direct".
std::string_view to_string(Allocation allocation);
std::string_view to_string(IoMode io);
std::optional<Allocation> parse_allocation(std::string_view text);
std::optional<IoMode> parse_io_mode(std::string_view text);

// "/a//b/./c/" -> "/a/b/c". Only absolute paths are meaningful here.
std::string normalize_directory(std::string_view path);

// The class used when the config declares none, so that a test or a second instance
// needs no config file: "default", sparse and buffered, in STATE_DIR/volumes.
StorageClass fallback_storage_class(std::string_view state_dir);

class StorageClassSet {
 public:
  // Validates the set as a whole. Throws std::invalid_argument (with a message that
  // says how to fix it) when it is empty, a name is not a DNS label or is used twice, a
  // directory is not absolute, or not exactly one class is the default. A single class
  // is the default whether or not it says so.
  explicit StorageClassSet(std::vector<StorageClass> classes);

  // nullptr when there is no class of that name.
  const StorageClass* find(std::string_view name) const;
  const StorageClass& default_class() const { return classes_[default_index_]; }
  // In declaration order.
  const std::vector<StorageClass>& all() const { return classes_; }

 private:
  std::vector<StorageClass> classes_;
  std::size_t default_index_ = 0;
};

}  // namespace blockd::server::storage
