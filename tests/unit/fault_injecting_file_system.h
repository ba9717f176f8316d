// FaultInjectingFileSystem: the catalog's FileSystem seam with faults, for tests only.
// It wraps a real FileSystem (the files really exist, under a test directory) and counts
// every step that changes the disk. At a chosen step it can:
//   - crash: throw CrashInjected, the step not done (a write is torn: half of it is
//     written). After a crash every call throws again: the process is dead.
//   - fail: throw std::system_error with a chosen errno, the step not done, as the
//     kernel would (EIO, ENOSPC), and carry on.
// After a crash, power_cut() models what a power failure loses on top of it, POSIX's
// worst case: file data and sizes not fsynced since they changed, and directory entries
// (create, rename, unlink) not made durable by an fsync of their directory. Both are
// undone for real on the files, using hard links kept in `backup_dir` (which must be on
// the same file system and outside every directory the catalog lists).
//
// The controls: drop_fsyncs() turns fsync (of files, or of directories) into no-ops, as
// a broken implementation would; a test can then show that a power cut is detected.
//
// By default an fsync is recorded (it makes things durable in the model) but not passed
// to the kernel: the model, not the disk, decides what a power cut loses, and thousands
// of real fsyncs would only make the tests slow on a shared machine.
//
// Thread affinity: one test thread.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "server/catalog/file_system.h"

namespace blockd::test {

// Deliberately not a std::exception: code that catches std::exception to undo its work
// must not get to run during a "crash", as it would not in a killed process.
struct CrashInjected {
  std::size_t step;
  std::string what;
};

class FaultInjectingFileSystem final : public server::catalog::FileSystem {
 public:
  enum PowerCut : unsigned {
    kLoseUnsyncedData = 1,
    kLoseUnsyncedDirectoryEntries = 2,
    kLoseBoth = 3,
  };

  FaultInjectingFileSystem(FileSystem& real, std::string backup_dir, bool real_syncs = false)
      : real_(real), backup_dir_(std::move(backup_dir)), real_syncs_(real_syncs) {}

  // Step numbers count from the call: 0 is the next step that changes the disk.
  void crash_at_step(std::size_t n) { crash_at_ = steps_ + n; }
  void fail_at_step(std::size_t n, int error) {
    fail_at_ = steps_ + n;
    fail_errno_ = error;
  }
  void set_free_bytes(std::optional<std::uint64_t> bytes) { free_bytes_ = bytes; }
  void drop_fsyncs(bool files, bool directories) {
    drop_file_fsyncs_ = files;
    drop_directory_fsyncs_ = directories;
  }

  std::size_t steps() const { return steps_; }
  bool crashed() const { return crashed_; }
  // Every step so far, "3 rename /x/catalog.pb.tmp -> /x/catalog.pb", for failure messages.
  std::string history() const {
    std::string out;
    for (const auto& line : history_) out += "  " + line + "\n";
    return out;
  }

  // Undoes what a power cut would lose (see the file comment). Call after a crash, or
  // after an operation returned, to check it was durable when it said so.
  void power_cut(unsigned what) {
    if (what & kLoseUnsyncedData) {
      for (const auto& [path, synced_size] : dirty_) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) != synced_size)
          check(::truncate(path.c_str(), static_cast<off_t>(synced_size)), "truncate " + path);
      }
    }
    if (what & kLoseUnsyncedDirectoryEntries) {
      for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
        switch (it->kind) {
          case Entry::kCreate:
            ::unlink(it->path.c_str());
            break;
          case Entry::kRename:
            check(::rename(it->path.c_str(), it->from.c_str()), "undo rename " + it->path);
            if (!it->backup.empty()) check(::rename(it->backup.c_str(), it->path.c_str()), "restore " + it->path);
            break;
          case Entry::kUnlink:
            check(::rename(it->backup.c_str(), it->path.c_str()), "undo unlink " + it->path);
            break;
        }
      }
    }
    dirty_.clear();
    journal_.clear();
  }

  // ---- steps

  common::UniqueFd open(const std::string& path, int flags, mode_t mode) override {
    step("open " + path);
    const auto before = real_.stat(path);
    common::UniqueFd fd = real_.open(path, flags, mode);
    if (!before && (flags & O_CREAT)) {
      journal_.push_back({Entry::kCreate, path, "", ""});
      dirty_.emplace(path, 0);
    } else if (before && (flags & O_TRUNC)) {
      dirty_.emplace(path, before->size);  // keeps an earlier, older synced size
    }
    return fd;
  }

  void write_all(int fd, const std::string& path, std::string_view data) override {
    alive();
    mark_dirty(path);
    if (steps_ == crash_at_) {
      // A torn write: what a killed process may leave.
      real_.write_all(fd, path, data.substr(0, data.size() / 2));
    }
    step("write " + path + " (" + std::to_string(data.size()) + " bytes)");
    real_.write_all(fd, path, data);
  }

  void fsync(int fd, const std::string& path) override {
    step("fsync " + path);
    if (drop_file_fsyncs_) return;
    if (real_syncs_) real_.fsync(fd, path);
    dirty_.erase(path);
  }

  void fallocate(int fd, const std::string& path, std::uint64_t offset, std::uint64_t length) override {
    step("fallocate " + path);
    mark_dirty(path);
    real_.fallocate(fd, path, offset, length);
  }

  void ftruncate(int fd, const std::string& path, std::uint64_t size) override {
    step("ftruncate " + path + " " + std::to_string(size));
    mark_dirty(path);
    real_.ftruncate(fd, path, size);
  }

  void rename(const std::string& from, const std::string& to) override {
    step("rename " + from + " -> " + to);
    std::string backup;
    if (real_.stat(to)) {
      backup = next_backup();
      check(::link(to.c_str(), backup.c_str()), "link " + to);
      move_dirty(to, backup);
    }
    real_.rename(from, to);
    journal_.push_back({Entry::kRename, to, from, backup});
    move_dirty(from, to);
  }

  bool unlink(const std::string& path) override {
    step("unlink " + path);
    if (!real_.stat(path)) return false;
    const std::string backup = next_backup();
    check(::link(path.c_str(), backup.c_str()), "link " + path);
    real_.unlink(path);
    journal_.push_back({Entry::kUnlink, path, "", backup});
    move_dirty(path, backup);
    return true;
  }

  void fsync_directory(const std::string& directory) override {
    step("fsync directory " + directory);
    if (drop_directory_fsyncs_) return;
    if (real_syncs_) real_.fsync_directory(directory);
    std::vector<Entry> kept;
    for (auto& entry : journal_)
      if (server::catalog::parent_directory(entry.path) != directory) kept.push_back(std::move(entry));
    journal_ = std::move(kept);
  }

  // Directories are treated as durable at once: the tests create them up front.
  void make_directories(const std::string& directory) override {
    step("mkdir -p " + directory);
    real_.make_directories(directory);
  }

  // ---- queries

  std::optional<server::catalog::FileInfo> stat(const std::string& path) override {
    alive();
    return real_.stat(path);
  }
  std::optional<std::string> read_file(const std::string& path) override {
    alive();
    return real_.read_file(path);
  }
  std::vector<std::string> list_directory(const std::string& directory) override {
    alive();
    return real_.list_directory(directory);
  }
  std::uint64_t free_bytes(const std::string& directory) override {
    alive();
    return free_bytes_ ? *free_bytes_ : real_.free_bytes(directory);
  }

 private:
  struct Entry {
    enum Kind { kCreate, kRename, kUnlink };
    Kind kind;
    std::string path;    // created, renamed to, or unlinked
    std::string from;    // kRename: the old name
    std::string backup;  // what `path` was before (kRename over a file, kUnlink)
  };

  static void check(int rc, const std::string& what) {
    if (rc != 0) throw std::system_error(errno, std::generic_category(), "fault injector: " + what);
  }

  void alive() const {
    if (crashed_) throw CrashInjected{steps_, "called after the crash"};
  }

  void step(const std::string& what) {
    alive();
    const std::size_t n = steps_++;
    history_.push_back(std::to_string(n) + " " + what);
    if (n == crash_at_) {
      crashed_ = true;
      history_.back() += "  <- CRASH";
      throw CrashInjected{n, what};
    }
    if (n == fail_at_) {
      history_.back() += "  <- " + std::string(std::strerror(fail_errno_));
      throw std::system_error(fail_errno_, std::generic_category(), what + " (injected)");
    }
  }

  void mark_dirty(const std::string& path) {
    if (dirty_.count(path) != 0) return;
    const auto info = real_.stat(path);
    dirty_.emplace(path, info ? info->size : 0);
  }

  void move_dirty(const std::string& from, const std::string& to) {
    const auto it = dirty_.find(from);
    if (it == dirty_.end()) return;
    const std::uint64_t synced = it->second;
    dirty_.erase(it);
    dirty_[to] = synced;
  }

  // Unique across instances: a second injector may share the backup directory.
  std::string next_backup() {
    static std::size_t counter = 0;
    return backup_dir_ + "/" + std::to_string(counter++);
  }

  FileSystem& real_;
  const std::string backup_dir_;
  const bool real_syncs_;
  std::size_t steps_ = 0;
  std::size_t crash_at_ = SIZE_MAX;
  std::size_t fail_at_ = SIZE_MAX;
  int fail_errno_ = EIO;
  bool crashed_ = false;
  std::optional<std::uint64_t> free_bytes_;
  bool drop_file_fsyncs_ = false;
  bool drop_directory_fsyncs_ = false;
  std::vector<std::string> history_;
  std::map<std::string, std::uint64_t> dirty_;  // path -> size at its last fsync
  std::vector<Entry> journal_;                  // directory entries not yet durable, in order
};

}  // namespace blockd::test
