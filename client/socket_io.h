// Blocking whole-buffer I/O on a socket descriptor, for the synchronous NBD client.
// EINTR is retried; a short read means the peer closed. Free functions: no state.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace blockd::client {

// Throw NbdError("<what>: <strerror>" or "<what>: the server closed the connection").
void read_exact(int fd, std::span<std::byte> out, const char* what);
void write_all(int fd, std::span<const std::byte> data, const char* what);
// Gathers two buffers (a header and its payload) into as few syscalls as possible.
void write_all2(int fd, std::span<const std::byte> first, std::span<const std::byte> second,
                const char* what);

}  // namespace blockd::client
