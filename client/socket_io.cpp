#include "client/socket_io.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "client/nbd_error.h"

namespace blockd::client {

namespace {

// SO_RCVTIMEO/SO_SNDTIMEO expiry shows up as EAGAIN on a blocking socket.
std::string describe_errno(int error) {
  if (error == EAGAIN || error == EWOULDBLOCK) return "timed out waiting for the server";
  return std::strerror(error);
}

}  // namespace

void read_exact(int fd, std::span<std::byte> out, const char* what) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::recv(fd, out.data() + done, out.size() - done, MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw NbdError(std::string(what) + ": " + describe_errno(errno));
    }
    if (n == 0) throw NbdError(std::string(what) + ": the server closed the connection");
    done += static_cast<std::size_t>(n);
  }
}

void write_all(int fd, std::span<const std::byte> data, const char* what) {
  write_all2(fd, data, {}, what);
}

void write_all2(int fd, std::span<const std::byte> first, std::span<const std::byte> second,
                const char* what) {
  iovec iov[2] = {{const_cast<std::byte*>(first.data()), first.size()},
                  {const_cast<std::byte*>(second.data()), second.size()}};
  int index = 0;
  const int count = 2;
  while (index < count) {
    if (iov[index].iov_len == 0) {
      ++index;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = &iov[index];
    msg.msg_iovlen = static_cast<std::size_t>(count - index);
    // MSG_NOSIGNAL: a server that went away is an error to report, not a SIGPIPE.
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw NbdError(std::string(what) + ": " + describe_errno(errno));
    }
    auto left = static_cast<std::size_t>(n);
    while (index < count && left >= iov[index].iov_len) {
      left -= iov[index].iov_len;
      iov[index].iov_len = 0;
      ++index;
    }
    if (index < count) {
      iov[index].iov_base = static_cast<std::byte*>(iov[index].iov_base) + left;
      iov[index].iov_len -= left;
    }
  }
}

}  // namespace blockd::client
