#include "server/nbd/reply_writer.h"

#include <boost/asio/write.hpp>
#include <cerrno>

namespace blockd::server::nbd {

ReplyWriter::ReplyWriter(net::Socket& socket, io::Ring& ring)
    : socket_(socket), ring_(ring), ready_(ring), done_event_(socket.get_executor()) {}

void ReplyWriter::send(Reply reply) {
  if (failed_ || done_) return;
  queue_.push_back(std::move(reply));
  ready_.notify();
}

void ReplyWriter::finish() {
  finishing_ = true;
  ready_.notify();
}

asio::awaitable<void> ReplyWriter::run() {
  for (;;) {
    while (queue_.empty() && !finishing_) co_await ready_.wait();
    if (queue_.empty()) break;
    while (!queue_.empty() && batch_.size() < kMaxBatch) {
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    gather();
    const auto ec = co_await write_batch();
    batch_.clear();
    if (ec) {
      failed_ = true;
      queue_.clear();
      break;
    }
  }
  done_ = true;
  done_event_.notify_all();
}

asio::awaitable<void> ReplyWriter::wait_done() {
  while (!done_) co_await done_event_.wait();
}

void ReplyWriter::gather() {
  iovecs_.clear();
  batch_bytes_ = 0;
  auto add = [this](const void* data, std::size_t size) {
    iovecs_.push_back({const_cast<void*>(data), size});
    batch_bytes_ += size;
  };
  for (const Reply& r : batch_) {
    add(r.head.data(), r.head_size);
    if (r.data.size() > 0) add(r.data.data(), r.data.size());
    if (!r.tail.empty()) add(r.tail.data(), r.tail.size());
  }
}

asio::awaitable<boost::system::error_code> ReplyWriter::write_batch() {
  // The connection shuts its socket down to stop a session and closes it only after
  // run() has returned, so the descriptor cannot have been reused by another client.
  if (!socket_.is_open()) co_return asio::error::bad_descriptor;
  message_ = {};
  message_.msg_iov = iovecs_.data();
  message_.msg_iovlen = iovecs_.size();
  const int sent = co_await ring_.sendmsg(socket_.native_handle(), &message_, MSG_NOSIGNAL | MSG_WAITALL);
  if (sent < 0 && sent != -EAGAIN) co_return boost::system::error_code(-sent, boost::system::system_category());
  const std::size_t done = sent > 0 ? static_cast<std::size_t>(sent) : 0;
  if (done == batch_bytes_) co_return boost::system::error_code{};
  auto [ec, n] = co_await asio::async_write(socket_, unsent(done), net::use_nothrow);
  co_return ec;
}

std::vector<asio::const_buffer> ReplyWriter::unsent(std::size_t sent) const {
  std::vector<asio::const_buffer> rest;
  for (const iovec& v : iovecs_) {
    if (sent >= v.iov_len) {
      sent -= v.iov_len;
      continue;
    }
    rest.emplace_back(static_cast<const std::byte*>(v.iov_base) + sent, v.iov_len - sent);
    sent = 0;
  }
  return rest;
}

}  // namespace blockd::server::nbd
