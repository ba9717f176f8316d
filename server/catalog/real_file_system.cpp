#include "server/catalog/real_file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace blockd::server::catalog {

namespace {

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what);
}

// Retries EINTR, which the catalog's blocking calls can see when a signal arrives.
template <typename Call>
auto retry(Call call) {
  for (;;) {
    auto result = call();
    if (result >= 0 || errno != EINTR) return result;
  }
}

}  // namespace

common::UniqueFd RealFileSystem::open(const std::string& path, int flags, mode_t mode) {
  const int fd = retry([&] { return ::open(path.c_str(), flags, mode); });
  if (fd < 0) throw_errno(errno, "open " + path);
  return common::UniqueFd(fd);
}

void RealFileSystem::write_all(int fd, const std::string& path, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = retry([&] { return ::write(fd, data.data(), data.size()); });
    if (n < 0) throw_errno(errno, "write " + path);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void RealFileSystem::fsync(int fd, const std::string& path) {
  // Never retried after a failure (DESIGN.md §2): the kernel may have dropped the pages.
  if (::fsync(fd) != 0) throw_errno(errno, "fsync " + path);
}

void RealFileSystem::fallocate(int fd, const std::string& path, std::uint64_t offset, std::uint64_t length) {
  if (length == 0) return;
  const int rc = retry([&] {
    return ::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length));
  });
  if (rc != 0) {
    const int error = errno;
    if (error == EOPNOTSUPP)
      throw_errno(error, "fallocate " + path + " (this file system cannot preallocate; use a sparse class)");
    throw_errno(error, "fallocate " + path);
  }
}

void RealFileSystem::ftruncate(int fd, const std::string& path, std::uint64_t size) {
  if (retry([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) != 0) throw_errno(errno, "ftruncate " + path);
}

void RealFileSystem::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) throw_errno(errno, "rename " + from + " to " + to);
}

bool RealFileSystem::unlink(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_errno(errno, "unlink " + path);
}

void RealFileSystem::fsync_directory(const std::string& directory) {
  const int fd = retry([&] { return ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) throw_errno(errno, "open directory " + directory);
  common::UniqueFd owner(fd);
  if (::fsync(fd) != 0) throw_errno(errno, "fsync directory " + directory);
}

void RealFileSystem::make_directories(const std::string& directory) {
  std::string prefix;
  std::size_t start = 0;
  while (start <= directory.size()) {
    const auto slash = directory.find('/', start);
    const auto end = slash == std::string::npos ? directory.size() : slash;
    prefix = directory.substr(0, end);
    start = end + 1;
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), 0750) != 0 && errno != EEXIST) throw_errno(errno, "mkdir " + prefix);
  }
  struct stat st {};
  if (::stat(directory.c_str(), &st) != 0) throw_errno(errno, "stat " + directory);
  if (!S_ISDIR(st.st_mode)) throw_errno(ENOTDIR, "mkdir " + directory);
}

std::optional<FileInfo> RealFileSystem::stat(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno(errno, "stat " + path);
  }
  FileInfo info;
  if (S_ISREG(st.st_mode)) {
    info.type = FileInfo::Type::kRegular;
  } else if (S_ISDIR(st.st_mode)) {
    info.type = FileInfo::Type::kDirectory;
  } else if (S_ISBLK(st.st_mode)) {
    info.type = FileInfo::Type::kBlockDevice;
  }
  info.size = static_cast<std::uint64_t>(st.st_size);
  info.allocated_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
  return info;
}

std::optional<std::string> RealFileSystem::read_file(const std::string& path) {
  const int fd = retry([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno(errno, "open " + path);
  }
  common::UniqueFd owner(fd);
  std::string content;
  char buffer[65536];
  for (;;) {
    const ssize_t n = retry([&] { return ::read(fd, buffer, sizeof buffer); });
    if (n < 0) throw_errno(errno, "read " + path);
    if (n == 0) return content;
    content.append(buffer, static_cast<std::size_t>(n));
  }
}

std::vector<std::string> RealFileSystem::list_directory(const std::string& directory) {
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) throw_errno(errno, "open directory " + directory);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  const int error = errno;
  ::closedir(dir);
  if (error != 0) throw_errno(error, "read directory " + directory);
  std::sort(names.begin(), names.end());
  return names;
}

std::uint64_t RealFileSystem::free_bytes(const std::string& directory) {
  struct statvfs vfs {};
  if (retry([&] { return ::statvfs(directory.c_str(), &vfs); }) != 0) throw_errno(errno, "statvfs " + directory);
  return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

}  // namespace blockd::server::catalog
