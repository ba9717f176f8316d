// Result<T>: a value or an errno, the error currency of the data path (DESIGN.md §7).
// Exceptions are reserved for start-up and the control-plane edges.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace blockd::common {

// An errno value (positive). Kept as a distinct type so that a Result<int> is unambiguous.
struct Errno {
  int value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Errno error) : state_(error) {}         // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }
  int error() const { return ok() ? 0 : std::get<Errno>(state_).value; }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }

 private:
  std::variant<T, Errno> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errno error) : error_(error.value) {}  // NOLINT: implicit by design

  bool ok() const { return error_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return error_; }

 private:
  int error_ = 0;
};

// Converts a syscall-style return (>= 0 success, -errno failure) into Result<void>.
inline Result<void> from_syscall(int ret) {
  if (ret < 0) return Errno{-ret};
  return {};
}

}  // namespace blockd::common
