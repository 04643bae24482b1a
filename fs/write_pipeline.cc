#include "fs/write_pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>

#include "chunker/crypto.h"
#include "store/thread_name.h"

namespace wavefs {
namespace {

// Spill space is reserved in whole blocks.
constexpr uint64_t kSpaceBlock = 4096;
// How long "no upload can free space" must hold before it is an ENOSPC.
constexpr auto kHopelessAfter = std::chrono::milliseconds(200);

}  // namespace

WritePipeline::WritePipeline(Index* index, Spill* spill, Uploader* uploader,
                             OpenFileTable* files, ChunkReader* reader,
                             const Secret& secret, WriteOptions options,
                             const FsHooks* hooks)
    : index_(index),
      spill_(spill),
      uploader_(uploader),
      files_(files),
      reader_(reader),
      secret_(secret),
      options_(options),
      hooks_(hooks),
      pool_(options.dirty_buffers, kMaxCiphertextSize,
            options.buffer_evict_after),
      tails_(options.tail_cache_bytes, options.tail_cache_entry),
      pages_(spill->dir(), options.page_out_slots) {
  pool_.SetEvictCallback([this] { return EvictOne(); });
  reader_->SetPageIn([this](OpenFile* f, uint64_t index, uint64_t segments,
                            std::unique_lock<std::mutex>& lock) {
    return AcquireDirty(f, index, lock, segments);
  });
  uploader_->SetSpaceFreedCallback([this] {
    NoteSpaceFreed();
    if (hooks_ != nullptr && hooks_->space_freed) hooks_->space_freed();
  });
  for (int i = 0; i < std::max(1, options_.seal_threads); ++i)
    sealers_.emplace_back([this] {
      NameThisThread("wfs-seal");
      SealerLoop();
    });
}

WritePipeline::~WritePipeline() {
  {
    std::lock_guard<std::mutex> lock(seal_mu_);
    stopping_ = true;
  }
  seal_cv_.notify_all();
  for (auto& t : sealers_) t.join();
  uploader_->SetSpaceFreedCallback(nullptr);
}

void WritePipeline::FreeDirty(OpenFile* f, OpenFile::Dirty& d) {
  if (d.paged_out()) {
    f->paged_out -= 1;
  } else {
    pool_.Release(d.buf);
  }
  if (d.slotted) pages_.Free(d.page_slot);
  d.buf = nullptr;
  d.slotted = false;
}

void WritePipeline::ReleaseBuffers(OpenFile* f) {
  for (auto& [i, d] : f->dirty) FreeDirty(f, d);
  f->dirty.clear();
}

Result<size_t> WritePipeline::Write(OpenFile* f, FileHandle* h,
                                    std::unique_lock<std::mutex>& lock,
                                    uint64_t offset, WriteSource* src,
                                    size_t size, bool writeback) {
  if (!f->error.ok()) return f->error;
  f->write_gen += 1;
  if (h != nullptr) f->writers[h] = f->write_gen;
  uint64_t pos = offset;
  const uint64_t end = offset + size;
  while (pos < end) {
    const uint64_t idx = pos / kChunkSize;
    const uint32_t in = static_cast<uint32_t>(pos % kChunkSize);
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(kChunkSize - in, end - pos));
    Status st = AcquireDirty(f, idx, lock, 0, in + n);
    if (!st.ok()) {
      if (pos == offset) return st;
      break;  // a short write: what got in stays
    }
    // A chunk brought back from its page-out slot (store/page_out.h) reads
    // only the segments this write changes in part; those it overwrites
    // whole (or up to the chunk's new end) need not come back.
    auto& d = f->dirty.at(idx);
    const uint32_t lo = std::min(d.len, in);
    const uint64_t hi = in + n;
    uint64_t whole = 0;
    if (d.absent != 0) {
      for (uint64_t s = lo / kSegmentSize; s * kSegmentSize < hi; ++s) {
        const uint64_t s_end = (s + 1) * kSegmentSize;
        if (s * kSegmentSize >= lo && (s_end <= hi || hi >= d.len))
          whole |= 1ull << s;
      }
      st = Fill(f, d, OpenFile::Dirty::SegmentMask(lo, hi) & ~whole);
    }
    if (!st.ok()) {
      if (pos == offset) return st;
      break;  // a short write: what got in stays
    }
    whole &= d.absent;
    d.absent &= ~whole;
    d.touched = clock_.fetch_add(1);
    if (in > d.len) std::memset(d.buf + d.len, 0, in - d.len);
    const uint32_t got = static_cast<uint32_t>(src->CopyTo(d.buf + in, n));
    d.MarkChanged(lo, in + got);
    d.Log(in, in + got);
    if (got < n && (whole & OpenFile::Dirty::SegmentMask(in + got, hi))) {
      // Segments taken as overwritten whole were not: what they held is
      // no longer anywhere. Fail the file's next commit rather than keep
      // those bytes wrong.
      if (f->error.ok())
        f->error = Status::Error(Code::kIo, "a write's data could not be read");
    }
    d.len = std::max(d.len, in + got);
    d.NoteWritten(in, in + got, writeback);
    pos += got;
    if (f->attr.size < pos) f->attr.size = pos;
    if (got < n) {
      // The bytes could not be had (the request's pipe failed): what came
      // in stays, as in a short write.
      if (pos == offset)
        return Status::Error(Code::kIo, "cannot read the write's data");
      break;
    }
    // A chunk written whole since it came in means a sequential writer is
    // done with it: seal it now, overlapping with the next writes. Only
    // then: the kernel's writeback (--writeback-cache) sends a file's pages
    // in any order, and a chunk sealed before its first half arrived would
    // be sealed, staged and uploaded twice. Writeback's pieces a little out
    // of order (several requests at once) still seal it as its last gap
    // fills, not at an eviction that would page a full buffer out.
    if (d.in_order == kChunkSize) SubmitSeal(f, idx);
  }
  return static_cast<size_t>(pos - offset);
}

bool WritePipeline::StagesInIndex(const OpenFile* f, uint64_t idx,
                                  uint64_t plain_end) const {
  if (idx != 0 || plain_end == 0) return false;
  const uint64_t len = std::max(plain_end, f->attr.size);
  if (len > kChunkSize) return false;
  // StageCiphertext decides again at the seal: the index may have filled
  // up by then (uploads stuck for long), and that seal then waits for
  // spill room as any other does.
  return FitsInIndex(CiphertextSize(options_.chunk_format, len));
}

bool WritePipeline::FitsInIndex(uint64_t sealed) const {
  return sealed <= options_.index_stage_max &&
         index_->staged_body_bytes() + sealed <= options_.index_stage_cap;
}

Status WritePipeline::AcquireDirty(OpenFile* f, uint64_t idx,
                                   std::unique_lock<std::mutex>& lock,
                                   uint64_t need, uint32_t write_end) {
  while (true) {
    // A failed commit dropped buffers that held tail-journal records
    // (fs/tail_journal.h): a write that was waiting here lands after they
    // are back, not on the older sealed version under them.
    if ((f->journal_replay || f->replaying) &&
        f->replayer != std::this_thread::get_id()) {
      // A replay that failed is tried again later (Committer::Replay):
      // this write fails rather than wait for the store to come back.
      if (!f->replaying && !f->replay_error.ok()) return f->replay_error;
      f->cv.wait(lock);
      continue;
    }
    auto have = f->dirty.find(idx);
    if (have != f->dirty.end() && !have->second.paged_out()) {
      if (have->second.spill_unchecked && write_end != 0 &&
          !StagesInIndex(f, idx, write_end)) {
        // Grown past what the index stages: the wait it was spared.
        lock.unlock();
        Status space = WaitForSpace(kMaxCiphertextSize, false);
        lock.lock();
        if (!space.ok()) return space;
        have = f->dirty.find(idx);
        if (have != f->dirty.end()) have->second.spill_unchecked = false;
        continue;
      }
      return Fill(f, have->second, need);
    }
    // Paged out (store/page_out.h): its data was taken in long ago, so
    // bringing it back waits for a buffer but not for spill space.
    const bool page_in = have != f->dirty.end();
    if (f->inflight.count(idx)) {
      f->cv.wait(lock);
      continue;
    }
    // One file holds at most max_buffers_per_file dirty buffers, as many
    // being sealed and one more than that in all, so the pool is shared
    // fairly between files written at once. A file written all over (more
    // chunks than it may hold) evicts its least recently written buffer
    // and goes on: bringing the next chunk in overlaps with that seal. A
    // sequential writer, whose other buffers are all being sealed, waits
    // for one as before.
    const size_t cap = options_.max_buffers_per_file;
    const size_t resident = f->dirty.size() - f->paged_out;
    if (resident >= cap) {
      uint64_t lru = 0;
      uint64_t oldest = ~0ull;
      for (auto& [i, d] : f->dirty) {
        if (!d.paged_out() && d.touched <= oldest) {
          oldest = d.touched;
          lru = i;
        }
      }
      Evict(f, lru);
      continue;
    }
    if (f->inflight.size() >= cap || resident + f->inflight.size() > cap) {
      f->cv.wait(lock);
      continue;
    }
    // A small file's chunk goes to the index, not the spill: it need not
    // wait behind a big writer that waits for uploads to free spill space.
    const bool small = !page_in && StagesInIndex(f, idx, write_end);
    lock.unlock();
    if (hooks_ != nullptr && hooks_->acquire_unlocked)
      hooks_->acquire_unlocked(f->ino, idx);
    Status space = page_in || small ? Status::Ok()
                                    : WaitForSpace(kMaxCiphertextSize, false);
    uint8_t* buf = space.ok() ? pool_.Acquire() : nullptr;
    lock.lock();
    if (!space.ok()) return space;
    have = f->dirty.find(idx);
    if (f->inflight.count(idx) ||
        (have != f->dirty.end() && !have->second.paged_out())) {
      pool_.Release(buf);
      continue;
    }
    if (have != f->dirty.end()) {
      // Back from its slot: segments come in as they are needed.
      OpenFile::Dirty& d = have->second;
      d.buf = buf;
      d.absent = d.in_slot;
      d.changed = 0;
      d.touched = clock_.fetch_add(1);
      f->paged_out -= 1;
      page_ins_ += 1;
      return Fill(f, d, need);
    }
    if (page_in) continue;  // cut off meanwhile: bring in what is there now
    // Bring in what the chunk holds now (copy-on-write per chunk).
    uint32_t len = 0;
    auto ref = RefOf(index_, f, idx);
    if (!ref.ok()) {
      pool_.Release(buf);
      return ref.status();
    }
    const uint64_t base = idx * kChunkSize;
    const uint64_t limit =
        f->attr.size > base ? std::min(kChunkSize, f->attr.size - base) : 0;
    if (ref->has_value() && !(*ref)->hole && limit > 0) {
      // A tail sealed a moment ago (the last append) is still here.
      ChunkData data = tails_.Get((*ref)->address);
      if (!data) {
        auto fetched = reader_->FetchChunk(**ref);
        if (!fetched.ok()) {
          pool_.Release(buf);
          return fetched.status();
        }
        data = std::move(*fetched);
      }
      len = static_cast<uint32_t>(std::min<uint64_t>(data->size(), limit));
      std::memcpy(buf, data->data(), len);
    } else if (ref->has_value()) {
      len = static_cast<uint32_t>(std::min<uint64_t>((*ref)->length, limit));
      std::memset(buf, 0, len);
    }
    OpenFile::Dirty d;
    d.buf = buf;
    d.len = len;
    d.touched = clock_.fetch_add(1);
    d.spill_unchecked = small;
    f->dirty[idx] = d;
    return Status::Ok();
  }
}

void WritePipeline::ForgetChunks(OpenFile* f, uint64_t first, uint64_t end) {
  for (auto it = f->dirty.lower_bound(first);
       it != f->dirty.end() && it->first < end;) {
    FreeDirty(f, it->second);
    it = f->dirty.erase(it);
  }
  f->pending.erase(f->pending.lower_bound(first), f->pending.lower_bound(end));
  for (auto it = f->inflight.lower_bound(first);
       it != f->inflight.end() && *it < end; ++it)
    f->discard.insert(*it);
}

WritePipeline::SealJob WritePipeline::TakeForSeal(OpenFile* f, uint64_t idx,
                                                  bool page_out) {
  auto it = f->dirty.find(idx);
  OpenFile::Dirty& d = it->second;
  if (!page_out && d.slotted) {
    // A seal takes every byte: what is only in the slot comes in, and the
    // slot is done with. A read that fails fails the file's next commit.
    Status st = Fill(f, d, ~0ull);
    if (!st.ok() && f->error.ok()) f->error = st;
    pages_.Free(d.page_slot);
    d.slotted = false;
  }
  SealJob job;
  job.file = f->self.lock();
  job.index = idx;
  job.buf = d.buf;
  job.len = d.len;
  job.page_out = page_out;
  job.dirty = d;
  f->dirty.erase(it);
  f->inflight.insert(idx);
  seals_in_flight_ += 1;
  return job;
}

void WritePipeline::SubmitSeal(OpenFile* f, uint64_t idx, bool early) {
  SealJob job = TakeForSeal(f, idx);
  job.early = early;
  Enqueue(std::move(job));
}

void WritePipeline::Evict(OpenFile* f, uint64_t idx) {
  OpenFile::Dirty& d = f->dirty.at(idx);
  bool page_out = false;
  // The buffer of a hot file nobody has open (fs/tail_journal.h: a log
  // between appends) is sealed, which its journal's end would do anyway,
  // rather than paged out and brought back for that seal.
  const bool idle_hot = f->hot && f->opens == 1;
  if (f->no_page_out == 0 && !idle_hot) {
    if (!d.slotted) {
      if (auto slot = pages_.Take()) {
        d.slotted = true;
        d.page_slot = *slot;
        d.in_slot = 0;
        d.absent = 0;
        d.seals = std::make_shared<PageOut::Seals>();
      }
    }
    page_out = d.slotted;
  }
  SealJob job = TakeForSeal(f, idx, page_out);
  // Sealed by a commit's own eviction (SealAll), the version is the one
  // the commit names: not held.
  job.early = f->no_page_out == 0;
  if (page_out) f->page_outs += 1;
  Enqueue(std::move(job));
}

void WritePipeline::Enqueue(SealJob job) {
  {
    std::lock_guard<std::mutex> sl(seal_mu_);
    seal_queue_.push_back(std::move(job));
  }
  seal_cv_.notify_one();
}

bool WritePipeline::PageOutJob(SealJob& job) {
  OpenFile* f = job.file.get();
  OpenFile::Dirty& d = job.dirty;
  // What the slot must get: every segment up to the chunk's end that it
  // does not hold, or holds an older version of. Segments still absent
  // from the buffer are in the slot as they are.
  const uint64_t in_len = OpenFile::Dirty::SegmentMask(0, job.len);
  const uint64_t write = in_len & ~d.absent & (~d.in_slot | d.changed);
  // Segments new to the slot take disk space: only what the spill can
  // spare now. A seal may wait for space; a page-out is there to save
  // work, so it never waits.
  const uint64_t need =
      static_cast<uint64_t>(std::popcount(write & ~d.in_slot)) * kSegmentSize;
  Status st = Status::Ok();
  if (hooks_ != nullptr && hooks_->page_out_fault)
    st = hooks_->page_out_fault(f->ino, job.index);
  if (st.ok()) {
    if (need == 0 || TryReserve(need)) {
      st = pages_.Write(d.page_slot, job.buf, write, d.seals.get());
      if (need > 0) Unreserve(need);
    } else {
      st = Status::Error(Code::kNoSpace, "no spill space to spare", ENOSPC);
    }
  }
  if (!st.ok()) {
    if (st.sys_errno() != ENOSPC)
      spdlog::warn("inode {}: chunk {} is sealed instead of paged out: {}",
                   f->ino, job.index, st.ToString());
    // Sealed instead: it takes every byte, so what is only in the slot
    // comes in, and the slot is done with.
    Status fill = pages_.Read(d.page_slot, *d.seals, d.absent, job.buf);
    pages_.Free(d.page_slot);
    {
      std::lock_guard<std::mutex> lock(f->mu);
      f->page_outs -= 1;
      if (!fill.ok() && f->error.ok()) f->error = fill;
    }
    f->cv.notify_all();
    job.page_out = false;
    return false;
  }
  if (hooks_ != nullptr && hooks_->page_out_written)
    hooks_->page_out_written(f->ino, job.index);
  d.in_slot = (d.in_slot | write) & in_len;
  d.absent = d.in_slot;
  d.changed = 0;
  d.buf = nullptr;
  d.len = job.len;
  bool cut = false;
  {
    std::lock_guard<std::mutex> lock(f->mu);
    f->page_outs -= 1;
    if (f->discard.erase(job.index) > 0) {
      cut = true;  // cut off by a truncate or a hole punch meanwhile
    } else {
      f->dirty[job.index] = d;
      f->paged_out += 1;
    }
    f->inflight.erase(job.index);
  }
  if (cut) pages_.Free(d.page_slot);
  page_outs_ += 1;
  f->cv.notify_all();
  pool_.Release(job.buf);
  seals_in_flight_ -= 1;
  return true;
}

Status WritePipeline::Fill(OpenFile* f, OpenFile::Dirty& d, uint64_t need) {
  const uint64_t want = d.absent & need;
  if (want == 0) return Status::Ok();
  Status st = pages_.Read(d.page_slot, *d.seals, want, d.buf);
  if (!st.ok()) {
    spdlog::error("inode {}: a paged-out buffer cannot be read back: {}",
                  f->ino, st.ToString());
    return st;
  }
  d.absent &= ~want;
  return Status::Ok();
}

void WritePipeline::SubmitAll(OpenFile* f, std::unique_lock<std::mutex>&) {
  std::vector<uint64_t> idx;
  for (auto& [i, d] : f->dirty) idx.push_back(i);
  for (uint64_t i : idx) SubmitSeal(f, i);
}

void WritePipeline::SealAll(OpenFile* f, std::unique_lock<std::mutex>& lock) {
  // Nothing of f is paged out from here on, and what is being paged out
  // lands first; then what is paged out comes back into buffers (evicting
  // others by sealing them). After that everything written before this
  // call is in a buffer, in a seal in flight, or pending.
  f->no_page_out += 1;
  if (hooks_ != nullptr && hooks_->seal_all_page_wait)
    hooks_->seal_all_page_wait(f->ino);
  f->cv.wait(lock, [&] { return f->page_outs == 0; });
  while (f->paged_out > 0) {
    uint64_t idx = 0;
    for (auto& [i, d] : f->dirty) {
      if (d.paged_out()) {
        idx = i;
        break;
      }
    }
    Status st = AcquireDirty(f, idx, lock);
    if (!st.ok()) {
      // The commit drops the changes and reports this.
      if (f->error.ok()) f->error = st;
      break;
    }
  }
  std::vector<uint64_t> mine;
  for (auto& [i, d] : f->dirty) mine.push_back(i);
  std::set<uint64_t> awaited(f->inflight);
  awaited.insert(mine.begin(), mine.end());
  for (uint64_t i : mine) {
    auto d = f->dirty.find(i);
    if (d == f->dirty.end() || d->second.paged_out()) continue;
    SealJob job = TakeForSeal(f, i);
    lock.unlock();
    SealAndRecord(job);
    lock.lock();
  }
  if (hooks_ != nullptr && hooks_->seal_all_wait) hooks_->seal_all_wait(f->ino);
  f->cv.wait(lock, [&] {
    for (uint64_t i : awaited)
      if (f->inflight.count(i)) return false;
    return true;
  });
  f->no_page_out -= 1;
}

void WritePipeline::NoteCommit(uint64_t ino) {
  if (options_.hot_tail_hold.count() <= 0) return;
  const auto now = HoldNow();
  std::lock_guard<std::mutex> lock(hot_mu_);
  if (last_commit_.size() >= 4096) {
    // Only the last hold's worth matters: forget older commits, and all of
    // them when that is not enough (a few tails then go up unheld).
    std::erase_if(last_commit_, [&](const auto& e) {
      return now - e.second >= options_.hot_tail_hold;
    });
    if (last_commit_.size() >= 4096) last_commit_.clear();
  }
  last_commit_[ino] = now;
}

void WritePipeline::DiscardStaged(const std::vector<Address>& addresses) {
  if (addresses.empty()) return;
  for (const Address& a : addresses) {
    Status st = spill_->Remove(a);
    if (!st.ok())
      spdlog::warn("cannot remove a superseded staged chunk: {}",
                   st.ToString());
  }
  NoteSpaceFreed();
}

void WritePipeline::NoteSpaceFreed() {
  {
    std::lock_guard<std::mutex> lock(space_mu_);
    space_epoch_ += 1;
    freed_epoch_ += 1;
  }
  space_cv_.notify_all();
}

std::chrono::steady_clock::duration WritePipeline::HoldFor(uint64_t ino) {
  if (options_.hot_tail_hold.count() <= 0) return {};
  std::lock_guard<std::mutex> lock(hot_mu_);
  auto it = last_commit_.find(ino);
  if (it == last_commit_.end() ||
      HoldNow() - it->second >= options_.hot_tail_hold)
    return {};
  return options_.hot_tail_hold;
}

Status WritePipeline::StageCiphertext(const Address& address,
                                      const uint8_t* data, size_t len,
                                      std::shared_lock<std::shared_mutex>* gate,
                                      const Index::StageOwner& owner) {
  if (hooks_ != nullptr && hooks_->stage_fault)
    WAVEFS_RETURN_IF_ERROR(hooks_->stage_fault(address));
  auto known = index_->LookupForRef(address);
  if (!known.ok()) return known.status();
  if (*known) return Status::Ok();  // staged or stored already: dedup
  // A small chunk goes into the index with its queue entry (no file to
  // create, nothing for the spill's free space to count); the cap keeps
  // what waits there for the uploader bounded.
  const bool in_index = FitsInIndex(len);
  // A fresh stage relies on no lookup until EnqueueStaged (which looks
  // again): gc need not wait for the space wait and the disk write.
  gate->unlock();
  // What the file takes on disk: whole blocks (O_DIRECT writes them).
  const uint64_t need =
      in_index ? 0 : (len + kSpaceBlock - 1) / kSpaceBlock * kSpaceBlock;
  if (!in_index) WAVEFS_RETURN_IF_ERROR(WaitForSpace(need, true));
  Status st = Status::Ok();
  if (hooks_ != nullptr && hooks_->stage_begin)
    st = hooks_->stage_begin(address, need);
  if (st.ok()) {
    if (!in_index) st = spill_->Stage(address, {data, len});
    if (hooks_ != nullptr && hooks_->stage_end)
      hooks_->stage_end(address, need);
  }
  // Only now: until the file is in, the free-space figure does not count it.
  if (!in_index) Unreserve(need);
  gate->lock();
  WAVEFS_RETURN_IF_ERROR(st);
  std::span<const uint8_t> body;
  if (in_index) body = {data, len};
  auto added = index_->EnqueueStaged(address, len, body, &owner);
  if (!added.ok()) return added.status();
  if (!*added && !in_index) {
    // Another copy was queued after our "not known" look. If it is still
    // queued, the staged file is that copy's too; if it is stored already,
    // ours is a stray no queue entry names: it would hold spill space that
    // no upload frees until the next mount.
    auto queued = index_->IsQueued(address);
    if (!queued.ok()) return queued.status();
    if (!*queued) WAVEFS_RETURN_IF_ERROR(spill_->Remove(address));
  }
  uploader_->Notify();
  return Status::Ok();
}

void WritePipeline::SealAndRecord(const SealJob& job) {
  const ChunkFormat format = options_.chunk_format;
  // A partial chunk is a file's tail: keep its plaintext for the next
  // append (the seal below encrypts the buffer in place).
  ChunkData tail;
  if (job.len < kChunkSize && tails_.Wants(job.len))
    tail = CopyWiped(job.buf, job.len);
  ChunkRef ref = SealChunk(secret_, format, job.buf, job.len);
  Status st;
  // gc (store/gc.h): from the dedup lookup until the ref is recorded as
  // pending, this chunk's reference is in neither the index nor the file.
  std::shared_lock<std::shared_mutex> gate(index_->ref_gate());
  if (!ref.hole) {
    // Held (store/index.h, "Held chunks"): a chunk whose buffer was
    // evicted, and a file's last chunk while the file is being rewritten.
    // Never a whole chunk written in order: a copy's chunks go up at once.
    std::chrono::steady_clock::duration hold{};
    if (job.early)
      hold = options_.hot_tail_hold;
    else if (job.len < kChunkSize)
      hold = HoldFor(job.file->ino);
    const Index::StageOwner owner{job.file->ino, job.index, hold};
    st = StageCiphertext(ref.address, job.buf, CiphertextSize(format, job.len),
                         &gate, owner);
  }
  pool_.Release(job.buf);
  if (tail && st.ok() && !ref.hole) tails_.Put(ref.address, std::move(tail));
  OpenFile* f = job.file.get();
  if (hooks_ != nullptr && hooks_->seal_before_record)
    hooks_->seal_before_record(f->ino, job.index);
  // A held chunk no commit will name: gone without an upload.
  std::optional<Address> superseded;
  {
    std::lock_guard<std::mutex> lock(f->mu);
    if (f->discard.erase(job.index) > 0) {
      // Cut off by a truncate or a hole punch while it was sealed.
      if (st.ok() && !ref.hole) superseded = ref.address;
    } else if (st.ok()) {
      // The slot sealed again before a commit named its last version
      // (pending refs are uncommitted; a commit clears them).
      auto prev = f->pending.find(job.index);
      if (prev != f->pending.end() && !prev->second.hole &&
          (ref.hole || prev->second.address != ref.address))
        superseded = prev->second.address;
      f->pending[job.index] = ref;
    } else {
      spdlog::error("inode {}: staging chunk {} failed: {}", f->ino, job.index,
                    st.ToString());
      if (f->error.ok()) f->error = st;
    }
    if (superseded) {
      // Under f->mu, which a copy_file_range of this file takes to
      // retain what it shares (store/index.h, "Held chunks").
      bool spilled = false;
      auto dropped = index_->DropReplaced(f->ino, job.index, *superseded,
                                          ref.address, &spilled);
      if (!dropped.ok()) {
        spdlog::warn("inode {}: a superseded chunk stays queued: {}", f->ino,
                     dropped.status().ToString());
      }
      if (!dropped.ok() || !*dropped || !spilled) superseded.reset();
    }
    f->inflight.erase(job.index);
  }
  if (superseded) DiscardStaged({*superseded});
  if (gate.owns_lock()) gate.unlock();  // a failed stage may have let go
  seals_in_flight_ -= 1;
  f->cv.notify_all();
}

void WritePipeline::SealerLoop() {
  while (true) {
    SealJob job;
    {
      std::unique_lock<std::mutex> lock(seal_mu_);
      seal_cv_.wait(lock, [&] { return stopping_ || !seal_queue_.empty(); });
      if (seal_queue_.empty()) return;
      job = std::move(seal_queue_.front());
      seal_queue_.pop_front();
    }
    if (job.page_out && PageOutJob(job)) continue;
    SealAndRecord(job);
  }
}

bool WritePipeline::EvictOne() {
  // Buffers being sealed come back by themselves: wait for them rather
  // than seal a half-written chunk (which the writer would then have to
  // read back and seal again).
  if (seals_in_flight_.load() > 0) return true;
  // The least recently written dirty buffer goes first.
  std::shared_ptr<OpenFile> victim;
  uint64_t victim_index = 0;
  uint64_t oldest = ~0ull;
  for (auto& f : files_->All()) {
    std::unique_lock<std::mutex> lock(f->mu, std::try_to_lock);
    if (!lock.owns_lock()) continue;
    for (auto& [index, d] : f->dirty) {
      if (!d.paged_out() && d.touched < oldest) {
        oldest = d.touched;
        victim = f;
        victim_index = index;
      }
    }
  }
  if (!victim) return false;
  std::lock_guard<std::mutex> lock(victim->mu);
  auto d = victim->dirty.find(victim_index);
  if (d == victim->dirty.end() || d->second.paged_out())
    return true;  // sealed or paged out meanwhile
  Evict(victim.get(), victim_index);
  return true;
}

Result<uint64_t> WritePipeline::FreeBytes() const {
  if (hooks_ != nullptr && hooks_->spill_free_bytes)
    return hooks_->spill_free_bytes();
  return spill_->FreeBytes();
}

std::chrono::steady_clock::time_point WritePipeline::HoldNow() const {
  if (hooks_ != nullptr && hooks_->hold_now) return hooks_->hold_now();
  return std::chrono::steady_clock::now();
}

std::chrono::steady_clock::time_point WritePipeline::SpaceNow() const {
  if (hooks_ != nullptr && hooks_->space_now) return hooks_->space_now();
  return std::chrono::steady_clock::now();
}

Status WritePipeline::WaitForSpace(uint64_t bytes, bool reserve) {
  if (hooks_ != nullptr && hooks_->space_check)
    hooks_->space_check(bytes, reserve);
  bool warned = false;
  std::unique_lock<std::mutex> lock(space_mu_);
  // The deadline starts with the first freed_epoch_ it is compared with:
  // started before the lock, a wait for the lock (others are looking) during
  // which uploads freed space would count against --space-wait, and those
  // frees would not restart it.
  uint64_t freed_seen = freed_epoch_;
  auto deadline = SpaceNow() + options_.space_wait;
  // Since when the last looks found that no upload can free space.
  // (max(): they did not).
  constexpr auto kNever = std::chrono::steady_clock::time_point::max();
  auto hopeless_since = kNever;
  bool holds_ended = false;
  while (true) {
    // Under space_mu_ from the check to the reservation: whoever checks
    // next sees this reservation.
    auto free = FreeBytes();
    if (!free.ok()) return free.status();
    const bool fits =
        *free >= reserved_bytes_ + bytes + options_.spill_reserve_bytes;
    if (fits && reserve) reserved_bytes_ += bytes;
    if (hooks_ != nullptr && hooks_->space_checked)
      hooks_->space_checked(bytes, reserve, fits);
    if (fits) return Status::Ok();
    if (!holds_ended) {
      // Held chunks in the spill (store/index.h) wait for nothing but
      // their hold: ending it lets the uploader free their space. Out of
      // space_mu_, a leaf lock; then look again.
      holds_ended = true;
      lock.unlock();
      if (index_->EndSpillHolds() > 0) uploader_->Notify();
      lock.lock();
      continue;
    }
    // Progress: an upload freed space (maybe taken by someone else first).
    // The wait for space is a wait without progress, so it starts again.
    if (freed_epoch_ != freed_seen) {
      freed_seen = freed_epoch_;
      deadline = SpaceNow() + options_.space_wait;
    }
    // Nothing queued, nobody about to stage, and no staged file left (the
    // uploader completes a batch's queue entries before it removes their
    // files: a file still here is space about to come back, and its
    // removal is followed by the space-freed callback): no upload can free
    // space.
    bool can_free =
        uploader_->stats().pending_chunks > 0 || reserved_bytes_ > 0;
    if (!can_free) {
      bool staged = false;
      spill_->List([&](const Address&) { staged = true; }).IgnoreError();
      can_free = staged;
    }
    if (!can_free) {
      // The last staged files may have been removed after the free bytes
      // were read and before the listing: look once more. Nobody can
      // reserve or stage meanwhile (that takes space_mu_, held here), so
      // after this look the spill can only have grown emptier.
      auto again = FreeBytes();
      if (!again.ok()) return again.status();
      free = again;
      if (*free >= reserved_bytes_ + bytes + options_.spill_reserve_bytes) {
        if (reserve) reserved_bytes_ += bytes;
        if (hooks_ != nullptr && hooks_->space_checked)
          hooks_->space_checked(bytes, reserve, true);
        return Status::Ok();
      }
    }
    const auto now = SpaceNow();
    // "No upload can free space" must hold for a moment before it counts:
    // space held by a staged file can come back a little after the file
    // left the listing (it_full_disk's eight writers saw a spill whose
    // listing was empty still short of a chunk for a few milliseconds).
    if (can_free) {
      hopeless_since = kNever;
    } else if (hopeless_since == kNever) {
      hopeless_since = now;
    }
    const bool hopeless =
        hopeless_since != kNever && now - hopeless_since >= kHopelessAfter;
    if (hopeless || now >= deadline) {
      const uint64_t reserved = reserved_bytes_;
      lock.unlock();
      const char* why = hopeless ? "no upload can free space"
                                 : "no upload freed space within --space-wait";
      spdlog::error(
          "spill directory {} is full ({} bytes free, {} reserved, "
          "{} wanted): {}",
          spill_->dir(), *free, reserved, bytes, why);
      return Status::Error(
          Code::kNoSpace,
          "spill directory " + spill_->dir() + " is full and " + why, ENOSPC,
          false);
    }
    if (!warned) {
      spdlog::warn("spill directory is full; writers wait for uploads");
      warned = true;
    }
    uploader_->Notify();
    const uint64_t epoch = space_epoch_;
    auto wake = std::min(deadline, now + std::chrono::milliseconds(500));
    if (hopeless_since != kNever)
      wake = std::min(wake, hopeless_since + kHopelessAfter);
    // A relative wait: `now` is on the hooks' clock in tests.
    space_cv_.wait_for(lock, wake - now, [&] { return space_epoch_ != epoch; });
  }
}

bool WritePipeline::TryReserve(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(space_mu_);
  auto free = FreeBytes();
  if (!free.ok() ||
      *free < reserved_bytes_ + bytes + options_.spill_reserve_bytes)
    return false;
  reserved_bytes_ += bytes;
  return true;
}

void WritePipeline::Unreserve(uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(space_mu_);
    reserved_bytes_ -= bytes;
    space_epoch_ += 1;  // what was reserved is counted by the spill now
  }
  space_cv_.notify_all();
}

}  // namespace wavefs
