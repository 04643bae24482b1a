// ChunkSlots: one budget of chunk-sized buffers shared by the write path
// (BufferPool's dirty buffers) and the read path (ChunkReader's fetch
// buffers, cached or kept for reuse).
//
// Each side keeps buffers it no longer uses, because mapping and faulting in
// 4 MiB again costs more than reusing it. Without a shared budget those idle
// buffers add up: a read leaves the reader's buffers resident, and eight
// writers afterwards took their seven write buffers on top (64 MiB peak
// instead of 45 on a fresh mount, 2026-12-07). Here a holder that needs one
// more buffer than the budget allows first makes the other holders give back
// the buffers they keep idle.
//
// A holder takes a slot for every buffer it maps (Take) and gives it back
// when the buffer is unmapped (Give). Take never blocks and never fails: a
// buffer the other holders cannot make room for is taken anyway (an
// overdraft; readers in flight are bounded by the FUSE and prefetch
// threads), and Over() then tells a holder to unmap buffers it would
// otherwise keep. Thread-safe; holders register before the first Take.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <vector>

namespace wavefs {

class ChunkSlots {
 public:
  explicit ChunkSlots(size_t total) : total_(total < 1 ? 1 : total) {}
  // Registers a holder whose `shed` unmaps every buffer it keeps idle
  // (calling Give for each). Returns the holder's id for Take.
  int AddHolder(std::function<void()> shed);
  // One more buffer for holder `id`. Past the total, the other holders shed
  // their idle buffers first (none of the caller's locks may be held that a
  // holder's shed takes). Returns false when the buffer is still past the
  // total: it is taken anyway.
  bool Take(int id);
  void Give(size_t n = 1);
  // More buffers are mapped than the budget: drop a buffer instead of
  // keeping it idle.
  bool Over() const { return used_.load() > total_; }
  size_t total() const { return total_; }
  size_t used() const { return used_.load(); }
  size_t peak() const { return peak_.load(); }
  uint64_t sheds() const { return sheds_.load(); }

 private:
  const size_t total_;
  std::atomic<size_t> used_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<uint64_t> sheds_{0};
  std::vector<std::function<void()>> holders_;
};

}  // namespace wavefs
