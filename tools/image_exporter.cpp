#include "tools/image_exporter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/size.h"
#include "common/unique_fd.h"
#include "tools/chunk_data.h"
#include "tools/copy_sizes.h"

namespace blockd::tools {

namespace {

// True when the file has no data in [offset, offset + length) (SEEK_DATA), so it reads
// as zeroes without reading it.
bool is_hole(int fd, std::uint64_t offset, std::size_t length) {
  const off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO;  // no data after offset; other errors: read it
  return static_cast<std::uint64_t>(data) >= offset + length;
}

}  // namespace

ImageExporter::ImageExporter(client::NbdClient& nbd, int output_fd, Options options)
    : nbd_(nbd),
      fd_(output_fd),
      options_(std::move(options)),
      size_(nbd.info().size),
      chunk_(copy_chunk_for(nbd.info())),
      window_(nbd, kCopyWindow, chunk_, kCopyWindow) {}

std::size_t ImageExporter::chunk_length(std::size_t i) const {
  return static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, size_ - chunk_offset(i)));
}

CopyStats ImageExporter::run() {
  struct stat st{};
  if (::fstat(fd_, &st) != 0)
    throw std::runtime_error("cannot stat " + options_.output_name + ": " + std::strerror(errno));
  regular_ = S_ISREG(st.st_mode);
  if (regular_ && ::ftruncate(fd_, 0) != 0)
    throw std::runtime_error("cannot truncate " + options_.output_name + ": " + std::strerror(errno));
  zero_ = AllocationMap::query(nbd_);
  copy();
  stats_.source_bytes = size_;
  if (regular_) {
    // The holes: the file takes the export's size without writing its zero tail.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
      throw std::runtime_error("cannot size " + options_.output_name + ": " + std::strerror(errno));
    if (::fsync(fd_) != 0)
      throw std::runtime_error("fsync of " + options_.output_name + " failed: " + std::strerror(errno));
    if (options_.verify) verify();
  }
  return stats_;
}

void ImageExporter::copy() {
  const std::size_t chunks = static_cast<std::size_t>((size_ + chunk_ - 1) / chunk_);
  fingerprints_.assign(chunks, 0);
  zero_chunk_.assign(chunks, 0);
  Progress progress("exporting " + options_.volume_name, size_, options_.progress);
  // Chunks are received out of order but written in order, so that a pipe gets a
  // stream; `queue` holds the ones not written yet.
  std::deque<Chunk> queue;
  std::uint64_t written = 0;
  auto emit_ready = [&] {
    while (!queue.empty() && queue.front().ready) {
      emit(queue.front());
      written += chunk_length(queue.front().index);
      queue.pop_front();
    }
    progress.update(written);
  };
  try {
    receive_all(queue, emit_ready);
  } catch (...) {
    // The callbacks point into `queue`: they must all have run before it goes.
    window_.abandon();
    throw;
  }
  for (Chunk& c : queue)
    if (c.slot) window_.release(*c.slot);
  progress.finish();
  if (!first_error_.empty()) throw std::runtime_error(first_error_);
}

template <typename EmitReady>
void ImageExporter::receive_all(std::deque<Chunk>& queue, EmitReady& emit_ready) {
  const std::size_t chunks = fingerprints_.size();
  for (std::size_t i = 0; i < chunks && first_error_.empty(); ++i) {
    const std::uint64_t offset = chunk_offset(i);
    const std::size_t length = chunk_length(i);
    if (zero_.all_zero(offset, length)) {
      queue.push_back(Chunk{i, std::nullopt, true});
      emit_ready();
      continue;
    }
    // Every slot may be held by a received chunk waiting behind an earlier one.
    while (!window_.slot_free()) {
      window_.reap_one();
      emit_ready();
    }
    const std::size_t slot = window_.acquire();
    queue.push_back(Chunk{i, slot, false});
    const auto buffer = window_.slot(slot).first(length);
    const auto cookie = nbd_.send_read(offset, buffer);
    Chunk* chunk = &queue.back();  // deque: push_back/pop_front keep other elements in place
    window_.track(cookie, std::nullopt, [this, chunk, offset](const client::Completion& c) {
      chunk->ready = true;
      if (!c.ok() && first_error_.empty()) {
        first_error_ = "NBD_CMD_READ at byte " + std::to_string(offset) + " of volume \"" + options_.volume_name +
                       "\" failed: " + client::describe_nbd_error(c.error) + (c.message.empty() ? "" : ": " + c.message);
      }
    });
    emit_ready();
  }
  while (window_.in_flight() > 0) {
    window_.reap_one();
    if (first_error_.empty()) emit_ready();
  }
  if (first_error_.empty()) emit_ready();
}

void ImageExporter::emit(Chunk& chunk) {
  const std::size_t i = chunk.index;
  const std::uint64_t offset = chunk_offset(i);
  const std::size_t length = chunk_length(i);
  if (!chunk.slot) {
    zero_chunk_[i] = 1;
    stats_.skipped_bytes += length;
    if (!regular_) {
      if (zeros_.empty()) zeros_.assign(chunk_, std::byte{0});
      write_out(offset, std::span<const std::byte>(zeros_).first(length));
    }
    return;
  }
  const auto buffer = window_.slot(*chunk.slot).first(length);
  fingerprints_[i] = fingerprint(buffer);
  zero_chunk_[i] = is_zero(buffer) ? 1 : 0;
  stats_.data_bytes += length;
  if (!regular_) {
    write_out(offset, buffer);
  } else {
    for (const Run& run : split_runs(buffer, kZeroGranule)) {
      if (run.zero) {
        stats_.skipped_bytes += run.length;
      } else {
        write_out(offset + run.offset, buffer.subspan(run.offset, run.length));
      }
    }
  }
  window_.release(*chunk.slot);
  chunk.slot.reset();
}

void ImageExporter::write_out(std::uint64_t offset, std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = regular_ ? ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done))
                               : ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("writing " + options_.output_name + " at byte " + std::to_string(offset + done) +
                               ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

void ImageExporter::verify() {
  // Read back through a descriptor of our own: the output may be write-only (stdout
  // redirected to a file by the shell, for one).
  const std::string self = "/proc/self/fd/" + std::to_string(fd_);
  common::UniqueFd in(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) {
    throw std::runtime_error("verification failed: cannot reopen " + options_.output_name + " for reading: " +
                             std::strerror(errno));
  }
  Progress progress("verifying " + options_.output_name, size_, options_.progress);
  std::vector<std::byte> buffer(chunk_);
  for (std::size_t i = 0; i < fingerprints_.size(); ++i) {
    const std::uint64_t offset = chunk_offset(i);
    const std::size_t length = chunk_length(i);
    progress.update(offset);
    if (zero_chunk_[i] && is_hole(in.get(), offset, length)) continue;  // reads as zeroes
    auto view = std::span(buffer).first(length);
    std::size_t done = 0;
    while (done < length) {
      const ssize_t n = ::pread(in.get(), view.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        throw std::runtime_error("verification failed: cannot read " + options_.output_name + " back at byte " +
                                 std::to_string(offset + done) + (n < 0 ? ": " + std::string(std::strerror(errno)) : ": short file"));
      }
      done += static_cast<std::size_t>(n);
    }
    const bool same = zero_chunk_[i] ? is_zero(view) : fingerprint(view) == fingerprints_[i];
    if (!same) throw std::runtime_error(locate_difference(i, view));
  }
  progress.update(size_);
  progress.finish();
  stats_.verified = true;
}

std::string ImageExporter::locate_difference(std::size_t chunk, std::span<const std::byte> in_file) {
  const std::uint64_t offset = chunk_offset(chunk);
  std::vector<std::byte> on_volume(in_file.size());
  nbd_.read(offset, on_volume);
  const std::size_t at = first_difference(in_file, on_volume);
  const std::string prefix = "verification failed: " + options_.output_name + " differs from volume \"" +
                             options_.volume_name + "\"";
  if (at == in_file.size()) {
    return prefix + " in the " + common::format_size(in_file.size()) + " at byte " + std::to_string(offset) +
           " (the volume changed during the export?)";
  }
  char detail[96];
  std::snprintf(detail, sizeof detail, " (0x%02x in the file, 0x%02x on the volume)",
                static_cast<unsigned>(in_file[at]), static_cast<unsigned>(on_volume[at]));
  return prefix + " at byte " + std::to_string(offset + at) + detail;
}

}  // namespace blockd::tools
