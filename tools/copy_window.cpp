#include "tools/copy_window.h"

#include <stdexcept>

namespace blockd::tools {

CopyWindow::CopyWindow(client::NbdClient& nbd, std::size_t slots, std::size_t slot_size,
                       std::size_t max_in_flight)
    : nbd_(nbd), slot_size_(slot_size), max_in_flight_(max_in_flight), memory_(slots * slot_size), users_(slots, 0) {}

bool CopyWindow::slot_free() const {
  for (unsigned u : users_)
    if (u == 0) return true;
  return false;
}

std::size_t CopyWindow::acquire() {
  for (;;) {
    for (std::size_t i = 0; i < users_.size(); ++i) {
      if (users_[i] == 0) {
        users_[i] = 1;
        return i;
      }
    }
    if (tracked_.empty()) throw std::logic_error("CopyWindow: every slot is held and nothing is in flight");
    reap_one();
  }
}

std::span<std::byte> CopyWindow::slot(std::size_t index) {
  return std::span(memory_.data() + index * slot_size_, slot_size_);
}

void CopyWindow::release(std::size_t index) { --users_[index]; }

void CopyWindow::throttle() {
  while (tracked_.size() >= max_in_flight_) reap_one();
}

void CopyWindow::track(std::uint64_t cookie, std::optional<std::size_t> slot, Callback done) {
  if (slot) ++users_[*slot];
  tracked_.emplace(cookie, Tracked{slot, std::move(done)});
}

void CopyWindow::reap_one() {
  const client::Completion c = nbd_.wait_one();
  auto node = tracked_.extract(c.cookie);
  if (node.empty()) throw std::logic_error("CopyWindow: a reply for a request it does not track");
  Tracked& t = node.mapped();
  if (t.done) t.done(c);
  if (t.slot) --users_[*t.slot];
}

void CopyWindow::drain() {
  while (!tracked_.empty()) reap_one();
}

void CopyWindow::abandon() noexcept {
  try {
    drain();
  } catch (...) {
    tracked_.clear();  // the session is gone; NbdClient closes it hard
  }
}

}  // namespace blockd::tools
