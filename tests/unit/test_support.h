// Helpers shared by the unit tests: running a coroutine to completion on a real
// io_context (the Ring keeps an eventfd wait pending forever, so run() alone would
// never return), and temporary files under /tmp that remove themselves.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <ostream>
#include <vector>

#include "server/storage/backend.h"

// Equality and printing for Extent, found by ADL from gtest and std::vector.
namespace blockd::server::storage {
inline bool operator==(const Extent& a, const Extent& b) { return a.length == b.length && a.flags == b.flags; }
inline std::ostream& operator<<(std::ostream& os, const Extent& e) {
  return os << "{length " << e.length << ", flags " << e.flags << "}";
}
}  // namespace blockd::server::storage

namespace blockd::test {

namespace asio = boost::asio;

// Runs `work` on `context` until it finishes (at most 30 s) and returns its value.
// Rethrows an exception the coroutine threw; throws if it did not finish in time.
template <typename T>
T run_coroutine(asio::io_context& context, asio::awaitable<T> work) {
  std::optional<T> out;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(context, std::move(work), [&](std::exception_ptr e, T value) {
    done = true;
    error = e;
    if (!e) out.emplace(std::move(value));
    context.stop();
  });
  context.restart();
  context.run_for(std::chrono::seconds(30));
  if (!done) throw std::runtime_error("coroutine did not finish within 30 s");
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

inline void run_coroutine(asio::io_context& context, asio::awaitable<void> work) {
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(context, std::move(work), [&](std::exception_ptr e) {
    done = true;
    error = e;
    context.stop();
  });
  context.restart();
  context.run_for(std::chrono::seconds(30));
  if (!done) throw std::runtime_error("coroutine did not finish within 30 s");
  if (error) std::rethrow_exception(error);
}

// A file created with mkstemp in `dir` (default /tmp), removed on destruction.
class TempFile {
 public:
  explicit TempFile(const std::string& dir = "/tmp") {
    std::string pattern = dir + "/blockd-unit-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    if (fd < 0) throw std::runtime_error("mkstemp failed in " + dir);
    ::close(fd);
    path_ = buf.data();
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { ::unlink(path_.c_str()); }

  const std::string& path() const { return path_; }

  // Makes the file `size` bytes long without allocating anything.
  void resize(std::uint64_t size) const {
    if (::truncate(path_.c_str(), static_cast<off_t>(size)) != 0)
      throw std::runtime_error("truncate failed");
  }
  // Removes the file so that path() names nothing (the name stays unique and is
  // still removed on destruction if something recreates it).
  void remove() const { ::unlink(path_.c_str()); }
  bool exists() const {
    struct stat st {};
    return ::stat(path_.c_str(), &st) == 0;
  }
  std::uint64_t allocated_bytes() const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) throw std::runtime_error("stat failed");
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }

 private:
  std::string path_;
};

// `size` bytes of a recognisable, position-dependent pattern (never all zero).
inline std::vector<std::byte> pattern(std::size_t size, unsigned seed = 1) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i)
    out[i] = static_cast<std::byte>(((i * 31) + seed * 7 + (i >> 9)) % 251 + 1);
  return out;
}

inline bool all_zero(const std::vector<std::byte>& data) {
  for (std::byte b : data)
    if (b != std::byte{0}) return false;
  return true;
}

}  // namespace blockd::test
