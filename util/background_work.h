// Daemon threads at work that no caller waits for: uploads to the store,
// their completion, the dispatcher's looks at the upload queue, and the
// FUSE watchdog while it ticks. The FUSE receiver's look at the CPUs
// (fs/fuse_loop.h) leaves them out, so that a program working through
// small files keeps the polling that spares it a wake-up per request while
// the uploads of its earlier files run beside it: they can wait, the
// program cannot. (Counted in, they turned polling off for most of a
// `tar -x` into a fresh store: 5.3-6.7 s against 4.2-4.7 s.)
#pragma once

#include <atomic>

namespace wavefs {

class BackgroundWork {
 public:
  // Threads inside a Scope now (running, or blocked on the disk or the
  // network: the count may exceed the runnable ones).
  static int Running() { return running_.load(std::memory_order_relaxed); }

  // Counts the calling thread for its lifetime.
  class Scope {
   public:
    Scope() { running_.fetch_add(1, std::memory_order_relaxed); }
    ~Scope() { running_.fetch_sub(1, std::memory_order_relaxed); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

 private:
  static inline std::atomic<int> running_{0};
};

}  // namespace wavefs
