#include "fs/idle_release.h"

#include <malloc.h>

#include <algorithm>

#include "store/thread_name.h"

namespace wavefs {

IdleRelease::IdleRelease(ChunkSlots* slots, std::chrono::milliseconds after)
    : slots_(slots), after_(after) {
  if (after_.count() > 0) thread_ = std::thread([this] { Loop(); });
}

IdleRelease::~IdleRelease() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void IdleRelease::Loop() {
  NameThisThread("wfs-idle");
  // A buffer idle for `after` goes within after * 1.5.
  const auto period = std::max<std::chrono::milliseconds>(
      after_ / 2, std::chrono::milliseconds(10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [&] { return stopping_; })) {
    lock.unlock();
    const size_t n = slots_->ShedIdle(ChunkSlots::Clock::now() - after_);
    if (n > 0) {
      released_.fetch_add(n);
      // What the buffers' bookkeeping and the requests around them left
      // free in the heap goes too.
      ::malloc_trim(0);
    }
    lock.lock();
  }
}

}  // namespace wavefs
