#include "server/io/buffer_pool.h"

#include <cstdlib>
#include <new>
#include <utility>

#include "server/io/ring.h"

namespace blockd::server::io {

namespace {
constexpr std::size_t kAlignment = 4096;

std::byte* allocate(std::size_t bytes) {
  void* p = std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}
}  // namespace

Buffer::Buffer(Buffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      size_class_(std::exchange(other.size_class_, -1)),
      registered_(std::exchange(other.registered_, false)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    size_class_ = std::exchange(other.size_class_, -1);
    registered_ = std::exchange(other.registered_, false);
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (data_ == nullptr) return;
  if (pool_ != nullptr && size_class_ >= 0) {
    pool_->give_back(data_, size_class_, registered_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
}

BufferPool::~BufferPool() {
  for (auto& list : free_)
    for (const Kept& kept : list) std::free(kept.data);
}

int BufferPool::size_class(std::size_t size) {
  std::size_t bytes = 4096;
  for (int c = 0; c < kClasses; ++c, bytes <<= 1)
    if (size <= bytes) return c;
  return -1;
}

std::size_t BufferPool::class_bytes(int size_class) { return std::size_t{4096} << size_class; }

Buffer BufferPool::acquire(std::size_t size) {
  const int c = size_class(size);
  if (c < 0) return Buffer(nullptr, allocate(size), size, -1, false);  // large: not pooled
  auto& list = free_[static_cast<std::size_t>(c)];
  if (list.empty()) return allocate_new(size, c);
  const Kept kept = list.back();
  list.pop_back();
  return Buffer(this, kept.data, size, c, kept.registered);
}

Buffer BufferPool::allocate_new(std::size_t size, int c) {
  const std::size_t bytes = class_bytes(c);
  std::byte* data = allocate(bytes);
  auto& registered = registered_[static_cast<std::size_t>(c)];
  const bool fixed = ring_ != nullptr && registered < kMaxCachedPerClass && ring_->register_buffer({data, bytes});
  if (fixed) ++registered;
  return Buffer(this, data, size, c, fixed);
}

void BufferPool::give_back(std::byte* data, int size_class, bool registered) {
  auto& list = free_[static_cast<std::size_t>(size_class)];
  // Registered buffers are always kept (at most kMaxCachedPerClass of them per class).
  if (!registered && list.size() >= kMaxCachedPerClass) {
    std::free(data);
    return;
  }
  list.push_back({data, registered});
}

}  // namespace blockd::server::io
