#include "server/storage/volume_registry.h"

#include <stdexcept>

namespace blockd::server::storage {

void VolumeRegistry::add(std::shared_ptr<Volume> volume) {
  std::lock_guard lock(mutex_);
  const std::string name = volume->name();
  if (!by_name_.emplace(name, std::move(volume)).second)
    throw std::invalid_argument("volume name '" + name + "' is used twice");
  if (default_name_.empty()) default_name_ = name;
}

std::shared_ptr<Volume> VolumeRegistry::find(const std::string& export_name) const {
  std::lock_guard lock(mutex_);
  auto it = by_name_.find(export_name.empty() ? default_name_ : export_name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::shared_ptr<Volume> VolumeRegistry::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return nullptr;
  auto volume = std::move(it->second);
  by_name_.erase(it);
  if (default_name_ == name) default_name_ = by_name_.empty() ? "" : by_name_.begin()->first;
  return volume;
}

std::vector<std::shared_ptr<Volume>> VolumeRegistry::list() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<Volume>> out;
  for (const auto& [name, volume] : by_name_) out.push_back(volume);
  return out;
}

}  // namespace blockd::server::storage
