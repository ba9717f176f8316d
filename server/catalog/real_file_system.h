// RealFileSystem: FileSystem on the kernel's system calls.
//
// Thread affinity: stateless; any thread.
#pragma once

#include "server/catalog/file_system.h"

namespace blockd::server::catalog {

class RealFileSystem final : public FileSystem {
 public:
  common::UniqueFd open(const std::string& path, int flags, mode_t mode) override;
  void write_all(int fd, const std::string& path, std::string_view data) override;
  void fsync(int fd, const std::string& path) override;
  void fallocate(int fd, const std::string& path, std::uint64_t offset, std::uint64_t length) override;
  void ftruncate(int fd, const std::string& path, std::uint64_t size) override;
  void rename(const std::string& from, const std::string& to) override;
  bool unlink(const std::string& path) override;
  void fsync_directory(const std::string& directory) override;
  void make_directories(const std::string& directory) override;

  std::optional<FileInfo> stat(const std::string& path) override;
  std::optional<std::string> read_file(const std::string& path) override;
  std::vector<std::string> list_directory(const std::string& directory) override;
  std::uint64_t free_bytes(const std::string& directory) override;
};

}  // namespace blockd::server::catalog
