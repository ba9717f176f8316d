#include "server/io/ring_event.h"

#include <boost/asio/use_awaitable.hpp>

namespace blockd::server::io {

RingEvent::~RingEvent() {
  if (parked_ != 0) ring_.forget(parked_);
}

asio::awaitable<void> RingEvent::wait() {
  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [this](auto handler) { ring_.park(Ring::Resume(std::move(handler)), &parked_); }, asio::use_awaitable);
}

void RingEvent::notify() {
  if (parked_ == 0) return;
  ring_.wake(parked_);
}

}  // namespace blockd::server::io
