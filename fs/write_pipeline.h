// WritePipeline: the write path from FUSE write to a staged, queued chunk.
//
// A write lands in the dirty buffer of its (inode, chunk index); BufferPool
// bounds how many exist. A buffer whose chunk is complete, or one evicted
// because the pool ran dry, goes to the sealer threads: seal in place, stage
// the ciphertext in the spill (skipped when the address is known: dedup),
// queue it for upload, and record the ref as the file's pending ref. Staging
// reserves its bytes of spill space first, so writers that stage at once
// cannot all pass one free-space check.
//
// Truncates and hole punches that cut a chunk while its seal is in flight
// mark it in OpenFile::discard: the seal's result is thrown away, so a cut
// chunk never comes back.
//
// Thread safety: thread-safe. Methods taking `lock` need f->mu held through
// it and may release it while waiting (for a seal, a buffer or spill space);
// callers re-check what they saw before.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fs/chunk_reader.h"
#include "fs/open_file.h"
#include "fs/tail_cache.h"
#include "store/buffer_pool.h"
#include "store/index.h"
#include "store/page_out.h"
#include "store/spill.h"
#include "store/uploader.h"

namespace wavefs {

// Test-only seams that force an interleaving; empty in production.
struct FsHooks {
  // AcquireDirty, while f->mu is released before bringing a chunk in.
  std::function<void(uint64_t ino, uint64_t index)> acquire_unlocked;
  // ChunkReader::ReadFile, after f->mu is released to fetch a chunk.
  std::function<void(uint64_t ino, uint64_t index)> read_unlocked;
  // A seal thread, after staging and before recording the ref.
  std::function<void(uint64_t ino, uint64_t index)> seal_before_record;
  // A seal thread, after a buffer was written to the page-out file and
  // before it is recorded as paged out (store/page_out.h).
  std::function<void(uint64_t ino, uint64_t index)> page_out_written;
  // A page-out, before its write: a non-ok status fails it as a full
  // spill or an I/O error would (the buffer is then sealed instead).
  std::function<Status(uint64_t ino, uint64_t index)> page_out_fault;
  // SealAll, with f->mu held, before it waits for the page-outs of f in
  // flight (the wait releases f->mu). Must not block.
  std::function<void(uint64_t ino)> seal_all_page_wait;
  // SealAll (every flush, fsync and close), with f->mu held, after sealing
  // its own dirty buffers and before waiting for the seals it awaits; the
  // wait releases f->mu. Must not block.
  std::function<void(uint64_t ino)> seal_all_wait;
  // A write, cut or fallocate about to wait for a commit of its file that
  // is sealing (OpenFile::commits), with f->mu held. Must not block.
  std::function<void(uint64_t ino)> change_waits;
  // Staging a chunk: a non-ok status fails the stage (fault injection).
  std::function<Status(const Address&)> stage_fault;
  // The spill's free bytes as WritePipeline sees them (a simulated disk);
  // unset: Spill::FreeBytes.
  std::function<Result<uint64_t>()> spill_free_bytes;
  // WaitForSpace, on entry and before taking the space lock (reserve: a
  // seal thread about to stage; else a writer about to take a buffer).
  std::function<void(uint64_t bytes, bool reserve)> space_check;
  // WaitForSpace, after each look at the free space, with space_mu_ held
  // (must not block): whether the bytes fit (and, with reserve, are now
  // reserved).
  std::function<void(uint64_t bytes, bool reserve, bool fits)> space_checked;
  // The clock WaitForSpace measures --space-wait (and how long no upload
  // could free space) by; unset: std::chrono::steady_clock. A test clock
  // makes "waited longer than --space-wait" independent of how fast the
  // machine is. WaitForSpace still looks again at least every 500 ms.
  std::function<std::chrono::steady_clock::time_point()> space_now;
  // The clock the tail journal's hold is measured by (fs/tail_journal.h):
  // when a file became hot, whether a file was committed within the hold,
  // and when the journal's thread cools a file; unset:
  // std::chrono::steady_clock. A test clock makes "the hold is over" a
  // step of the test, not a race with the machine's speed; the journal's
  // thread then looks every 10 ms. (A held chunk's end in the index,
  // store/index.h, stays on real time.)
  std::function<std::chrono::steady_clock::time_point()> hold_now;
  // After an upload freed spill space and the waiting writers were woken
  // (from the uploader's thread, holding no lock of the pipeline).
  std::function<void()> space_freed;
  // StageCiphertext, around Spill::Stage: after the reservation was made,
  // and after the file is in (before the reservation is dropped). A non-ok
  // status from stage_begin fails the stage as a full disk would.
  std::function<Status(const Address&, uint64_t bytes)> stage_begin;
  std::function<void(const Address&, uint64_t bytes)> stage_end;
  // Namespace::Commit, after the edit is built and before it is applied.
  std::function<void()> ns_before_commit;
  // Namespace::Commit: a non-ok status fails the index write.
  std::function<Status()> ns_commit_fault;
};

// Where a write's bytes come from. A FUSE write arrives either in memory or,
// spliced by libfuse, still in a pipe (fs/fuse_ops.cc); the pipeline copies
// it from there straight into the dirty buffer, so each byte is copied once
// in user space.
class WriteSource {
 public:
  virtual ~WriteSource() = default;
  // Copies the next n bytes into dst; returns how many it could (fewer only
  // when the source failed or ran dry).
  virtual size_t CopyTo(uint8_t* dst, size_t n) = 0;
};

class MemorySource final : public WriteSource {
 public:
  explicit MemorySource(const char* data) : next_(data) {}
  size_t CopyTo(uint8_t* dst, size_t n) override {
    std::memcpy(dst, next_, n);
    next_ += n;
    return n;
  }

 private:
  const char* next_;
};

struct WriteOptions {
  size_t dirty_buffers = 4;
  size_t max_buffers_per_file = 3;
  int seal_threads = 2;
  ChunkFormat chunk_format = kNewestChunkFormat;
  uint64_t spill_reserve_bytes = 64ull << 20;
  std::chrono::seconds space_wait{60};
  uint64_t index_stage_max = 0;  // FsOptions::index_stage_max
  uint64_t index_stage_cap = 0;
  std::chrono::milliseconds hot_tail_hold{0};  // FsOptions::hot_tail_hold
  // fs/tail_cache.h: plaintext of sealed tails kept for the next append
  // (in all, and per chunk).
  size_t tail_cache_bytes = 1 << 20;
  size_t tail_cache_entry = 256 << 10;
  // Buffers of files written all over that may wait paged out at once
  // (store/page_out.h; FsOptions::page_out_slots). 0: evicted buffers are
  // sealed as chunks.
  size_t page_out_slots = 0;
  // How long a write waits for a pool buffer before it evicts one
  // (store/buffer_pool.h; FsOptions::buffer_evict_after).
  std::chrono::milliseconds buffer_evict_after = BufferPool::kEvictAfter;
};

class WritePipeline {
 public:
  WritePipeline(Index* index, Spill* spill, Uploader* uploader,
                OpenFileTable* files, ChunkReader* reader, const Secret& secret,
                WriteOptions options, const FsHooks* hooks);
  // Write buffers and the read path's share one budget
  // (store/chunk_slots.h). Before the first write.
  void ShareSlots(ChunkSlots* slots) { pool_.ShareSlots(slots); }
  size_t pool_buffers() { return pool_.allocated(); }
  // Nothing will bring a write buffer back by waiting: every FUSE worker
  // is held up (fs/fuse_loop.h, FuseLoopOptions::saturated), many of them
  // in a write that waits for a buffer, while the files holding the
  // buffers have their next writes in the kernel's queue with no worker
  // to take them. A write waiting for a buffer then pages the least
  // recently written one out at once instead of after the pool's 50 ms
  // (more files written at once than --fuse-max-threads: 2 GiB by 128
  // writers took 12.1-13.3 s until unmount instead of 3.7-4.7 s by 8-32
  // writers, the CPUs idle half of it; 8.6-9.3 s with this). Returns
  // whether a write was waiting.
  bool Unstick() { return pool_.EvictNow(); }
  uint64_t early_evictions() { return pool_.early_evictions(); }
  ~WritePipeline();

  // Copies size bytes from src into f's dirty buffers; a short count when
  // a later chunk could not be brought in or src ran dry. Marks h as a
  // writer of f. writeback: the kernel's writeback sent the bytes (pages
  // of its cache, not an application's write; OpenFile::Dirty::in_order).
  Result<size_t> Write(OpenFile* f, FileHandle* h,
                       std::unique_lock<std::mutex>& lock, uint64_t offset,
                       WriteSource* src, size_t size, bool writeback = false);
  // Makes chunk index of f a dirty buffer holding its current content
  // (copy-on-write). May release the lock while waiting.
  // need: the 64 KiB segments (OpenFile::Dirty::SegmentMask) that must be
  // in the buffer on return, for a chunk that was paged out
  // (store/page_out.h); the others may stay in its slot until needed.
  // write_end: where in the chunk the caller's write ends (0: not a write).
  // A new buffer waits for spill room for a whole chunk first (the
  // writers' back-pressure), except a file's first chunk that will still
  // be staged in the index (StagesInIndex): a small file goes in while a
  // big writer waits for uploads. The write that takes such a buffer past
  // that size waits then.
  Status AcquireDirty(OpenFile* f, uint64_t index,
                      std::unique_lock<std::mutex>& lock, uint64_t need = ~0ull,
                      uint32_t write_end = 0);
  // Seals every dirty buffer of f in this thread, then waits for every seal
  // of f that was in flight. Seals started meanwhile by other writers are
  // theirs to wait for.
  void SealAll(OpenFile* f, std::unique_lock<std::mutex>& lock);
  // Forgets chunks [first, end) of f's buffers and pending refs, and
  // discards seals in flight for them. Needs f->mu.
  void ForgetChunks(OpenFile* f, uint64_t first, uint64_t end);
  // Hands every dirty buffer of f to the sealer threads (tests).
  void SubmitAll(OpenFile* f, std::unique_lock<std::mutex>& lock);
  // Returns f's buffers to the pool (its last unpin). Needs f->mu.
  void ReleaseBuffers(OpenFile* f);
  // How often a chunk brought into a dirty buffer came from the tail cache
  // instead of the spill or the store.
  uint64_t tail_cache_hits() const { return tails_.hits(); }
  // Buffers written to and read back from the page-out file, and how many
  // wait there now.
  uint64_t page_outs() const { return page_outs_.load(); }
  uint64_t page_ins() const { return page_ins_.load(); }
  uint64_t page_bytes_written() const { return pages_.bytes_written(); }
  uint64_t page_bytes_read() const { return pages_.bytes_read(); }
  size_t page_slots_used() const { return pages_.in_use(); }
  // A commit of ino went into the index: a small chunk sealed for it
  // within hot_tail_hold from now is held (store/index.h, "Held chunks").
  void NoteCommit(uint64_t ino);
  // Whether ino was committed within hot_tail_hold (NoteCommit): a file
  // written again soon after a close (a log), not one written once.
  bool RecentlyCommitted(uint64_t ino) { return HoldFor(ino).count() > 0; }
  // Now on the hold's clock (FsHooks::hold_now).
  std::chrono::steady_clock::time_point HoldNow() const;
  // Removes the spill files of held chunks the index dropped (a failure
  // leaves a stray file, which the next mount's recovery removes) and
  // wakes writers waiting for spill space.
  void DiscardStaged(const std::vector<Address>& addresses);

 private:
  struct SealJob {
    std::shared_ptr<OpenFile> file;
    uint64_t index = 0;
    uint8_t* buf = nullptr;
    uint32_t len = 0;
    // Evicted before the file was done with it: likely written and
    // sealed again before the file's commit, so its chunk is held.
    bool early = false;
    // Page the buffer out to its slot instead (store/page_out.h).
    bool page_out = false;
    OpenFile::Dirty dirty;  // the entry as it was taken (slot, masks)
  };
  // Takes a buffer for a seal, or with page_out for a page-out (a seal
  // first brings in what is only in the chunk's slot, and frees the slot).
  SealJob TakeForSeal(OpenFile* f, uint64_t index, bool page_out = false);
  void SubmitSeal(OpenFile* f, uint64_t index, bool early = false);
  // Makes room by sending a buffer of f away: paged out where a slot is
  // free and no commit of f is in progress, else sealed early. Needs f->mu.
  void Evict(OpenFile* f, uint64_t index);
  void Enqueue(SealJob job);
  // A sealer thread's work for a job with a slot: false when the buffer
  // could not be written there (no space to spare, an I/O error), and the
  // job is then to be sealed as a chunk.
  bool PageOutJob(SealJob& job);
  // Reads the segments of need that d has only in its slot. Needs f->mu.
  Status Fill(OpenFile* f, OpenFile::Dirty& d, uint64_t need);
  // Frees what a dirty entry holds: its buffer or its page-out slot.
  void FreeDirty(OpenFile* f, OpenFile::Dirty& d);
  void SealAndRecord(const SealJob& job);
  // gate: Index::ref_gate(), held shared; released while a fresh chunk is
  // staged and taken again before it is queued.
  // owner: the file slot it was sealed for (held when the file is hot).
  Status StageCiphertext(const Address& address, const uint8_t* data,
                         size_t len, std::shared_lock<std::shared_mutex>* gate,
                         const Index::StageOwner& owner);
  // How long to hold a small chunk sealed for ino now (0: not hot).
  std::chrono::steady_clock::duration HoldFor(uint64_t ino);
  // Waits until the spill has room for bytes more (plus the reserve and
  // every reservation of other stagers); with reserve, reserves them: the
  // check and the reservation are one step under space_mu_, so stagers
  // checking at once cannot all take the same free bytes. kNoSpace when no
  // upload can free space, or when space_wait passed without any upload
  // freeing space (each upload that frees some restarts the wait).
  Status WaitForSpace(uint64_t bytes, bool reserve);
  // Whether chunk `index` of f, holding f's bytes up to plain_end (or to
  // f's size, if larger), would seal small enough to be staged in the
  // index (StageCiphertext), which takes no spill space. Needs f->mu.
  bool StagesInIndex(const OpenFile* f, uint64_t index,
                     uint64_t plain_end) const;
  // Whether a chunk of `sealed` ciphertext bytes is staged in the index
  // now (index_stage_max, and room under index_stage_cap).
  bool FitsInIndex(uint64_t sealed) const;
  // Reserves bytes of spill space if they fit now; never waits.
  bool TryReserve(uint64_t bytes);
  Result<uint64_t> FreeBytes() const;
  std::chrono::steady_clock::time_point SpaceNow() const;
  void Unreserve(uint64_t bytes);
  // Spill space came back (an upload, a dropped chunk): wakes the writers
  // waiting for it, and counts as progress for --space-wait.
  void NoteSpaceFreed();
  bool EvictOne();
  void SealerLoop();

  Index* index_;
  Spill* spill_;
  Uploader* uploader_;
  OpenFileTable* files_;
  ChunkReader* reader_;
  const Secret secret_;
  const WriteOptions options_;
  const FsHooks* hooks_;
  BufferPool pool_;
  TailCache tails_;
  PageOut pages_;

  std::mutex seal_mu_;
  std::condition_variable seal_cv_;
  std::deque<SealJob> seal_queue_;
  bool stopping_ = false;  // under seal_mu_
  std::vector<std::thread> sealers_;
  std::atomic<int> seals_in_flight_{0};
  std::atomic<uint64_t> clock_{0};  // orders writes for LRU eviction
  std::atomic<uint64_t> page_outs_{0};
  std::atomic<uint64_t> page_ins_{0};

  // Inodes committed lately and when (NoteCommit): a leaf lock.
  std::mutex hot_mu_;
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point>
      last_commit_;

  std::mutex space_mu_;
  std::condition_variable space_cv_;
  // A leaf lock (see the lock order in fs/open_file.h).
  uint64_t space_epoch_ = 0;     // under space_mu_: bumped on any change
  uint64_t freed_epoch_ = 0;     // under space_mu_: bumped by the uploader
  uint64_t reserved_bytes_ = 0;  // under space_mu_: staged soon
};

}  // namespace wavefs
