#include "store/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace wavefs {

BufferPool::BufferPool(size_t capacity, size_t buffer_bytes,
                       std::chrono::milliseconds evict_after)
    : capacity_(capacity < 1 ? 1 : capacity),
      buffer_bytes_(buffer_bytes),
      evict_after_(evict_after) {}

size_t BufferPool::AllocatedBytes() const {
  return (buffer_bytes_ + 4095) / 4096 * 4096;
}

BufferPool::~BufferPool() {
  // The buffers held plaintext: wiped before they go back to the allocator
  // (cheap here, once per buffer; not on every Release, which would cost a
  // 4 MiB memset per chunk written).
  for (auto& [b, since] : free_) FreeWiped(b);
  if (slots_ != nullptr) slots_->Give(free_.size());
}

void BufferPool::ShareSlots(ChunkSlots* slots) {
  slots_ = slots;
  slot_id_ = slots->AddHolder(
      [this](const ChunkSlots::Cutoffs& c) { ShedFree(c.reuse); });
}

void BufferPool::ShedFree(ChunkSlots::Clock::time_point cutoff) {
  std::vector<uint8_t*> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle = ChunkSlots::TakeIdle(free_, cutoff);
    allocated_ -= idle.size();
  }
  for (uint8_t* b : idle) FreeWiped(b);
  if (slots_ != nullptr && !idle.empty()) slots_->Give(idle.size());
}

void BufferPool::FreeWiped(uint8_t* b) const {
  WipeChunkBuffer(b, AllocatedBytes());
  std::free(b);
}

size_t BufferPool::allocated() {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_;
}

void BufferPool::SetEvictCallback(std::function<bool()> evict) {
  std::lock_guard<std::mutex> lock(mu_);
  evict_ = std::move(evict);
}

namespace {

constexpr size_t kHugePage = 2 << 20;

// Page-aligned so staging can write it with O_DIRECT, and aligned to 2 MiB
// with transparent huge pages asked for over its whole 2 MiB pieces (the
// few KiB of tags past 4 MiB stay in small pages). A 4 MiB buffer is then
// two pages instead of 1024: the kernel pins it for each O_DIRECT staging
// write in one step instead of 1024, and sealing's passes miss the TLB
// less. Measured on the 2-core dev VM (2026-12-07), a 1 GiB cp into a
// fresh local store until unmount, alternating rounds: 1.56-1.92 s of
// daemon CPU before (median 1.77, 15 rounds), 1.51-1.73 s after (median
// 1.58, 13 rounds); peak RSS 29.0-29.6 MiB before, 29.1-30.2 after. A
// buffer is resident in 2 MiB steps now, so a pool that only ever held
// small files is larger than before, never larger than full buffers. Where
// the kernel has no THP (or it is off) the advice fails and the buffer is
// in small pages, as before.
uint8_t* AllocateBuffer(size_t bytes) {
  const size_t align = bytes >= kHugePage ? kHugePage : 4096;
  void* p = nullptr;
  // posix_memalign, not aligned_alloc: bytes need not be a multiple of 2 MiB.
  if (::posix_memalign(&p, align, bytes) != 0 || p == nullptr)
    std::abort();  // out of memory: nothing sane to do
  auto* b = static_cast<uint8_t*>(p);
  if (bytes >= kHugePage)
    (void)::madvise(b, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
  return b;
}

}  // namespace

uint8_t* BufferPool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!free_.empty()) {
      uint8_t* b = free_.back().first;
      free_.pop_back();
      lock.unlock();
      if (slots_ != nullptr) slots_->Rebalance(slot_id_);
      return b;
    }
    if (allocated_ < capacity_) {
      ++allocated_;
      lock.unlock();
      // Room first: the read path's idle buffers go before this one maps.
      if (slots_ != nullptr) slots_->Take(slot_id_);
      const size_t bytes = AllocatedBytes();
      uint8_t* b = AllocateBuffer(bytes);
      // Plaintext: never in a core dump, even if dumps are turned back on
      // (the daemon also makes itself non-dumpable).
      (void)::madvise(b, bytes, MADV_DONTDUMP);
      return b;
    }
    // Holders usually finish their chunk within milliseconds; evicting a
    // half-written buffer costs its writer a page-out and a page-in. Each
    // of EvictNow's words ends one waiter's wait at once (the predicate
    // runs under the lock: a woken waiter that finds none left waits on).
    bool told = false;
    ++waiting_;
    cv_.wait_for(lock, evict_after_, [&] {
      if (!free_.empty()) return true;
      if (evict_now_ == 0) return false;
      --evict_now_;
      told = true;
      return true;
    });
    --waiting_;
    // Never more words than waiters: one left over would make a later
    // Acquire evict without waiting.
    evict_now_ = std::min(evict_now_, waiting_);
    if (!free_.empty()) continue;
    if (told) ++early_evictions_;
    auto evict = evict_;
    lock.unlock();
    const bool coming = evict && evict();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(coming ? 200 : 20),
                 [&] { return !free_.empty(); });
  }
}

bool BufferPool::EvictNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // One word per waiter at most: words left over would make later
    // Acquires evict without waiting.
    if (waiting_ <= evict_now_) return false;
    ++evict_now_;
  }
  cv_.notify_all();
  return true;
}

size_t BufferPool::waiting() {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

uint64_t BufferPool::early_evictions() {
  std::lock_guard<std::mutex> lock(mu_);
  return early_evictions_;
}

void BufferPool::Release(uint8_t* buf) {
  if (buf == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(buf, ChunkSlots::Clock::now());
  }
  cv_.notify_one();
}

}  // namespace wavefs
