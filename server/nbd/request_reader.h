// RequestReader: buffered reads from a connection's socket. One recv() brings in as
// many pipelined request headers (and small write payloads) as the client has sent,
// instead of one system call per 28-byte header. Large payloads bypass the buffer and
// are read straight into their destination by one io_uring recv with MSG_WAITALL, so
// a 1 MiB write costs one submission instead of a wake-up per segment that arrives.
//
// Thread affinity: the connection's worker. Ownership: owned by the Session; borrows
// the socket.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>

#include "server/io/ring.h"
#include "server/net/socket.h"

namespace blockd::server::nbd {

class RequestReader {
 public:
  static constexpr std::size_t kBufferSize = 64 * 1024;

  RequestReader(net::Socket& socket, io::Ring& ring);

  // Fills exactly `size` bytes at `out`; an error (eof, aborted, reset) otherwise.
  boost::asio::awaitable<boost::system::error_code> read_exact(std::byte* out, std::size_t size);
  // Consumes and drops exactly `size` bytes.
  boost::asio::awaitable<boost::system::error_code> skip(std::size_t size);

 private:
  std::size_t buffered() const { return end_ - begin_; }
  std::size_t take(std::byte* out, std::size_t size);
  boost::asio::awaitable<boost::system::error_code> refill();
  boost::asio::awaitable<boost::system::error_code> read_direct(std::byte* out, std::size_t size);

  net::Socket& socket_;
  io::Ring& ring_;
  std::unique_ptr<std::byte[]> buffer_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace blockd::server::nbd
