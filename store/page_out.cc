#include "store/page_out.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "chunker/types.h"

namespace wavefs {
namespace {

uint64_t OffsetOf(uint32_t slot) {
  return static_cast<uint64_t>(slot) * kChunkSize;
}

// What a segment's seal is bound to: its place in the file.
uint64_t UnitOf(uint32_t slot, uint32_t segment) {
  return static_cast<uint64_t>(slot) * 64 + segment;
}

}  // namespace

PageOut::PageOut(std::string dir, size_t slots) : dir_(std::move(dir)) {
  // Taken from the back: slot 0 first, and freed slots (whose pages are
  // likely still in the page cache) before slots never used.
  for (size_t i = slots; i > 0; --i)
    free_.push_back(static_cast<uint32_t>(i - 1));
}

PageOut::~PageOut() {
  if (fd_ >= 0) ::close(fd_);
}

bool PageOut::OpenFileLocked() {
  if (fd_ >= 0) return true;
  if (failed_) return false;
  int fd = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    // No O_TMPFILE here: a named file, unlinked at once.
    std::string name = dir_ + "/.page-out.XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(name.c_str());
  }
  if (fd < 0) {
    failed_ = true;
    spdlog::warn(
        "cannot create the page-out file in {}: {}; evicted buffers are "
        "sealed as chunks instead",
        dir_, std::strerror(errno));
    return false;
  }
  fd_ = fd;
  return true;
}

std::optional<uint32_t> PageOut::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty() || !OpenFileLocked()) return std::nullopt;
  const uint32_t slot = free_.back();
  free_.pop_back();
  in_use_ += 1;
  return slot;
}

void PageOut::Free(uint32_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(slot);
  in_use_ -= 1;
  if (in_use_ == 0 && fd_ >= 0) {
    // Nothing paged out: give the disk space back.
    if (::ftruncate(fd_, 0) != 0)
      spdlog::warn("cannot truncate the page-out file: {}",
                   std::strerror(errno));
  }
}

Status PageOut::Write(uint32_t slot, const uint8_t* buf, Segments which,
                      Seals* seals) {
  static_assert(kChunkSize / kSegmentSize == 64);
  Seals out = *seals;
  // Encrypted into a bounce buffer: the caller's plaintext stays as it is.
  thread_local std::vector<uint8_t> bounce(kSegmentSize);
  uint64_t bytes = 0;
  for (uint32_t s = 0; s < 64; ++s) {
    if (!(which & (Segments{1} << s))) continue;
    const uint64_t at = s * kSegmentSize;
    out[s] =
        cipher_.Seal(UnitOf(slot, s), buf + at, bounce.data(), kSegmentSize);
    size_t done = 0;
    while (done < kSegmentSize) {
      const ssize_t n = ::pwrite(fd_, bounce.data() + done, kSegmentSize - done,
                                 OffsetOf(slot) + at + done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return Status::FromErrno(n < 0 ? errno : ENOSPC,
                                 "write the page-out file in " + dir_);
      done += static_cast<size_t>(n);
    }
    bytes += kSegmentSize;
  }
  *seals = out;
  std::lock_guard<std::mutex> lock(mu_);
  bytes_written_ += bytes;
  return Status::Ok();
}

Status PageOut::Read(uint32_t slot, const Seals& seals, Segments which,
                     uint8_t* buf) {
  uint64_t bytes = 0;
  for (uint32_t s = 0; s < 64;) {
    if (!(which & (Segments{1} << s))) {
      ++s;
      continue;
    }
    // A run of wanted segments: one read.
    uint32_t e = s;
    while (e < 64 && (which & (Segments{1} << e))) ++e;
    const uint64_t at = s * kSegmentSize;
    const uint64_t len = (e - s) * kSegmentSize;
    uint64_t done = 0;
    while (done < len) {
      const ssize_t n =
          ::pread(fd_, buf + at + done, len - done, OffsetOf(slot) + at + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return Status::FromErrno(errno, "read the page-out file in " + dir_);
      if (n == 0)
        return Status::Error(Code::kIo, "the page-out file in " + dir_ +
                                            " is shorter than a slot");
      done += static_cast<uint64_t>(n);
    }
    for (uint32_t i = s; i < e; ++i) {
      if (!cipher_.Open(UnitOf(slot, i), seals[i], buf + i * kSegmentSize,
                        kSegmentSize))
        return Status::Error(Code::kCorrupt, "a paged-out buffer in " + dir_ +
                                                 " does not verify");
    }
    bytes += len;
    s = e;
  }
  std::lock_guard<std::mutex> lock(mu_);
  bytes_read_ += bytes;
  return Status::Ok();
}

size_t PageOut::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

uint64_t PageOut::bytes_written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_written_;
}

uint64_t PageOut::bytes_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_read_;
}

}  // namespace wavefs
