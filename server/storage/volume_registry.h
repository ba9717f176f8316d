// VolumeRegistry: the exported volumes by name. Today it is filled from the command
// line; the catalog (issue 3) will fill and change it at run time, which is why
// lookups hand out shared_ptrs and take a lock.
//
// Thread affinity: any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/storage/volume.h"

namespace blockd::server::storage {

class VolumeRegistry {
 public:
  // Throws std::invalid_argument when the name is taken.
  void add(std::shared_ptr<Volume> volume);
  // The volume for an export name; "" is the default export (the first volume added).
  std::shared_ptr<Volume> find(const std::string& export_name) const;
  std::vector<std::shared_ptr<Volume>> list() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Volume>> by_name_;
  std::string default_name_;
};

}  // namespace blockd::server::storage
