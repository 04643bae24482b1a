#include "fs/page_out.h"

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

}  // namespace

PageOut::PageOut(std::string dir, size_t slots)
    : dir_(std::move(dir)), slots_(slots), allocated_(slots, false) {
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

std::optional<PageOut::Slot> PageOut::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty() || !OpenFileLocked()) return std::nullopt;
  Slot s;
  s.index = free_.back();
  free_.pop_back();
  s.fresh = !allocated_[s.index];
  allocated_[s.index] = true;
  in_use_ += 1;
  return s;
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
    allocated_.assign(slots_, false);
  }
}

Result<PageSeal> PageOut::Write(uint32_t slot, uint8_t* buf, uint32_t len) {
  const PageSeal seal = cipher_.Seal(slot, buf, len);
  uint64_t done = 0;
  while (done < len) {
    const ssize_t n =
        ::pwrite(fd_, buf + done, len - done, OffsetOf(slot) + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status st = Status::FromErrno(n < 0 ? errno : ENOSPC,
                                    "write the page-out file in " + dir_);
      // Ours, so it opens: the caller keeps the buffer.
      cipher_.Open(slot, seal, buf, len);
      return st;
    }
    done += static_cast<uint64_t>(n);
  }
  std::lock_guard<std::mutex> lock(mu_);
  page_outs_ += 1;
  return seal;
}

Status PageOut::Read(uint32_t slot, const PageSeal& seal, uint8_t* buf,
                     uint32_t len) {
  uint64_t done = 0;
  while (done < len) {
    const ssize_t n =
        ::pread(fd_, buf + done, len - done, OffsetOf(slot) + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::FromErrno(errno, "read the page-out file in " + dir_);
    if (n == 0)
      return Status::Error(Code::kIo, "the page-out file in " + dir_ +
                                          " is shorter than a slot");
    done += static_cast<uint64_t>(n);
  }
  if (!cipher_.Open(slot, seal, buf, len))
    return Status::Error(Code::kCorrupt,
                         "a paged-out buffer in " + dir_ + " does not verify");
  std::lock_guard<std::mutex> lock(mu_);
  page_ins_ += 1;
  return Status::Ok();
}

size_t PageOut::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

uint64_t PageOut::page_outs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return page_outs_;
}

uint64_t PageOut::page_ins() const {
  std::lock_guard<std::mutex> lock(mu_);
  return page_ins_;
}

}  // namespace wavefs
