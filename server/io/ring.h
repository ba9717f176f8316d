// Ring: one io_uring instance driven by one worker's asio::io_context.
//
// Thread affinity: every member function runs on the owning worker's thread.
// Ownership: owned by a Worker; outlives every operation submitted to it.
//
// Submissions are batched: preparing an operation only fills an SQE; one
// io_uring_submit() per turn of the event loop hands all of them to the kernel.
// Completions are signalled through an eventfd watched by the io_context; each
// wake-up drains the completion queue fully (DESIGN.md §6). Each operation's
// result is the CQE's `res`: >= 0 on success, -errno on failure.
//
// A submit pass (one posted handler) loops: submit, deliver what completed, resume the
// coroutines woken meanwhile through a RingEvent, and again while that queued new
// submissions. So a read that completes inside io_uring_enter, the reply it queues,
// and the reply writer's send all happen in one pass of the event loop, not three
// (each pass of Asio's scheduler costs an epoll_wait).
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <unordered_map>
#include <vector>

#include "server/metrics/counter.h"

namespace blockd::server::io {

namespace asio = boost::asio;

class Ring {
 public:
  // Throws std::system_error when the ring cannot be created (see UringProbe for
  // the friendly start-up diagnosis).
  Ring(asio::io_context& context, unsigned entries);
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // A buffer inside a registered region (register_buffer) is read into and written
  // from with READ_FIXED / WRITE_FIXED; any other buffer with plain READ / WRITE.
  asio::awaitable<int> read(int fd, std::span<std::byte> buffer, std::uint64_t offset);
  // rw_flags: 0 or RWF_DSYNC (a FUA write).
  asio::awaitable<int> write(int fd, std::span<const std::byte> buffer, std::uint64_t offset,
                             int rw_flags);
  asio::awaitable<int> fdatasync(int fd);
  asio::awaitable<int> fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t length);
  asio::awaitable<int> fadvise(int fd, std::uint64_t offset, std::uint32_t length, int advice);
  // sendmsg(2) on a socket. With MSG_WAITALL on a stream socket the kernel retries a
  // short send itself (waiting for buffer space) until everything is sent or it fails,
  // so one large reply costs one submission, not one wake-up per partial write.
  // `message` and what it points to must stay valid until the completion.
  asio::awaitable<int> sendmsg(int fd, const msghdr* message, int flags);
  // recv(2) on a socket; with MSG_WAITALL the kernel keeps receiving until `buffer`
  // is full, the peer closes (a short count) or it fails.
  asio::awaitable<int> recv(int fd, std::span<std::byte> buffer, int flags);

  // Registers `region` as a fixed buffer (DESIGN.md §3: registered buffers where
  // possible). The kernel pins its pages once, instead of pinning and mapping them on
  // every read and write that uses it; that is most of the saving on O_DIRECT I/O.
  // false when the kernel refuses (no sparse buffer tables before Linux 5.19, or
  // RLIMIT_MEMLOCK) or all kMaxRegisteredBuffers slots are taken: the region is then an
  // ordinary buffer. A region stays registered, and must stay allocated, as long as
  // the ring lives.
  static constexpr unsigned kMaxRegisteredBuffers = 1024;
  bool register_buffer(std::span<std::byte> region);

  // RingEvent's side: a parked coroutine (its resumption) is kept here, so the ring
  // can resume it inside a submit pass, and destroys it at shutdown if never woken.
  // `*key` holds the parking's key until it is woken or the ring is gone (then 0).
  using Resume = asio::any_completion_handler<void()>;
  void park(Resume resume, std::uint64_t* key);
  // Resumes the parked coroutine `key` at the end of the current submit pass (or of
  // one scheduled now); nothing if it is not parked.
  void wake(std::uint64_t key);
  void forget(std::uint64_t key);

  // Any thread (the /metrics scrape).
  std::uint64_t submissions() const { return submissions_.get(); }
  std::uint64_t completions() const { return completions_.get(); }
  std::uint64_t registered_buffers() const { return registered_buffers_.get(); }
  std::uint64_t fixed_buffer_ios() const { return fixed_buffer_ios_.get(); }

 private:
  using Completion = asio::any_completion_handler<void(int)>;

  // Fills one SQE with `prepare` and returns an awaitable for its completion.
  template <typename Prepare>
  asio::awaitable<int> submit(Prepare prepare) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(int)>(
        [this](auto handler, Prepare prep) {
          io_uring_sqe* sqe = acquire_sqe();
          prep(sqe);
          track(sqe, Completion(std::move(handler)));
        },
        asio::use_awaitable, std::move(prepare));
  }

  io_uring_sqe* acquire_sqe();
  void track(io_uring_sqe* sqe, Completion completion);
  void schedule_submit();
  void submit_now();
  int enter();    // io_uring_submit with retries; never delivers completions
  void wait_for_completions();
  void reap();     // completion queue -> ready_, without running anything
  void deliver();  // runs the handlers in ready_
  void resume_woken();
  void cancel_in_flight();
  // The registered region holding [data, data + size), or -1.
  int fixed_index(const std::byte* data, std::size_t size) const;
  // A READ or WRITE of [data, data + size) at `offset`: `fixed_op` with the region's
  // index when the buffer lies in a registered region, `op` otherwise.
  void prepare_rw(io_uring_sqe* sqe, int op, int fixed_op, int fd, const std::byte* data, std::size_t size,
                  std::uint64_t offset);

  asio::io_context& context_;
  io_uring ring_{};
  int event_fd_ = -1;
  asio::posix::stream_descriptor event_;
  bool submit_scheduled_ = false;
  bool in_pass_ = false;  // inside submit_now(): it submits whatever is prepared meanwhile
  bool delivering_ = false;
  struct Ready {
    Completion* completion;
    int result;
  };
  std::deque<Ready> ready_;
  struct Parked {
    Resume resume;
    std::uint64_t* key;
  };
  std::unordered_map<std::uint64_t, Parked> parked_;
  std::vector<Resume> woken_;
  std::uint64_t next_park_key_ = 1;
  struct Registered {
    std::size_t size;
    int index;
  };
  std::map<const std::byte*, Registered> registered_;  // by start address
  bool registration_failed_ = false;  // the kernel said no once: do not ask again
  unsigned unsubmitted_ = 0;
  std::size_t in_flight_ = 0;  // submitted or queued, completion not yet delivered
  metrics::SingleWriterCounter submissions_;
  metrics::SingleWriterCounter completions_;
  metrics::SingleWriterCounter registered_buffers_;
  metrics::SingleWriterCounter fixed_buffer_ios_;
};

}  // namespace blockd::server::io
