#include "server/nbd/request_reader.h"

#include <sys/socket.h>

#include <boost/asio/read.hpp>
#include <cerrno>
#include <cstring>

namespace blockd::server::nbd {

namespace asio = boost::asio;

RequestReader::RequestReader(net::Socket& socket, io::Ring& ring)
    : socket_(socket), ring_(ring), buffer_(std::make_unique<std::byte[]>(kBufferSize)) {}

std::size_t RequestReader::take(std::byte* out, std::size_t size) {
  const std::size_t n = std::min(size, buffered());
  if (out != nullptr) std::memcpy(out, buffer_.get() + begin_, n);
  begin_ += n;
  if (begin_ == end_) begin_ = end_ = 0;
  return n;
}

asio::awaitable<boost::system::error_code> RequestReader::refill() {
  if (begin_ > 0) {  // keep the unread tail at the front
    std::memmove(buffer_.get(), buffer_.get() + begin_, buffered());
    end_ -= begin_;
    begin_ = 0;
  }
  auto [ec, n] = co_await socket_.async_read_some(
      asio::buffer(buffer_.get() + end_, kBufferSize - end_), net::use_nothrow);
  end_ += n;
  co_return ec;
}

asio::awaitable<boost::system::error_code> RequestReader::read_exact(std::byte* out, std::size_t size) {
  const std::size_t got = take(out, size);
  out += got;
  size -= got;
  if (size == 0) co_return boost::system::error_code{};
  // Big remainders go straight to their destination; small ones through the buffer,
  // which also picks up whatever the client sent after them.
  if (size >= kBufferSize / 2) co_return co_await read_direct(out, size);
  while (size > 0) {
    if (auto ec = co_await refill(); ec) co_return ec;
    const std::size_t n = take(out, size);
    out += n;
    size -= n;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> RequestReader::read_direct(std::byte* out, std::size_t size) {
  // The descriptor stays open while the session reads (Connection closes it last).
  if (!socket_.is_open()) co_return asio::error::bad_descriptor;
  const int got = co_await ring_.recv(socket_.native_handle(), {out, size}, MSG_WAITALL);
  if (got == 0) co_return asio::error::eof;
  if (got < 0 && got != -EAGAIN) co_return boost::system::error_code(-got, boost::system::system_category());
  const std::size_t done = got > 0 ? static_cast<std::size_t>(got) : 0;
  if (done == size) co_return boost::system::error_code{};
  // The peer shut down mid-payload (short count), or a kernel that hands back EAGAIN
  // on a non-blocking socket: Asio reads the rest or reports the end.
  auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(out + done, size - done), net::use_nothrow);
  co_return ec;
}

asio::awaitable<boost::system::error_code> RequestReader::skip(std::size_t size) {
  size -= take(nullptr, size);
  while (size > 0) {
    if (auto ec = co_await refill(); ec) co_return ec;
    size -= take(nullptr, size);
  }
  co_return boost::system::error_code{};
}

}  // namespace blockd::server::nbd
