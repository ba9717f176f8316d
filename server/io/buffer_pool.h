// BufferPool: per-worker recycling of I/O buffers, so the data path does not call
// the allocator for every request. Buffers are 4 KiB aligned (ready for O_DIRECT).
//
// With a ring (register_with), the buffers the pool keeps are registered with it as
// fixed buffers, up to kMaxCachedPerClass per size class: the ring then reads and
// writes them with READ_FIXED / WRITE_FIXED. A registered buffer is never freed
// before the pool is, so the ring never holds pages that were given back.
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
class Ring;

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
  Buffer(BufferPool* pool, std::byte* data, std::size_t size, int size_class, bool registered)
      : pool_(pool), data_(data), size_(size), size_class_(size_class), registered_(registered) {}
  void release();

  BufferPool* pool_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int size_class_ = -1;
  bool registered_ = false;
};

class BufferPool {
 public:
  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  Buffer acquire(std::size_t size);

  // Buffers allocated from now on are registered with `ring` (nullptr: no longer).
  // The ring must be destroyed before the pool, and must not be used by the pool
  // after register_with(nullptr).
  void register_with(Ring* ring) { ring_ = ring; }

  static constexpr std::size_t kMaxCachedPerClass = 64;

 private:
  friend class Buffer;
  static constexpr int kClasses = 9;  // 4 KiB .. 1 MiB, powers of two
  static int size_class(std::size_t size);
  static std::size_t class_bytes(int size_class);
  // A new buffer of class `c`, registered with the ring when there is one and the
  // class has fewer than kMaxCachedPerClass registered buffers.
  Buffer allocate_new(std::size_t size, int c);
  void give_back(std::byte* data, int size_class, bool registered);

  struct Kept {
    std::byte* data;
    bool registered;
  };
  std::array<std::vector<Kept>, kClasses> free_;
  std::array<std::size_t, kClasses> registered_{};
  Ring* ring_ = nullptr;
};

}  // namespace blockd::server::io
