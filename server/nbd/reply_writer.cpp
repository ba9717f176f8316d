#include "server/nbd/reply_writer.h"

#include <boost/asio/write.hpp>

namespace blockd::server::nbd {

ReplyWriter::ReplyWriter(net::Socket& socket)
    : socket_(socket), ready_(socket.get_executor()), done_event_(socket.get_executor()) {}

void ReplyWriter::send(Reply reply) {
  if (failed_ || done_) return;
  queue_.push_back(std::move(reply));
  ready_.notify_all();
}

void ReplyWriter::finish() {
  finishing_ = true;
  ready_.notify_all();
}

asio::awaitable<void> ReplyWriter::run() {
  for (;;) {
    while (queue_.empty() && !finishing_) co_await ready_.wait();
    if (queue_.empty()) break;
    while (!queue_.empty() && batch_.size() < kMaxBatch) {
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    buffers_.clear();
    for (const Reply& r : batch_) {
      buffers_.emplace_back(r.head.data(), r.head_size);
      if (r.data.size() > 0) buffers_.emplace_back(r.data.data(), r.data.size());
      if (!r.tail.empty()) buffers_.emplace_back(r.tail.data(), r.tail.size());
    }
    auto [ec, n] = co_await asio::async_write(socket_, buffers_, net::use_nothrow);
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

}  // namespace blockd::server::nbd
