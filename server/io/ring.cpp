#include "server/io/ring.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
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
  boost::system::error_code ignored;
  event_.close(ignored);
  cancel_in_flight();
  // Parked coroutines never woken: destroy their frames without resuming them. Their
  // RingEvents first forget the ring (one may outlive it, in a frame the io_context
  // destroys later); the containers are moved out, as a frame's destructor may reach
  // forget().
  for (auto& [key, parked] : parked_) *parked.key = 0;
  auto parked = std::move(parked_);
  auto woken = std::move(woken_);
  parked_.clear();
  woken_.clear();
  parked.clear();
  woken.clear();
  io_uring_queue_exit(&ring_);
}

void Ring::park(Resume resume, std::uint64_t* key) {
  *key = next_park_key_++;
  parked_.emplace(*key, Parked{std::move(resume), key});
}

void Ring::wake(std::uint64_t key) {
  auto it = parked_.find(key);
  if (it == parked_.end()) return;
  *it->second.key = 0;
  woken_.push_back(std::move(it->second.resume));
  parked_.erase(it);
  schedule_submit();
}

void Ring::forget(std::uint64_t key) { parked_.erase(key); }

void Ring::resume_woken() {
  auto woken = std::move(woken_);
  woken_.clear();
  for (Resume& resume : woken) std::move(resume)();
}

void Ring::cancel_in_flight() {
  // Operations still in the kernel would complete into buffers owned by the coroutine
  // frames their completions hold. Cancel them, and wait (bounded) until the kernel
  // has let go of every one before the frames are destroyed with their completions.
  for (const Ready& ready : ready_) {  // reaped, never delivered
    delete ready.completion;
    --in_flight_;
  }
  ready_.clear();
  if (in_flight_ == 0) return;
  io_uring_submit(&ring_);  // not submit_now(): no completion may resume anything here
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
    io_uring_prep_cancel(sqe, nullptr, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data(sqe, nullptr);
    io_uring_submit(&ring_);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
    __kernel_timespec wait{0, 100'000'000};
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe_timeout(&ring_, &cqe, &wait) != 0) continue;
    if (auto* completion = static_cast<Completion*>(io_uring_cqe_get_data(cqe))) {
      delete completion;  // destroys the waiting coroutine frame without resuming it
      --in_flight_;
    }
    io_uring_cqe_seen(&ring_, cqe);
  }
  if (in_flight_ > 0)
    common::logger("uring")->error("{} io_uring operations did not finish at shutdown", in_flight_);
}

io_uring_sqe* Ring::acquire_sqe() {
  // A full submission queue is handed to the kernel, which frees its slots at once.
  // Nothing is delivered from here: a completion handler run inside acquire_sqe()
  // would submit again and could take the slot this caller is about to use.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    const int ret = enter();
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY) break;
  }
  throw std::runtime_error("io_uring submission queue stays full");
}

void Ring::track(io_uring_sqe* sqe, Completion completion) {
  io_uring_sqe_set_data(sqe, new Completion(std::move(completion)));
  ++unsubmitted_;
  ++in_flight_;
  schedule_submit();
}

void Ring::schedule_submit() {
  if (submit_scheduled_ || in_pass_) return;
  submit_scheduled_ = true;
  asio::post(context_, [this] {
    submit_scheduled_ = false;
    submit_now();
  });
}

int Ring::enter() {
  for (;;) {
    const int ret = io_uring_submit(&ring_);
    if (ret >= 0) {
      submissions_.add(static_cast<unsigned>(ret));
      unsubmitted_ -= std::min<unsigned>(unsubmitted_, static_cast<unsigned>(ret));
      return ret;
    }
    if (ret == -EINTR) continue;
    if (ret == -EAGAIN || ret == -EBUSY) {
      // The kernel is short of resources or the CQ is full: take completions off the
      // ring (delivered later) so it can accept more.
      reap();
      return ret;
    }
    common::logger("uring")->critical("io_uring_submit failed error={}", std::strerror(-ret));
    throw std::system_error(-ret, std::generic_category(), "io_uring_submit");
  }
}

void Ring::submit_now() {
  // Reads of cached pages and sends on loopback often complete inside
  // io_uring_submit(): deliver them now rather than after an eventfd wake-up and
  // another trip through epoll. The eventfd is off meanwhile, or every such completion
  // would also wake the loop for nothing (an epoll_wait, a read and an epoll_ctl);
  // whatever completes after it is back on is reaped below or signals it.
  if (in_pass_) return;  // a completion handler's submit: the running pass loops
  in_pass_ = true;
  bool retry_later = false;
  for (;;) {
    if (unsubmitted_ > 0) {
      io_uring_cq_eventfd_toggle(&ring_, false);
      const int ret = enter();
      io_uring_cq_eventfd_toggle(&ring_, true);
      if (ret < 0) retry_later = true;  // the kernel is short of room: not in this pass
    }
    reap();
    deliver();
    resume_woken();
    if (woken_.empty() && (unsubmitted_ == 0 || retry_later)) break;
  }
  in_pass_ = false;
  if (unsubmitted_ > 0) schedule_submit();  // the kernel was short of room: try again
}

void Ring::wait_for_completions() {
  event_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // closed at shutdown
    std::uint64_t counter;
    [[maybe_unused]] ssize_t n = ::read(event_fd_, &counter, sizeof counter);
    submit_now();  // deliver, then submit what the resumed coroutines prepared
    wait_for_completions();
  });
}

void Ring::reap() {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    ready_.push_back({static_cast<Completion*>(io_uring_cqe_get_data(cqe)), cqe->res});
    io_uring_cqe_seen(&ring_, cqe);
  }
}

void Ring::deliver() {
  if (delivering_) return;  // a handler resumed from here submitted: the outer loop delivers
  delivering_ = true;
  while (!ready_.empty()) {
    const Ready ready = ready_.front();
    ready_.pop_front();
    std::unique_ptr<Completion> completion(ready.completion);
    completions_.add();
    --in_flight_;
    if (completion) std::move (*completion)(ready.result);
  }
  delivering_ = false;
}

bool Ring::register_buffer(std::span<std::byte> region) {
  if (registration_failed_ || registered_.size() >= kMaxRegisteredBuffers || region.empty()) return false;
  if (registered_.empty()) {
    // One sparse table, filled slot by slot as regions come (Linux 5.19+).
    if (const int ret = io_uring_register_buffers_sparse(&ring_, kMaxRegisteredBuffers); ret < 0) {
      registration_failed_ = true;
      common::logger("uring")->info("registered buffers unavailable ({}): plain reads and writes",
                                    std::strerror(-ret));
      return false;
    }
  }
  const int index = static_cast<int>(registered_.size());
  iovec iov{region.data(), region.size()};
  const __u64 tag = 0;
  if (const int ret = io_uring_register_buffers_update_tag(&ring_, static_cast<unsigned>(index), &iov, &tag, 1);
      ret != 1) {
    registration_failed_ = true;
    common::logger("uring")->info("registering buffer {} failed ({}): plain reads and writes from now on",
                                  index, std::strerror(ret < 0 ? -ret : EINVAL));
    return false;
  }
  registered_.emplace(region.data(), Registered{region.size(), index});
  registered_buffers_.add();
  return true;
}

int Ring::fixed_index(const std::byte* data, std::size_t size) const {
  auto it = registered_.upper_bound(data);
  if (it == registered_.begin()) return -1;
  --it;
  if (data + size > it->first + it->second.size) return -1;
  return it->second.index;
}

void Ring::prepare_rw(io_uring_sqe* sqe, int op, int fixed_op, int fd, const std::byte* data, std::size_t size,
                      std::uint64_t offset) {
  const int index = fixed_index(data, size);
  io_uring_prep_rw(index >= 0 ? fixed_op : op, sqe, fd, data, static_cast<unsigned>(size), offset);
  if (index >= 0) {
    sqe->buf_index = static_cast<__u16>(index);
    fixed_buffer_ios_.add();
  }
}

asio::awaitable<int> Ring::read(int fd, std::span<std::byte> buffer, std::uint64_t offset) {
  return submit([=, this](io_uring_sqe* sqe) {
    prepare_rw(sqe, IORING_OP_READ, IORING_OP_READ_FIXED, fd, buffer.data(), buffer.size(), offset);
  });
}

asio::awaitable<int> Ring::write(int fd, std::span<const std::byte> buffer, std::uint64_t offset,
                                 int rw_flags) {
  return submit([=, this](io_uring_sqe* sqe) {
    prepare_rw(sqe, IORING_OP_WRITE, IORING_OP_WRITE_FIXED, fd, buffer.data(), buffer.size(), offset);
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

asio::awaitable<int> Ring::sendmsg(int fd, const msghdr* message, int flags) {
  return submit([=](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, message, static_cast<unsigned>(flags)); });
}

asio::awaitable<int> Ring::recv(int fd, std::span<std::byte> buffer, int flags) {
  return submit([=](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), flags); });
}

}  // namespace blockd::server::io
