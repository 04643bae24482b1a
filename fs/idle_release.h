// IdleRelease: gives the chunk buffers that reads and writes kept idle back
// to the system once nobody has used them for `after`.
//
// Both sides keep the 4 MiB buffers they stop using (mapping and faulting
// in a buffer again costs more than reusing it), and before this nothing
// took them back while the mount was idle: after a big copy the daemon
// held its write buffers (28 MiB at the default --memory-limit) for as
// long as it stayed mounted, and after a read the cached chunks. Every
// after/2 a thread asks every holder of chunk slots (store/chunk_slots.h)
// to unmap what it has kept idle for `after` (wiped first: they held
// plaintext), then returns the heap's free pages (malloc_trim). A
// buffer in use, or reused within `after`, stays. after == 0: no thread,
// nothing given back. Construct after the holders registered; destroy
// before them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "store/chunk_slots.h"

namespace wavefs {

class IdleRelease {
 public:
  IdleRelease(ChunkSlots* slots, std::chrono::milliseconds after);
  ~IdleRelease();
  IdleRelease(const IdleRelease&) = delete;
  IdleRelease& operator=(const IdleRelease&) = delete;
  // Buffers given back so far (stats).
  uint64_t released() const { return released_.load(); }

 private:
  void Loop();
  ChunkSlots* const slots_;
  const std::chrono::milliseconds after_;
  std::atomic<uint64_t> released_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // under mu_
  std::thread thread_;
};

}  // namespace wavefs
