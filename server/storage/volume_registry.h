// VolumeRegistry: the exported volumes by name. Filled from the command line and the
// catalog at start, and changed at run time by the control API (VolumeService), which is
// why lookups hand out shared_ptrs (a session keeps its volume alive) and take a lock.
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
  // Stops exporting `name`; sessions already open keep their shared_ptr. Returns the
  // volume, or nullptr when there is none. If it was the default export, the first
  // remaining volume by name becomes the default.
  std::shared_ptr<Volume> remove(const std::string& name);
  std::vector<std::shared_ptr<Volume>> list() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Volume>> by_name_;
  std::string default_name_;
};

}  // namespace blockd::server::storage
