#include "store/buffer_pool.h"

#include <sodium.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>

namespace wavefs {

BufferPool::BufferPool(size_t capacity, size_t buffer_bytes)
    : capacity_(capacity < 1 ? 1 : capacity), buffer_bytes_(buffer_bytes) {}

size_t BufferPool::AllocatedBytes() const {
  return (buffer_bytes_ + 4095) / 4096 * 4096;
}

BufferPool::~BufferPool() {
  // The buffers held plaintext: wiped before they go back to the allocator
  // (cheap here, once per buffer; not on every Release, which would cost a
  // 4 MiB memset per chunk written).
  for (uint8_t* b : free_) {
    sodium_memzero(b, AllocatedBytes());
    std::free(b);
  }
}

void BufferPool::SetEvictCallback(std::function<bool()> evict) {
  std::lock_guard<std::mutex> lock(mu_);
  evict_ = std::move(evict);
}

uint8_t* BufferPool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!free_.empty()) {
      uint8_t* b = free_.back();
      free_.pop_back();
      return b;
    }
    if (allocated_ < capacity_) {
      ++allocated_;
      lock.unlock();
      // Page-aligned so staging can write it with O_DIRECT.
      const size_t bytes = AllocatedBytes();
      auto* b = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
      if (b == nullptr) std::abort();  // out of memory: nothing sane to do
      // Plaintext: never in a core dump, even if dumps are turned back on
      // (the daemon also makes itself non-dumpable).
      (void)::madvise(b, bytes, MADV_DONTDUMP);
      return b;
    }
    // Holders usually finish their chunk within milliseconds; evicting a
    // half-written buffer costs its writer a read-back and a second seal.
    if (cv_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return !free_.empty(); }))
      continue;
    auto evict = evict_;
    lock.unlock();
    const bool coming = evict && evict();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(coming ? 200 : 20),
                 [&] { return !free_.empty(); });
  }
}

void BufferPool::Release(uint8_t* buf) {
  if (buf == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(buf);
  }
  cv_.notify_one();
}

}  // namespace wavefs
