// ImageImporter: `blockctl volume import`: copies a raw disk image (a file, or a pipe
// such as stdin) onto an NBD export, sparse-aware, then verifies it.
//
// - Holes of a regular source (SEEK_DATA/SEEK_HOLE) are never read, and zero runs in
//   its data are not sent as data. Where the target may hold old data (base:allocation
//   does not say NBD_STATE_ZERO) they become NBD_CMD_WRITE_ZEROES (or zero writes on a
//   server without it); where it is known zero, nothing is sent.
// - The export's tail past the end of the image is treated the same way, so afterwards
//   the volume reads exactly as the image padded with zeroes.
// - FLUSH at the end, then every chunk is read back and compared with a fingerprint
//   taken while sending; a difference is located to the byte when the source can be
//   re-read.
// Thread affinity: the calling thread; the NbdClient must have nothing in flight.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/nbd_client.h"
#include "tools/allocation_map.h"
#include "tools/copy_window.h"
#include "tools/progress.h"

namespace blockd::tools {

struct CopyStats {
  std::uint64_t data_bytes = 0;     // sent (import) or received (export) as data
  std::uint64_t zeroed_bytes = 0;   // import: WRITE_ZEROES sent for them
  std::uint64_t skipped_bytes = 0;  // known zero on the target (import) / left as holes (export)
  std::uint64_t source_bytes = 0;   // the image's size
  bool verified = false;
};

class ImageImporter {
 public:
  struct Options {
    std::string source_name;  // for messages: the path, or "stdin"
    std::string volume_name;
    bool verify = true;
    Progress::Mode progress = Progress::Mode::kQuiet;
  };

  ImageImporter(client::NbdClient& nbd, int source_fd, Options options);
  // Throws std::runtime_error (or NbdError) saying what failed and where.
  CopyStats run();

 private:
  void inspect_source();
  bool chunk_has_data(std::uint64_t offset, std::uint64_t length) const;
  std::size_t read_source(std::uint64_t offset, std::span<std::byte> into);
  void copy();
  void send_chunk(std::uint64_t offset, std::size_t slot, std::size_t length);
  void add_zero(std::uint64_t offset, std::uint64_t length);
  void flush_zero();
  void send_zeroes(std::uint64_t offset, std::uint64_t length);
  void check_not_larger_than_volume();
  void verify();
  void compare_all(const AllocationMap& after, Progress& progress, std::optional<std::size_t>& bad_chunk,
                   std::vector<std::byte>& bad_copy);
  std::string locate_difference(std::size_t chunk, std::span<const std::byte> on_volume);
  void fail_on_error(const client::Completion& c, const char* what, std::uint64_t offset);
  void throw_if_failed();

  client::NbdClient& nbd_;
  int fd_;
  Options options_;
  std::uint64_t volume_size_;
  std::size_t chunk_;  // copy unit, <= the server's maximum payload
  CopyWindow window_;
  bool seekable_ = false;
  std::uint64_t source_size_ = 0;  // known for a regular file; for a pipe once EOF is seen
  bool source_ended_ = false;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> source_data_;  // [begin, end)
  AllocationMap target_zero_;
  std::vector<std::uint64_t> fingerprints_;  // per chunk, of what was sent
  std::vector<char> zero_chunk_;             // per chunk: the whole chunk is zeroes
  std::pair<std::uint64_t, std::uint64_t> pending_zero_{0, 0};  // [begin, end) not yet sent
  std::vector<std::byte> zeros_;  // for servers without WRITE_ZEROES
  std::string first_error_;
  CopyStats stats_;
};

}  // namespace blockd::tools
