// FileSystem: the catalog's seam to the kernel. Every call that changes something on disk
// is one virtual "step" (one system call), so that a test can crash between any two of
// them (tests/unit/fault_injecting_file_system.h) and then check that recovery always
// finds the old state or the new one.
//
// The composite operations (write_file_atomically, create_volume_file, ...) are not
// virtual: the order of their steps is what makes them crash-safe, and it lives here
// once, for the real file system and the fault-injecting one alike.
//
// Errors: every step throws std::system_error (its what() names the call and the path).
// This is the control plane and start-up (DESIGN.md §7), never the data path.
//
// Thread affinity: none of its own; the Catalog calls it under its mutex.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace blockd::server::catalog {

struct FileInfo {
  enum class Type { kRegular, kDirectory, kBlockDevice, kOther };
  Type type = Type::kOther;
  std::uint64_t size = 0;             // st_size (0 for a block device: use its ioctl)
  std::uint64_t allocated_bytes = 0;  // st_blocks * 512
};

// "/a/b/c.img" -> "/a/b"; "/c" -> "/".
std::string parent_directory(const std::string& path);

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // ---- composite operations (crash-safe orderings of the steps below)

  // Replaces `path` with `data` so that a crash at any moment leaves either the old
  // content or the new, never a mixture: write PATH.tmp, fsync it, rename it over PATH,
  // fsync the directory (without the last step the rename may not survive a power cut).
  void write_file_atomically(const std::string& path, std::string_view data);

  // Creates a new volume file of `size` bytes, failing if it exists: sparse (ftruncate)
  // or with every block reserved (fallocate). The file and its directory entry are
  // durable when this returns.
  void create_volume_file(const std::string& path, std::uint64_t size, bool preallocate);

  // Grows an existing volume file to `new_size` (no-op when it is already that big);
  // durable when this returns.
  void grow_volume_file(const std::string& path, std::uint64_t new_size, bool preallocate);

  // Sets the size of an existing file, shrinking it: only to undo a grow that did not
  // complete, before anyone could see the new size.
  void truncate_file(const std::string& path, std::uint64_t size);

  // Removes `path` and makes the removal durable. Returns false if it did not exist.
  bool remove_file(const std::string& path);

  // ---- steps: each one system call. Those that change the disk are the crash points.

  virtual common::UniqueFd open(const std::string& path, int flags, mode_t mode) = 0;
  virtual void write_all(int fd, const std::string& path, std::string_view data) = 0;
  virtual void fsync(int fd, const std::string& path) = 0;
  virtual void fallocate(int fd, const std::string& path, std::uint64_t offset, std::uint64_t length) = 0;
  virtual void ftruncate(int fd, const std::string& path, std::uint64_t size) = 0;
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // Returns false (and does nothing) if `path` does not exist.
  virtual bool unlink(const std::string& path) = 0;
  virtual void fsync_directory(const std::string& directory) = 0;
  // mkdir -p with mode 0750 for what it creates.
  virtual void make_directories(const std::string& directory) = 0;

  // ---- queries (never crash points)

  // nullopt when nothing is at `path` (ENOENT); throws for other errors.
  virtual std::optional<FileInfo> stat(const std::string& path) = 0;
  // The whole content, or nullopt when the file does not exist.
  virtual std::optional<std::string> read_file(const std::string& path) = 0;
  // Names in `directory` (not "." or ".."), sorted.
  virtual std::vector<std::string> list_directory(const std::string& directory) = 0;
  // Bytes an unprivileged writer may still allocate there (statvfs f_bavail * f_frsize).
  virtual std::uint64_t free_bytes(const std::string& directory) = 0;
};

}  // namespace blockd::server::catalog
