#include "server/io/ring.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <memory>
#include <system_error>

#include "common/logging.h"

namespace blockd::server::io {

namespace {

io_uring_params ring_params(unsigned entries, unsigned flags) {
  io_uring_params p{};
  p.flags = flags | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;  // completions may outnumber one batch of submissions
  return p;
}

}  // namespace

Ring::Ring(asio::io_context& context, unsigned entries) : context_(context), event_(context) {
  // SINGLE_ISSUER (6.0+) and COOP_TASKRUN (5.19+) fit our one-thread-per-ring model;
  // fall back to plain setup on older kernels.
  io_uring_params params = ring_params(entries, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
  int ret = io_uring_queue_init_params(entries, &ring_, &params);
  if (ret == -EINVAL) {
    params = ring_params(entries, 0);
    ret = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (ret < 0) throw std::system_error(-ret, std::generic_category(), "io_uring_queue_init");

  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    const int err = errno;
    io_uring_queue_exit(&ring_);
    throw std::system_error(err, std::generic_category(), "eventfd");
  }
  ret = io_uring_register_eventfd(&ring_, event_fd_);
  if (ret < 0) {
    ::close(event_fd_);
    io_uring_queue_exit(&ring_);
    throw std::system_error(-ret, std::generic_category(), "io_uring_register_eventfd");
  }
  event_.assign(event_fd_);
  wait_for_completions();
}

Ring::~Ring() {
  // Operations still in the kernel complete into buffers their coroutine frames own;
  // the frames are destroyed with the pending completions below, after the ring is gone.
  boost::system::error_code ignored;
  event_.close(ignored);
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    delete static_cast<Completion*>(io_uring_cqe_get_data(cqe));
    io_uring_cqe_seen(&ring_, cqe);
  }
  io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::acquire_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    submit_now();  // the submission queue is full: hand it to the kernel and retry
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe == nullptr) throw std::runtime_error("io_uring submission queue exhausted");
  return sqe;
}

void Ring::track(io_uring_sqe* sqe, Completion completion) {
  io_uring_sqe_set_data(sqe, new Completion(std::move(completion)));
  ++unsubmitted_;
  schedule_submit();
}

void Ring::schedule_submit() {
  if (submit_scheduled_) return;
  submit_scheduled_ = true;
  asio::post(context_, [this] {
    submit_scheduled_ = false;
    submit_now();
  });
}

void Ring::submit_now() {
  if (unsubmitted_ == 0) return;
  for (;;) {
    const int ret = io_uring_submit(&ring_);
    if (ret >= 0) {
      submissions_ += static_cast<unsigned>(ret);
      unsubmitted_ -= std::min<unsigned>(unsubmitted_, static_cast<unsigned>(ret));
      // Reads of cached pages often complete inside io_uring_submit(): reap them now
      // rather than after an eventfd wake-up and another trip through epoll.
      drain_completions();
      return;
    }
    if (ret == -EINTR) continue;
    if (ret == -EAGAIN || ret == -EBUSY) {
      // The kernel is short of resources or the CQ is full: reap, then retry later.
      drain_completions();
      schedule_submit();
      return;
    }
    common::logger("uring")->critical("io_uring_submit failed error={}", std::strerror(-ret));
    throw std::system_error(-ret, std::generic_category(), "io_uring_submit");
  }
}

void Ring::wait_for_completions() {
  event_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // closed at shutdown
    std::uint64_t counter;
    [[maybe_unused]] ssize_t n = ::read(event_fd_, &counter, sizeof counter);
    drain_completions();
    wait_for_completions();
  });
}

void Ring::drain_completions() {
  if (draining_) return;  // a completion handler submitted and we are already reaping
  draining_ = true;
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    std::unique_ptr<Completion> completion(static_cast<Completion*>(io_uring_cqe_get_data(cqe)));
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    ++completions_;
    if (completion) std::move (*completion)(result);
  }
  draining_ = false;
}

asio::awaitable<int> Ring::read(int fd, std::span<std::byte> buffer, std::uint64_t offset) {
  return submit([=](io_uring_sqe* sqe) {
    io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
  });
}

asio::awaitable<int> Ring::write(int fd, std::span<const std::byte> buffer, std::uint64_t offset,
                                 int rw_flags) {
  return submit([=](io_uring_sqe* sqe) {
    io_uring_prep_write(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
    sqe->rw_flags = rw_flags;
  });
}

asio::awaitable<int> Ring::fdatasync(int fd) {
  return submit([=](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); });
}

asio::awaitable<int> Ring::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t length) {
  return submit([=](io_uring_sqe* sqe) {
    io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
  });
}

asio::awaitable<int> Ring::fadvise(int fd, std::uint64_t offset, std::uint32_t length, int advice) {
  return submit([=](io_uring_sqe* sqe) {
    io_uring_prep_fadvise(sqe, fd, offset, static_cast<off_t>(length), advice);
  });
}

}  // namespace blockd::server::io
