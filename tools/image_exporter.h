// ImageExporter: `blockctl volume export`: copies an NBD export into a raw image file
// or a pipe (stdout), sparse-aware, then verifies it.
//
// - Ranges that base:allocation reports as NBD_STATE_ZERO are not read.
// - Into a regular file, zero ranges (reported, or found in the data at 64 KiB
//   granularity) are left as holes: the file is truncated to the export's size and only
//   data is written. Into a pipe, zeroes are written, in order.
// - The file is fsync'ed, then read back and compared with fingerprints taken while
//   receiving; a difference is located to the byte by reading that chunk again from
//   the export. A pipe cannot be read back: that is said, not hidden.
// Thread affinity: the calling thread; the NbdClient must have nothing in flight.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "client/nbd_client.h"
#include "tools/allocation_map.h"
#include "tools/copy_window.h"
#include "tools/image_importer.h"
#include "tools/progress.h"

namespace blockd::tools {

class ImageExporter {
 public:
  struct Options {
    std::string output_name;  // for messages: the path, or "stdout"
    std::string volume_name;
    bool verify = true;
    Progress::Mode progress = Progress::Mode::kQuiet;
  };

  ImageExporter(client::NbdClient& nbd, int output_fd, Options options);
  // Throws std::runtime_error (or NbdError) saying what failed and where.
  CopyStats run();
  bool output_is_file() const { return regular_; }

 private:
  struct Chunk {
    std::size_t index = 0;
    std::optional<std::size_t> slot;  // none: known zero, nothing read
    bool ready = false;
  };

  void copy();
  template <typename EmitReady>
  void receive_all(std::deque<Chunk>& queue, EmitReady& emit_ready);
  void emit(Chunk& chunk);
  void write_out(std::uint64_t offset, std::span<const std::byte> data);
  void verify();
  std::string locate_difference(std::size_t chunk, std::span<const std::byte> in_file);
  std::uint64_t chunk_offset(std::size_t i) const { return static_cast<std::uint64_t>(i) * chunk_; }
  std::size_t chunk_length(std::size_t i) const;

  client::NbdClient& nbd_;
  int fd_;
  Options options_;
  std::uint64_t size_;
  std::size_t chunk_;
  CopyWindow window_;
  bool regular_ = false;
  AllocationMap zero_;
  std::vector<std::uint64_t> fingerprints_;
  std::vector<char> zero_chunk_;
  std::vector<std::byte> zeros_;
  std::string first_error_;
  CopyStats stats_;
};

}  // namespace blockd::tools
