#include "server/storage/storage_class.h"

#include <filesystem>
#include <stdexcept>

#include "common/names.h"

namespace blockd::server::storage {

std::string_view to_string(Allocation allocation) {
  return allocation == Allocation::kPreallocate ? "preallocate" : "sparse";
}

std::string_view to_string(IoMode io) { return io == IoMode::kDirect ? "direct" : "buffered"; }

std::optional<Allocation> parse_allocation(std::string_view text) {
  if (text == "sparse") return Allocation::kSparse;
  if (text == "preallocate") return Allocation::kPreallocate;
  return std::nullopt;
}

std::optional<IoMode> parse_io_mode(std::string_view text) {
  if (text == "buffered") return IoMode::kBuffered;
  if (text == "direct") return IoMode::kDirect;
  return std::nullopt;
}

std::string normalize_directory(std::string_view path) {
  std::string out = std::filesystem::path(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

StorageClass fallback_storage_class(std::string_view state_dir) {
  StorageClass fallback;
  fallback.name = "default";
  fallback.directory = normalize_directory(std::string(state_dir) + "/volumes");
  fallback.is_default = true;
  return fallback;
}

StorageClassSet::StorageClassSet(std::vector<StorageClass> classes) : classes_(std::move(classes)) {
  if (classes_.empty())
    throw std::invalid_argument("no storage class: declare at least one [[storage_class]] in the config file");
  if (classes_.size() == 1) classes_.front().is_default = true;
  std::optional<std::size_t> default_index;
  for (std::size_t i = 0; i < classes_.size(); ++i) {
    StorageClass& c = classes_[i];
    if (!common::is_dns_label(c.name))
      throw std::invalid_argument("storage class name '" + c.name +
                                  "' must be 1-63 lowercase letters, digits or '-', starting and "
                                  "ending with a letter or digit");
    if (c.directory.empty() || c.directory.front() != '/')
      throw std::invalid_argument("storage class '" + c.name + "': directory '" + c.directory +
                                  "' must be an absolute path, e.g. /var/lib/blockd/volumes");
    c.directory = normalize_directory(c.directory);
    for (std::size_t j = 0; j < i; ++j)
      if (classes_[j].name == c.name)
        throw std::invalid_argument("storage class '" + c.name + "' is declared twice; give each class its own name");
    if (c.is_default) {
      if (default_index)
        throw std::invalid_argument("storage classes '" + classes_[*default_index].name + "' and '" + c.name +
                                    "' are both the default; keep default = true on one of them");
      default_index = i;
    }
  }
  if (!default_index)
    throw std::invalid_argument("no storage class is the default; add default = true to one of them");
  default_index_ = *default_index;
}

const StorageClass* StorageClassSet::find(std::string_view name) const {
  for (const StorageClass& c : classes_)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace blockd::server::storage
