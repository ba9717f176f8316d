// BufferPool / Buffer (server/io/buffer_pool.h): exact sizes, 4 KiB alignment, recycling,
// registration with a real io_uring ring.
#include "server/io/buffer_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "server/io/ring.h"
#include "test_support.h"

namespace {

namespace asio = boost::asio;
using blockd::common::UniqueFd;
using blockd::server::io::Buffer;
using blockd::server::io::BufferPool;
using blockd::server::io::Ring;
using blockd::test::run_coroutine;
using blockd::test::TempFile;

bool aligned_4k(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 4096 == 0; }

TEST(BufferPool, DefaultBufferIsEmpty) {
  Buffer b;
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.size(), 0U);
  EXPECT_TRUE(b.span().empty());
}

TEST(BufferPool, SizeIsExactlyWhatWasAsked) {
  BufferPool pool;
  for (std::size_t size : {std::size_t{1}, std::size_t{512}, std::size_t{4095}, std::size_t{4096},
                           std::size_t{4097}, std::size_t{65536}, std::size_t{1} << 20,
                           (std::size_t{1} << 20) + 1, std::size_t{32} << 20}) {
    Buffer b = pool.acquire(size);
    ASSERT_NE(b.data(), nullptr) << size;
    EXPECT_EQ(b.size(), size);
    EXPECT_EQ(b.span().size(), size);
    EXPECT_EQ(b.span().data(), b.data());
    std::memset(b.data(), 0xAB, size);  // the whole range is usable (ASan would tell)
  }
}

TEST(BufferPool, EveryBufferIs4KiBAligned) {
  BufferPool pool;
  std::vector<Buffer> held;
  for (std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{4096}, std::size_t{5000},
                           std::size_t{300000}, std::size_t{1} << 20, (std::size_t{1} << 20) + 512,
                           std::size_t{32} << 20}) {
    held.push_back(pool.acquire(size));
    EXPECT_TRUE(aligned_4k(held.back().data())) << size;
  }
}

TEST(BufferPool, ZeroSizeBufferIsUsable) {
  BufferPool pool;
  Buffer b = pool.acquire(0);
  EXPECT_EQ(b.size(), 0U);
  EXPECT_TRUE(b.span().empty());
}

TEST(BufferPool, ReleasedBufferIsReusedForTheSameSizeClass) {
  BufferPool pool;
  std::byte* first = nullptr;
  {
    Buffer b = pool.acquire(4096);
    first = b.data();
  }
  Buffer again = pool.acquire(100);  // also the 4 KiB class
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(again.size(), 100U);
}

TEST(BufferPool, ReuseWithinEveryPooledClass) {
  BufferPool pool;
  for (std::size_t bytes = 4096; bytes <= (std::size_t{1} << 20); bytes <<= 1) {
    std::byte* first = nullptr;
    {
      Buffer b = pool.acquire(bytes);
      first = b.data();
    }
    Buffer again = pool.acquire(bytes / 2 + 1);  // same class: (bytes/2, bytes]
    EXPECT_EQ(again.data(), first) << bytes;
  }
}

TEST(BufferPool, DifferentSizeClassesDoNotShare) {
  BufferPool pool;
  std::byte* small = nullptr;
  {
    Buffer b = pool.acquire(4096);
    small = b.data();
  }
  // The 4 KiB buffer is parked in the pool, so an 8 KiB one must be a new block.
  Buffer bigger = pool.acquire(8192);
  EXPECT_NE(bigger.data(), small);
  Buffer same = pool.acquire(4096);
  EXPECT_EQ(same.data(), small);
}

TEST(BufferPool, MostRecentlyReleasedIsReusedFirst) {
  BufferPool pool;
  Buffer a = pool.acquire(4096);
  Buffer b = pool.acquire(4096);
  std::byte* pa = a.data();
  std::byte* pb = b.data();
  ASSERT_NE(pa, pb);
  a = Buffer{};  // release a, then b
  b = Buffer{};
  Buffer first = pool.acquire(4096);
  Buffer second = pool.acquire(4096);
  EXPECT_EQ(first.data(), pb);
  EXPECT_EQ(second.data(), pa);
}

TEST(BufferPool, MoveTransfersOwnership) {
  BufferPool pool;
  Buffer a = pool.acquire(1000);
  std::byte* p = a.data();
  Buffer b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 1000U);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(a.size(), 0U);

  Buffer c = pool.acquire(4096);
  std::byte* pc = c.data();
  c = std::move(b);  // c's old block goes back to the pool
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  Buffer d = pool.acquire(4096);
  EXPECT_EQ(d.data(), pc);
}

TEST(BufferPool, ManyBuffersAreDistinct) {
  BufferPool pool;
  std::vector<Buffer> held;
  std::set<std::byte*> seen;
  for (int i = 0; i < 100; ++i) {
    held.push_back(pool.acquire(4096));
    EXPECT_TRUE(seen.insert(held.back().data()).second) << i;
  }
}

TEST(BufferPool, WithARingItsBuffersAreRegistered) {
  BufferPool pool;  // outlives the ring
  asio::io_context context;
  Ring ring{context, 8};
  Buffer before = pool.acquire(4096);  // allocated before register_with: stays plain
  pool.register_with(&ring);
  EXPECT_EQ(ring.registered_buffers(), 0U);

  std::byte* first = nullptr;
  {
    Buffer b = pool.acquire(4096);
    first = b.data();
    EXPECT_EQ(ring.registered_buffers(), 1U);
    // The ring reads into it with READ_FIXED.
    TempFile file;
    file.resize(4096);
    UniqueFd fd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    EXPECT_EQ(run_coroutine(context, ring.read(fd.get(), b.span(), 0)), 4096);
    EXPECT_EQ(ring.fixed_buffer_ios(), 1U);
  }
  Buffer again = pool.acquire(4096);  // the registered buffer comes back, nothing new
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(ring.registered_buffers(), 1U);
  Buffer bigger = pool.acquire(1 << 20);  // another class: registered too
  EXPECT_EQ(ring.registered_buffers(), 2U);
}

TEST(BufferPool, RegistersAtMostWhatItKeepsPerClass) {
  BufferPool pool;
  asio::io_context context;
  Ring ring{context, 8};
  pool.register_with(&ring);
  std::vector<Buffer> held;
  for (std::size_t i = 0; i < BufferPool::kMaxCachedPerClass + 10; ++i) held.push_back(pool.acquire(8192));
  if (ring.registered_buffers() < BufferPool::kMaxCachedPerClass)
    GTEST_SKIP() << "the kernel refused registered buffers (RLIMIT_MEMLOCK?)";
  EXPECT_EQ(ring.registered_buffers(), BufferPool::kMaxCachedPerClass);
  std::set<std::byte*> seen;
  for (const Buffer& b : held) seen.insert(b.data());
  held.clear();  // every registered buffer is kept, the other 10 are freed
  std::vector<Buffer> again;
  for (std::size_t i = 0; i < BufferPool::kMaxCachedPerClass; ++i) {
    again.push_back(pool.acquire(8192));
    EXPECT_TRUE(seen.count(again.back().data())) << i;
  }
  EXPECT_EQ(ring.registered_buffers(), BufferPool::kMaxCachedPerClass);
}

TEST(BufferPool, LargeBuffersAreNotPooled) {
  BufferPool pool;
  // Larger than the biggest class (1 MiB): allocated and freed directly. Only the
  // alignment and size are observable; what matters is that it works repeatedly.
  for (int i = 0; i < 4; ++i) {
    Buffer b = pool.acquire((std::size_t{1} << 20) + 1);
    EXPECT_EQ(b.size(), (std::size_t{1} << 20) + 1);
    EXPECT_TRUE(aligned_4k(b.data()));
    b.data()[b.size() - 1] = std::byte{1};
  }
}

}  // namespace
