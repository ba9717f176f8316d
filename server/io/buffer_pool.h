// BufferPool: per-worker recycling of I/O buffers, so the data path does not call
// the allocator for every request. Buffers are 4 KiB aligned (ready for O_DIRECT).
//
// Thread affinity: one pool per worker; acquire and release on that worker's thread.
// Ownership: the pool outlives every Buffer it hands out (the Worker declares it first).
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

namespace blockd::server::io {

class BufferPool;

// A move-only buffer of exactly `size()` usable bytes, returned to its pool on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer();

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  friend class BufferPool;
  Buffer(BufferPool* pool, std::byte* data, std::size_t size, int size_class)
      : pool_(pool), data_(data), size_(size), size_class_(size_class) {}
  void release();

  BufferPool* pool_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int size_class_ = -1;
};

class BufferPool {
 public:
  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  Buffer acquire(std::size_t size);

 private:
  friend class Buffer;
  static constexpr int kClasses = 9;                  // 4 KiB .. 1 MiB, powers of two
  static constexpr std::size_t kMaxCachedPerClass = 64;
  static int size_class(std::size_t size);
  static std::size_t class_bytes(int size_class);
  void give_back(std::byte* data, int size_class);

  std::array<std::vector<std::byte*>, kClasses> free_;
};

}  // namespace blockd::server::io
