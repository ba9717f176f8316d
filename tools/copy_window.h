// CopyWindow: the pipelining of a copy over one NbdClient. It owns a few chunk-sized
// buffers ("slots") and keeps up to `max_in_flight` requests outstanding; each request
// is tracked with a callback that runs when its reply arrives, before the buffer it
// used can be reused. A slot is held from acquire() until release() and while any
// request that uses it is in flight.
// Thread affinity: the copying thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "client/nbd_client.h"

namespace blockd::tools {

class CopyWindow {
 public:
  using Callback = std::function<void(const client::Completion&)>;

  CopyWindow(client::NbdClient& nbd, std::size_t slots, std::size_t slot_size, std::size_t max_in_flight);

  // A free slot, waiting for replies if every slot is busy.
  std::size_t acquire();
  // True when acquire() would not wait.
  bool slot_free() const;
  std::span<std::byte> slot(std::size_t index);
  void release(std::size_t index);

  // Waits for replies while max_in_flight requests are outstanding.
  void throttle();
  // Remembers `cookie`; the slot (if any) stays busy until `done` has run.
  void track(std::uint64_t cookie, std::optional<std::size_t> slot, Callback done);
  // Waits for one reply and runs its callback.
  void reap_one();
  void drain();
  // After a local failure: waits for every outstanding reply, callbacks and all, and
  // swallows further errors, so that the session can still end with a soft disconnect
  // (nbd-proto.md "Terminating the transmission phase": the client SHOULD wait until
  // there are no inflight requests). Gives up quietly if the connection itself failed.
  void abandon() noexcept;
  std::size_t in_flight() const { return tracked_.size(); }

 private:
  struct Tracked {
    std::optional<std::size_t> slot;
    Callback done;
  };

  client::NbdClient& nbd_;
  std::size_t slot_size_;
  std::size_t max_in_flight_;
  std::vector<std::byte> memory_;
  std::vector<unsigned> users_;  // acquire() and each tracked request count one
  std::unordered_map<std::uint64_t, Tracked> tracked_;
};

}  // namespace blockd::tools
