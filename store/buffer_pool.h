// BufferPool: the fixed set of chunk-sized buffers that dirty file data
// lives in. Each buffer holds one chunk's plaintext plus room for the tag,
// so sealing happens in place. The pool never holds more than `capacity`
// buffers: this is what bounds write memory, whatever the file sizes.
//
// Acquire blocks while every buffer is in use. When none came back within
// `evict_after` (50 ms) it calls the evict callback (without the pool lock
// held), which should start sealing some dirty buffer so it comes back, or
// return true when buffers are on their way back anyway. EvictNow makes a
// waiting Acquire call it at once, for a caller that knows waiting will
// bring no buffer back (the daemon: fs/write_pipeline.h, Unstick).
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "store/chunk_slots.h"

namespace wavefs {

class BufferPool {
 public:
  BufferPool(size_t capacity, size_t buffer_bytes,
             std::chrono::milliseconds evict_after = kEvictAfter);
  static constexpr std::chrono::milliseconds kEvictAfter{50};
  ~BufferPool();
  // evict returns true when it started freeing a buffer.
  void SetEvictCallback(std::function<bool()> evict);
  // Shares `slots` with the read path (store/chunk_slots.h): a new buffer
  // takes a slot, and the buffers kept free are unmapped when a reader
  // needs room. Before the first Acquire.
  void ShareSlots(ChunkSlots* slots);
  // Unmaps the buffers kept free since before cutoff (wiped first); the
  // slots' shed.
  void ShedFree(ChunkSlots::Clock::time_point cutoff);
  size_t allocated();
  uint8_t* Acquire();
  // When an Acquire is waiting for a buffer: one of them stops waiting
  // and calls the evict callback now. Returns whether one
  // was waiting (none: nothing happens, and a later Acquire waits as
  // usual).
  bool EvictNow();
  // Times an Acquire evicted at EvictNow's word rather than after
  // evict_after (stats).
  uint64_t early_evictions();
  // Acquires waiting for a buffer now (tests).
  size_t waiting();
  void Release(uint8_t* buf);
  size_t capacity() const { return capacity_; }
  size_t buffer_bytes() const { return buffer_bytes_; }

 private:
  size_t AllocatedBytes() const;  // buffer_bytes_ rounded up to pages
  // Wipes a buffer (it held plaintext) and gives it back to the allocator.
  void FreeWiped(uint8_t* b) const;
  const size_t capacity_;
  const size_t buffer_bytes_;
  const std::chrono::milliseconds evict_after_;
  std::mutex mu_;
  std::condition_variable cv_;
  // Free buffers and when each came back; the most recent last (reused
  // first, so the oldest are the idle ones).
  std::vector<std::pair<uint8_t*, ChunkSlots::Clock::time_point>> free_;
  size_t allocated_ = 0;
  std::function<bool()> evict_;
  size_t waiting_ = 0;    // Acquires waiting for a buffer
  size_t evict_now_ = 0;  // EvictNow's words not yet taken by a waiter
  uint64_t early_evictions_ = 0;
  ChunkSlots* slots_ = nullptr;
  int slot_id_ = -1;
};

}  // namespace wavefs
