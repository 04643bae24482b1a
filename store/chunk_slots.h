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
// when the buffer is unmapped (Give). Only buffers idle long enough are
// shed, and how long depends on what a buffer is kept for:
//   - a cached chunk (data a reader may come back to): `cached_idle`. A
//     reader and writers running at once each keep theirs (shedding them
//     at once made the reader fetch its prefetched chunk again and both
//     sides map and unmap a buffer per chunk: a 512 MiB read beside six
//     writers took twice as long);
//   - a buffer kept only to be reused (the reader's reuse list, the write
//     pool's free buffers): `reuse_idle`, much shorter. A side at work
//     reuses these within milliseconds; one that stopped a moment ago
//     holds them for nothing. With the cached chunks' second for them
//     too, eight writers started right after SQLite's reads mapped their
//     buffers beside the reader's idle ones and peaked at 70-72 MiB; with
//     100 ms, 62-64 (/var/tmp/tw/mem.sh, outside the repository,
//     2026-12-07), while a 512 MiB read beside six writers took as long as
//     before (0.82-0.86 s against 0.75-0.88 s, four alternating runs of
//     /var/tmp/tw/mixed.sh).
// Take never blocks and never fails: a buffer the other holders cannot
// make room for is taken anyway (an overdraft, as before the shared count:
// readers in flight are bounded by the FUSE and prefetch threads).
// Thread-safe; holders register before the first Take.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace wavefs {

// Zeroes the `n` bytes at `p` of a chunk buffer that is about to be unmapped
// (they held plaintext), touching only its pages that are resident. A
// write buffer is mapped whole, in 2 MiB huge pages, but a small file's
// fills only the first: wiping every byte faulted the second in just
// before the unmap, so a shed or the idle release raised the peak RSS by
// 2 MiB and spent a memset on memory nothing had written (measured
// 2026-12-07 with /var/tmp/tw/wipe.sh, outside the repository: VmHWM 22.3
// -> 24.2 MiB at the idle release after six small files, level now).
// Pages that are not resident hold nothing: never written, or (with swap)
// written out to swap before the wipe, as any page of the daemon may be.
void WipeChunkBuffer(void* p, size_t n);

class ChunkSlots {
 public:
  using Clock = std::chrono::steady_clock;
  ChunkSlots(size_t total, std::chrono::milliseconds cached_idle,
             std::chrono::milliseconds reuse_idle)
      : total_(total < 1 ? 1 : total),
        cached_idle_(cached_idle),
        reuse_idle_(reuse_idle) {}
  // What a shed unmaps: cached chunks idle since before `cached`, buffers
  // kept for reuse idle since before `reuse` (above).
  struct Cutoffs {
    Clock::time_point cached;
    Clock::time_point reuse;
  };
  // Registers a holder whose `shed(cutoffs)` unmaps the buffers it has
  // kept idle since before them (calling Give for each). Returns the
  // holder's id for Take.
  using Shed = std::function<void(const Cutoffs& cutoffs)>;
  int AddHolder(Shed shed);
  // One more buffer for holder `id`. Past the total, the other holders shed
  // their idle buffers first (none of the caller's locks may be held that a
  // holder's shed takes). Returns false when the buffer is still past the
  // total: it is taken anyway.
  bool Take(int id);
  // A buffer reused by holder `id`: while past the total (an overdraft
  // taken when the others' buffers were in recent use), the others shed
  // what has been idle long enough since. Cheap when within the total.
  void Rebalance(int id);
  void Give(size_t n = 1);
  size_t total() const { return total_; }
  size_t used() const { return used_.load(); }
  size_t peak() const { return peak_.load(); }
  // Times a holder's Take or Rebalance made the others unmap buffers.
  uint64_t sheds() const { return sheds_.load(); }
  // Every holder unmaps the buffers of either kind it has kept idle since
  // before cutoff (an idle mount giving memory back, fs/idle_release.h).
  // Returns how many slots were given back meanwhile (a guide: others may
  // come and go).
  size_t ShedIdle(Clock::time_point cutoff);

  // For a holder's shed: moves the items of `kept` (each with the time it
  // became idle) idle since before cutoff out, keeping the others' order.
  template <typename T>
  static std::vector<T> TakeIdle(
      std::vector<std::pair<T, Clock::time_point>>& kept,
      Clock::time_point cutoff) {
    std::vector<T> idle;
    size_t keep = 0;
    for (auto& entry : kept) {
      if (entry.second < cutoff)
        idle.push_back(std::move(entry.first));
      else
        kept[keep++] = std::move(entry);
    }
    kept.resize(keep);
    return idle;
  }

 private:
  const size_t total_;
  const std::chrono::milliseconds cached_idle_;
  const std::chrono::milliseconds reuse_idle_;
  std::atomic<size_t> used_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<uint64_t> sheds_{0};
  // Asks every holder but `id` to shed. One at a time:
  // a second taker waits until the first one's shed has unmapped what it
  // took, instead of finding the lists empty and mapping its buffer while
  // the first still wipes (8 writers starting at once peaked a buffer or
  // two above the count).
  void ShedOthers(int id);
  // Asks every holder but `except` (-1: none) to shed what has been idle
  // since before the cutoffs; returns the slots given back meanwhile.
  size_t ShedExcept(int except, const Cutoffs& cutoffs);
  std::mutex shed_mu_;
  std::vector<Shed> holders_;
};

}  // namespace wavefs
