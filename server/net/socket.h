// The socket type for every NBD connection: a generic stream socket, so TCP over
// IPv4/IPv6 and Unix sockets share one code path.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string>

namespace blockd::server::net {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;
using Endpoint = asio::generic::stream_protocol::endpoint;
using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

// The no-exception completion token of the data path (DESIGN.md §6).
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// "127.0.0.1:4000", "[::1]:4000", "unix:/run/x.sock" (or "unix" for an unnamed peer).
std::string format_endpoint(const Endpoint& endpoint);

// The peer's address without the port, for holder identity later ("127.0.0.1").
std::string peer_address(const Endpoint& endpoint);

}  // namespace blockd::server::net
