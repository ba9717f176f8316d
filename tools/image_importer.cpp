#include "tools/image_importer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/nbd_protocol.h"
#include "common/size.h"
#include "tools/chunk_data.h"
#include "tools/copy_sizes.h"

namespace blockd::tools {

namespace {

// WRITE_ZEROES needs no payload, so one request may cover much more than a write;
// 1 GiB stays far below the 32-bit length limit and any server's patience.
constexpr std::uint64_t kMaxZeroRequest = 1ULL << 30;

std::string sized(std::uint64_t bytes) {
  return common::format_size(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

}  // namespace

ImageImporter::ImageImporter(client::NbdClient& nbd, int source_fd, Options options)
    : nbd_(nbd),
      fd_(source_fd),
      options_(std::move(options)),
      volume_size_(nbd.info().size),
      chunk_(copy_chunk_for(nbd.info())),
      window_(nbd, kCopyWindow, chunk_, kCopyWindow * 2) {}

CopyStats ImageImporter::run() {
  if (nbd_.info().read_only())
    throw std::runtime_error("the export of volume \"" + options_.volume_name + "\" is read-only");
  inspect_source();
  target_zero_ = AllocationMap::query(nbd_);
  try {
    copy();
  } catch (...) {
    window_.abandon();  // let the session end with a soft disconnect
    throw;
  }
  if (nbd_.info().has(common::nbd::kFlagSendFlush)) nbd_.flush();
  stats_.source_bytes = source_size_;
  if (options_.verify) verify();
  return stats_;
}

void ImageImporter::inspect_source() {
  struct stat st{};
  if (::fstat(fd_, &st) != 0)
    throw std::runtime_error("cannot stat " + options_.source_name + ": " + std::strerror(errno));
  seekable_ = S_ISREG(st.st_mode);
  if (!seekable_) return;
  source_size_ = static_cast<std::uint64_t>(st.st_size);
  source_ended_ = true;
  check_not_larger_than_volume();
  // SEEK_DATA/SEEK_HOLE: where the file has data. A file system without them reports
  // the whole file as data, which is merely slower.
  off_t at = 0;
  const auto size = static_cast<off_t>(source_size_);
  while (at < size) {
    const off_t data = ::lseek(fd_, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after `at`
      source_data_ = {{0, source_size_}};
      return;
    }
    off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    source_data_.emplace_back(static_cast<std::uint64_t>(data), static_cast<std::uint64_t>(hole));
    at = hole;
  }
}

void ImageImporter::check_not_larger_than_volume() {
  if (source_size_ <= volume_size_) return;
  throw std::runtime_error(options_.source_name + " is " + sized(source_size_) + ", larger than volume \"" +
                           options_.volume_name + "\" (" + sized(volume_size_) +
                           "); nothing was written. Grow the volume first: blockctl volume resize " +
                           options_.volume_name + " --size " + std::to_string(source_size_));
}

bool ImageImporter::chunk_has_data(std::uint64_t offset, std::uint64_t length) const {
  if (!seekable_) return true;
  const std::uint64_t end = offset + length;
  for (const auto& [b, e] : source_data_) {
    if (b >= end) break;
    if (e > offset) return true;
  }
  return false;
}

std::size_t ImageImporter::read_source(std::uint64_t offset, std::span<std::byte> into) {
  std::size_t done = 0;
  while (done < into.size()) {
    const ssize_t n = seekable_ ? ::pread(fd_, into.data() + done, into.size() - done, static_cast<off_t>(offset + done))
                                : ::read(fd_, into.data() + done, into.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("reading " + options_.source_name + " at byte " + std::to_string(offset + done) +
                               ": " + std::strerror(errno));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void ImageImporter::copy() {
  const std::size_t chunks = static_cast<std::size_t>((volume_size_ + chunk_ - 1) / chunk_);
  fingerprints_.assign(chunks, 0);
  zero_chunk_.assign(chunks, 0);
  Progress progress("importing " + options_.volume_name, volume_size_, options_.progress);
  for (std::size_t i = 0; i < chunks && first_error_.empty(); ++i) {
    const std::uint64_t offset = static_cast<std::uint64_t>(i) * chunk_;
    const std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, volume_size_ - offset));
    const bool past_end = source_ended_ && offset >= source_size_;
    if (past_end || !chunk_has_data(offset, length)) {
      zero_chunk_[i] = 1;
      add_zero(offset, length);
    } else {
      const std::size_t slot = window_.acquire();
      auto buffer = window_.slot(slot).first(length);
      const std::size_t got = read_source(offset, buffer);
      if (got < length) {
        // End of the image inside this chunk: the rest reads as zeroes on the volume.
        std::memset(buffer.data() + got, 0, length - got);
        if (!seekable_) {
          source_ended_ = true;
          source_size_ = offset + got;
        }
      }
      fingerprints_[i] = fingerprint(buffer);
      zero_chunk_[i] = is_zero(buffer) ? 1 : 0;
      send_chunk(offset, slot, length);
      window_.release(slot);
    }
    progress.update(offset + length);
  }
  if (!source_ended_ && first_error_.empty()) {
    // A pipe that filled the volume: one more byte means the image does not fit.
    std::byte extra{};
    if (read_source(volume_size_, std::span(&extra, 1)) != 0) {
      first_error_ = "the input is larger than volume \"" + options_.volume_name + "\" (" + sized(volume_size_) +
                     "); its first " + sized(volume_size_) + " were written. Grow the volume and import again";
    }
    source_size_ = volume_size_;
  }
  if (first_error_.empty()) flush_zero();
  window_.drain();
  progress.finish();
  throw_if_failed();
}

void ImageImporter::send_chunk(std::uint64_t offset, std::size_t slot, std::size_t length) {
  const auto buffer = window_.slot(slot).first(length);
  for (const Run& run : split_runs(buffer, kZeroGranule)) {
    if (run.zero) {
      add_zero(offset + run.offset, run.length);
      continue;
    }
    flush_zero();
    window_.throttle();
    const std::uint64_t at = offset + run.offset;
    const auto cookie = nbd_.send_write(at, buffer.subspan(run.offset, run.length));
    window_.track(cookie, slot, [this, at](const client::Completion& c) { fail_on_error(c, "NBD_CMD_WRITE", at); });
    stats_.data_bytes += run.length;
  }
}

void ImageImporter::add_zero(std::uint64_t offset, std::uint64_t length) {
  if (pending_zero_.second == offset && pending_zero_.second != pending_zero_.first) {
    pending_zero_.second += length;
  } else {
    flush_zero();
    pending_zero_ = {offset, offset + length};
  }
  if (pending_zero_.second - pending_zero_.first >= kMaxZeroRequest) flush_zero();
}

void ImageImporter::flush_zero() {
  const auto [begin, end] = pending_zero_;
  pending_zero_ = {0, 0};
  if (begin == end) return;
  std::uint64_t maybe_data = 0;
  for (const auto& [offset, length] : target_zero_.maybe_data(begin, end - begin)) {
    send_zeroes(offset, length);
    maybe_data += length;
  }
  stats_.skipped_bytes += (end - begin) - maybe_data;
}

void ImageImporter::send_zeroes(std::uint64_t offset, std::uint64_t length) {
  const bool can_zero = nbd_.info().has(common::nbd::kFlagSendWriteZeroes);
  if (!can_zero && zeros_.empty()) zeros_.assign(chunk_, std::byte{0});
  const std::uint64_t step = can_zero ? kMaxZeroRequest : chunk_;
  for (std::uint64_t at = offset; at < offset + length; at += step) {
    const auto piece = static_cast<std::uint32_t>(std::min(step, offset + length - at));
    window_.throttle();
    const auto cookie = can_zero ? nbd_.send_write_zeroes(at, piece)
                                 : nbd_.send_write(at, std::span<const std::byte>(zeros_).first(piece));
    window_.track(cookie, std::nullopt,
                  [this, at](const client::Completion& c) { fail_on_error(c, "NBD_CMD_WRITE_ZEROES", at); });
    stats_.zeroed_bytes += piece;
  }
}

void ImageImporter::fail_on_error(const client::Completion& c, const char* what, std::uint64_t offset) {
  if (c.ok() || !first_error_.empty()) return;
  first_error_ = std::string(what) + " at byte " + std::to_string(offset) + " of volume \"" + options_.volume_name +
                 "\" failed: " + client::describe_nbd_error(c.error) + (c.message.empty() ? "" : ": " + c.message);
}

void ImageImporter::throw_if_failed() {
  if (!first_error_.empty()) throw std::runtime_error(first_error_);
}

void ImageImporter::verify() {
  const AllocationMap after = AllocationMap::query(nbd_);
  Progress progress("verifying " + options_.volume_name, volume_size_, options_.progress);
  std::optional<std::size_t> bad_chunk;
  std::vector<std::byte> bad_copy;
  try {
    compare_all(after, progress, bad_chunk, bad_copy);
  } catch (...) {
    window_.abandon();  // the callbacks refer to this frame
    throw;
  }
  progress.update(volume_size_);
  progress.finish();
  throw_if_failed();
  if (bad_chunk) throw std::runtime_error(locate_difference(*bad_chunk, bad_copy));
  stats_.verified = true;
}

void ImageImporter::compare_all(const AllocationMap& after, Progress& progress, std::optional<std::size_t>& bad_chunk,
                                std::vector<std::byte>& bad_copy) {
  const std::size_t chunks = fingerprints_.size();
  for (std::size_t i = 0; i < chunks && !bad_chunk; ++i) {
    const std::uint64_t offset = static_cast<std::uint64_t>(i) * chunk_;
    const std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, volume_size_ - offset));
    progress.update(offset);
    if (zero_chunk_[i] && after.all_zero(offset, length)) continue;
    const std::size_t slot = window_.acquire();
    auto buffer = window_.slot(slot).first(length);
    const auto cookie = nbd_.send_read(offset, buffer);
    window_.track(cookie, slot, [this, i, buffer, offset, &bad_chunk, &bad_copy](const client::Completion& c) {
      fail_on_error(c, "NBD_CMD_READ", offset);
      if (!c.ok()) return;
      const bool same = zero_chunk_[i] ? is_zero(buffer) : fingerprint(buffer) == fingerprints_[i];
      if (!same && (!bad_chunk || i < *bad_chunk)) {
        bad_chunk = i;
        bad_copy.assign(buffer.begin(), buffer.end());
      }
    });
    window_.release(slot);
    if (!first_error_.empty()) break;
  }
  window_.drain();
}

std::string ImageImporter::locate_difference(std::size_t chunk, std::span<const std::byte> on_volume) {
  const std::uint64_t offset = static_cast<std::uint64_t>(chunk) * chunk_;
  const std::string prefix = "verification failed: volume \"" + options_.volume_name + "\" differs from " +
                             options_.source_name;
  if (!seekable_) {
    return prefix + " in the " + common::format_size(on_volume.size()) + " at byte " + std::to_string(offset) +
           " (the input cannot be re-read to find the exact byte)";
  }
  std::vector<std::byte> source(on_volume.size(), std::byte{0});
  read_source(offset, source);  // a short read leaves the zero padding the volume should have
  const std::size_t at = first_difference(on_volume, source);
  if (at == on_volume.size()) {
    return prefix + " in the " + common::format_size(on_volume.size()) + " at byte " + std::to_string(offset) +
           " (the source changed during the import?)";
  }
  char detail[96];
  std::snprintf(detail, sizeof detail, " (0x%02x on the volume, 0x%02x in the image)",
                static_cast<unsigned>(on_volume[at]), static_cast<unsigned>(source[at]));
  return prefix + " at byte " + std::to_string(offset + at) + detail;
}

}  // namespace blockd::tools
