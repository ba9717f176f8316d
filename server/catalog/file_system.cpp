#include "server/catalog/file_system.h"

#include <fcntl.h>

namespace blockd::server::catalog {

std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void FileSystem::write_file_atomically(const std::string& path, std::string_view data) {
  const std::string temp = path + ".tmp";
  {
    // O_TRUNC: a temp file left by an earlier crash is simply overwritten.
    common::UniqueFd fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    write_all(fd.get(), temp, data);
    fsync(fd.get(), temp);  // the data before the name: rename must never expose an unwritten file
  }
  rename(temp, path);
  fsync_directory(parent_directory(path));
}

void FileSystem::create_volume_file(const std::string& path, std::uint64_t size, bool preallocate) {
  {
    // O_EXCL: a volume never adopts a file it did not create (names carry a fresh UUID).
    common::UniqueFd fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (preallocate) {
      fallocate(fd.get(), path, 0, size);  // mode 0 also sets the size
    } else {
      ftruncate(fd.get(), path, size);
    }
    fsync(fd.get(), path);
  }
  fsync_directory(parent_directory(path));
}

void FileSystem::grow_volume_file(const std::string& path, std::uint64_t new_size, bool preallocate) {
  common::UniqueFd fd = open(path, O_WRONLY | O_CLOEXEC, 0);
  const auto info = stat(path);
  const std::uint64_t current = info ? info->size : 0;
  if (current < new_size) {
    if (preallocate) {
      fallocate(fd.get(), path, current, new_size - current);
    } else {
      ftruncate(fd.get(), path, new_size);
    }
  }
  // Even when nothing changed now: a grow interrupted before its fsync may be what we
  // are finishing, and its size must be durable before the catalog says so.
  fsync(fd.get(), path);
}

void FileSystem::truncate_file(const std::string& path, std::uint64_t size) {
  common::UniqueFd fd = open(path, O_WRONLY | O_CLOEXEC, 0);
  ftruncate(fd.get(), path, size);
  fsync(fd.get(), path);
}

bool FileSystem::remove_file(const std::string& path) {
  const bool removed = unlink(path);
  // Even when it was already gone: recovery may be finishing an unlink whose directory
  // fsync never happened, and the removal must be durable before the catalog forgets it.
  fsync_directory(parent_directory(path));
  return removed;
}

}  // namespace blockd::server::catalog
