#include "fs/committer.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace wavefs {

Status Committer::TakeDroppedError(FileHandle* h) {
  Status e = h->dropped_error;
  h->dropped_error = Status::Ok();
  return e;
}

void Committer::DropIfFailed(OpenFile* f) {
  if (f->error.ok()) return;
  Status err = f->error;
  f->error = Status::Ok();
  spdlog::error("inode {}: changes since the last commit are dropped: {}",
                f->ino, err.ToString());
  DropUncommitted(f, err);
}

Status Committer::SyncNamedChunks(OpenFile* f) {
  // Everything this file names that is still staged must be on disk
  // before the commit that names it is.
  std::vector<Address> staged;
  for (auto& [i, r] : f->pending)
    if (!r.hole) staged.push_back(r.address);
  WAVEFS_RETURN_IF_ERROR(
      index_->ListChunks(f->ino, [&](uint64_t i, const ChunkRef& r) {
        if (!r.hole && !f->pending.count(i)) staged.push_back(r.address);
      }));
  // A chunk no longer in the spill but still queued was put into the
  // store and not yet made durable there (the local store moves a staged
  // file in by rename and syncs once per wave): sync the store now.
  bool store_sync = false;
  for (const Address& a : staged) {
    // kNotFound: not (or no longer) in the spill.
    Status st = spill_->Sync(a);
    if (st.ok()) continue;
    if (st.code() != Code::kNotFound) return st;
    auto queued = index_->IsQueued(a);
    if (!queued.ok()) return queued.status();
    if (*queued) store_sync = true;
  }
  if (store_sync) WAVEFS_RETURN_IF_ERROR(store_->Sync());
  return Status::Ok();
}

Status Committer::Commit(OpenFile* f, std::unique_lock<std::mutex>& lock,
                         bool sync, FileHandle* caller, Trigger why) {
  // A sealed commit deletes the journal's records: never before they are
  // back in the file.
  WAVEFS_RETURN_IF_ERROR(ReplayIfNeeded(f, lock));
  if (why != Trigger::kInternal &&
      (caller == nullptr || caller->dropped_error.ok()) &&
      TryJournal(f, sync, why))
    return Status::Ok();
  const uint64_t gen = f->write_gen;
  // No change of f lands while SealAll has mu released (OpenFile::commits):
  // what this commit records is what it sealed.
  f->commits += 1;
  f->cv.wait(lock, [&] { return f->changes == 0; });
  pipeline_->SealAll(f, lock);
  if (--f->commits == 0) f->cv.notify_all();
  DropIfFailed(f);
  if (caller != nullptr) WAVEFS_RETURN_IF_ERROR(TakeDroppedError(caller));
  if (sync) WAVEFS_RETURN_IF_ERROR(SyncNamedChunks(f));
  if (!f->attr_dirty && f->pending.empty() && !f->truncate_from && !sync &&
      f->journal_records == 0)
    return Status::Ok();
  IndexBatch b;
  // The sealed chunks take the place of the file's journal records.
  // Point deletes where few (Index::DeleteJournal says why); the file's
  // lock keeps other commits of it out until this one is written.
  if (f->journal_records > 0)
    WAVEFS_RETURN_IF_ERROR(index_->DeleteJournal(&b, f->ino));
  if (f->truncate_from)
    WAVEFS_RETURN_IF_ERROR(
        index_->DeleteChunksFrom(&b, f->ino, *f->truncate_from));
  for (auto& [i, r] : f->pending) b.PutChunk(f->ino, i, r);
  b.PutInode(f->attr);
  WAVEFS_RETURN_IF_ERROR(index_->Commit(&b, sync));
  // Held small chunks of this file that the commit no longer names (the
  // last append's tail) go without an upload (store/index.h, "Held
  // chunks"). A failure only means they are uploaded after all.
  std::vector<Address> spilled;
  auto dropped = index_->DropSuperseded(
      f->ino,
      [&](uint64_t i, const Address& a) {
        auto p = f->pending.find(i);
        if (p != f->pending.end())
          return !p->second.hole && p->second.address == a;
        return !(f->truncate_from && i >= *f->truncate_from);
      },
      &spilled);
  if (!dropped.ok())
    spdlog::warn("inode {}: superseded chunks stay queued: {}", f->ino,
                 dropped.status().ToString());
  pipeline_->DiscardStaged(spilled);
  pipeline_->NoteCommit(f->ino);
  f->committed = f->attr;
  f->pending.clear();
  f->truncate_from.reset();
  f->attr_dirty = false;
  f->unlogged_change = false;
  f->journal_records = 0;
  f->journal_bytes = 0;
  // Writers whose every write is in this commit have nothing at stake now.
  for (auto it = f->writers.begin(); it != f->writers.end();)
    it = it->second <= gen ? f->writers.erase(it) : std::next(it);
  return Status::Ok();
}

void Committer::CommitLongWrite(OpenFile* f,
                                std::unique_lock<std::mutex>& lock) {
  // The sealed refs go into the index rather than piling up until the
  // close (~128 bytes a chunk: 3 MiB for a 100 GiB file). Preferably when
  // no buffer is half filled (a sequential writer just finished a chunk):
  // then the commit only waits for seals in flight. A writer that never
  // leaves one (random writes, unaligned records) gets its half-filled
  // buffers sealed at twice the count; they come back from the tail cache
  // or the spill at its next write.
  const size_t n = f->pending.size();
  if (!f->error.ok() || n < commit_every_ ||
      (!f->dirty.empty() && n < 2 * commit_every_))
    return;
  Status st = Commit(f, lock, false, nullptr);
  if (!st.ok())
    spdlog::warn("inode {}: commit of a long write failed: {}", f->ino,
                 st.ToString());
}

bool Committer::TryJournal(OpenFile* f, bool sync, Trigger why) {
  if (journal_ == nullptr || journal_->hold().count() <= 0) return false;
  if (!S_ISREG(f->attr.mode) || !f->error.ok() || f->truncate_from ||
      !f->pending.empty() || !f->inflight.empty() || f->paged_out > 0 ||
      f->page_outs > 0 || f->unlogged_change || f->dirty.size() != 1)
    return false;
  // A file written once and closed (cp, tar, rsync) seals at its close as
  // always; one closed again soon after a commit (a log) journals, and so
  // does any fsync: one that waits for it is a database's (SQLite's
  // -journal file is new in every transaction, and used to seal each time).
  if (f->journal_records == 0 && !sync && !pipeline_->RecentlyCommitted(f->ino))
    return false;
  // Hot files keep buffers other writers need: a few at once, the others
  // seal as before.
  if (!f->hot && !journal_->HasRoom()) return false;
  auto& [idx, d] = *f->dirty.begin();
  if (d.paged_out() || d.log_overflow) return false;
  if (f->journal_records > 0 && f->journal_chunk != idx) return false;
  // Only what writes change: size and times. Anything else seals.
  InodeAttr same = f->attr;
  same.size = f->committed.size;
  same.atime = f->committed.atime;
  same.mtime = f->committed.mtime;
  same.ctime = f->committed.ctime;
  if (EncodeInode(same) != EncodeInode(f->committed)) return false;
  // Nothing written since the last records (bash's redirections flush
  // twice): the journal already holds this state; an fsync makes it
  // durable. New times (touch, the kernel's with the writeback cache) get
  // a record of no bytes.
  std::vector<std::pair<uint32_t, uint32_t>> ranges = d.logged;
  if (ranges.empty() && why == Trigger::kSetTimes && f->journal_records > 0)
    ranges.emplace_back(0, 0);
  if (ranges.empty()) {
    if (f->journal_records == 0) return false;
    if (!sync) return true;
    Status st = SyncNamedChunks(f);
    if (st.ok()) st = index_->Sync();
    if (!st.ok())
      spdlog::warn("inode {}: journal sync failed, sealing instead: {}", f->ino,
                   st.ToString());
    return st.ok();
  }
  uint64_t bytes = 0;
  for (const auto& [from, to] : ranges) {
    if (from < to && (d.absent & OpenFile::Dirty::SegmentMask(from, to)))
      return false;
    bytes += to - from;
  }
  if (f->journal_bytes + bytes > kMaxJournalBytes ||
      f->journal_records + ranges.size() > kMaxJournalRecords)
    return false;
  IndexBatch b;
  uint64_t seq = f->journal_next_seq;
  for (const auto& [from, to] : ranges) {
    JournalRecord r;
    r.chunk_index = idx;
    r.offset = from;
    r.size = f->attr.size;
    r.atime = f->attr.atime;
    r.mtime = f->attr.mtime;
    r.ctime = f->attr.ctime;
    // Bytes past the buffer's valid length read as zeros.
    const uint32_t have = std::min(to, std::max(from, d.len));
    r.data.assign(reinterpret_cast<const char*>(d.buf) + from, have - from);
    r.data.resize(to - from, '\0');
    b.PutJournal(f->ino, seq, journal_->Seal(f->ino, seq, r));
    seq += 1;
  }
  // An fsync's records need the file's last sealed commit under them on
  // disk (its chunks here, its index records with this synced write).
  Status st = sync ? SyncNamedChunks(f) : Status::Ok();
  if (st.ok()) st = index_->Commit(&b, sync);
  if (!st.ok()) {
    spdlog::warn("inode {}: journal commit failed, sealing instead: {}", f->ino,
                 st.ToString());
    return false;
  }
  pipeline_->NoteCommit(f->ino);
  journal_commits_.fetch_add(1);
  journal_bytes_.fetch_add(bytes);
  f->journal_records += ranges.size();
  f->journal_bytes += bytes;
  f->journal_chunk = idx;
  f->journal_next_seq = seq;
  d.logged.clear();
  f->attr_dirty = false;
  const uint64_t gen = f->write_gen;
  for (auto it = f->writers.begin(); it != f->writers.end();)
    it = it->second <= gen ? f->writers.erase(it) : std::next(it);
  if (!f->hot) {
    // The journal's pin keeps the buffer after the last handle goes.
    f->hot = true;
    f->hot_since = pipeline_->HoldNow();
    f->opens += 1;
    if (auto self = f->self.lock()) journal_->MarkHot(std::move(self));
  }
  return true;
}

void Committer::Replay(OpenFile* f, std::unique_lock<std::mutex>& lock) {
  f->journal_replay = false;
  if (journal_ == nullptr) return;
  // Writes and commits of f wait for this (ReplayIfNeeded): a commit in
  // the middle would delete records not yet back in the file.
  f->replaying = true;
  f->replayer = std::this_thread::get_id();
  struct Done {
    OpenFile* f;
    ~Done() {
      f->replaying = false;
      f->replayer = std::thread::id();
      f->cv.notify_all();
    }
  } done{f};
  // Pinned (hot) until a sealed commit takes the records' place.
  auto pin = [&] {
    if (!f->hot) {
      f->hot = true;
      f->opens += 1;
    }
  };
  auto failed = [&](const Status& why) {
    // Nothing of this attempt stays: f is back at its last sealed commit,
    // its records stay in the index, and the replay is due again.
    ResetToCommitted(f);
    if (f->replay_error.ok())
      spdlog::error(
          "inode {}: its tail journal cannot be applied yet ({}); its "
          "records are kept, trying again every second",
          f->ino, why.ToString());
    f->replay_error = why;
    f->journal_replay = true;
    pin();
    if (auto self = f->self.lock())
      journal_->CoolAfter(std::move(self), std::chrono::seconds(1));
  };
  std::vector<std::pair<uint64_t, std::string>> sealed;
  Status st =
      index_->ListJournal(f->ino, [&](uint64_t seq, std::string_view v) {
        sealed.emplace_back(seq, std::string(v));
      });
  if (!st.ok()) return failed(st);
  if (sealed.empty()) {
    f->replay_error = Status::Ok();
    return;
  }
  std::optional<JournalRecord> last;
  uint64_t bytes = 0;
  for (const auto& [seq, v] : sealed) {
    auto r = journal_->Open(f->ino, seq, v);
    if (!r.ok()) {
      spdlog::error("inode {}: {}; its bytes are left out", f->ino,
                    r.status().ToString());
      continue;
    }
    if (!r->data.empty()) {  // a record of no bytes carries times only
      MemorySource src(r->data.data());
      auto n = pipeline_->Write(f, nullptr, lock,
                                r->chunk_index * kChunkSize + r->offset, &src,
                                r->data.size());
      if (!n.ok() || *n != r->data.size())
        return failed(
            n.ok() ? Status::Error(Code::kIo, "short write of a journal record")
                   : n.status());
    }
    bytes += r->data.size();
    f->journal_chunk = r->chunk_index;
    last = std::move(*r);
  }
  if (last) {
    f->attr.size = std::max(f->attr.size, last->size);
    f->attr.atime = last->atime;
    f->attr.mtime = last->mtime;
    f->attr.ctime = last->ctime;
  }
  // Counted even when left out: the next sealed commit deletes them all.
  f->journal_records = sealed.size();
  f->journal_bytes = bytes;
  f->journal_next_seq = sealed.back().first + 1;
  f->attr_dirty = true;
  for (auto& [i, d] : f->dirty) d.logged.clear();
  journal_replays_.fetch_add(1);
  if (!f->replay_error.ok())
    spdlog::info("inode {}: its tail journal is applied now", f->ino);
  f->replay_error = Status::Ok();
  pin();
  f->hot_since = pipeline_->HoldNow();
  if (auto self = f->self.lock()) journal_->MarkHot(std::move(self));
}

void Committer::ResetToCommitted(OpenFile* f) {
  pipeline_->ReleaseBuffers(f);
  f->pending.clear();
  for (uint64_t i : f->inflight) f->discard.insert(i);
  f->truncate_from.reset();
  f->attr_dirty = false;
  f->unlogged_change = false;
  f->attr = f->committed;
}

void Committer::DiscardOrphan(OpenFile* f, std::unique_lock<std::mutex>& lock) {
  f->cv.wait(lock, [&] {
    return f->commits == 0 && f->changes == 0 && !f->replaying;
  });
  ResetToCommitted(f);
  f->journal_replay = false;
  f->journal_records = 0;
  f->journal_bytes = 0;
  f->writers.clear();
  std::vector<Address> spilled;
  auto dropped = index_->DropSuperseded(
      f->ino, [](uint64_t, const Address&) { return false; }, &spilled);
  if (!dropped.ok())
    spdlog::warn("inode {}: chunks of the deleted file stay queued: {}", f->ino,
                 dropped.status().ToString());
  pipeline_->DiscardStaged(spilled);
}

void Committer::DropUncommitted(OpenFile* f, const Status& why) {
  ResetToCommitted(f);
  if (f->journal_records > 0 && journal_ != nullptr) {
    // The records are still the file's last commit: they go back into its
    // buffers before anything else touches it (ReplayIfNeeded), and soon
    // in any case (the journal's thread). Pinned meanwhile.
    f->journal_replay = true;
    if (!f->hot) {
      f->hot = true;
      f->opens += 1;
    }
    if (auto self = f->self.lock()) journal_->CoolNow(std::move(self));
  }
  for (auto& [h, gen] : f->writers)
    if (h->dropped_error.ok()) h->dropped_error = why;
  f->writers.clear();
  // The kernel cached what was written: the next open must not keep it,
  // and handles open now should see the pages go.
  std::lock_guard<std::mutex> lock(dropped_mu_);
  dropped_.insert(f->ino);
  if (dropped_listener_) dropped_listener_(f->ino);
}

void Committer::SetDroppedListener(std::function<void(uint64_t)> listener) {
  std::lock_guard<std::mutex> lock(dropped_mu_);
  dropped_listener_ = std::move(listener);
}

bool Committer::TakeDropped(uint64_t ino) {
  std::lock_guard<std::mutex> lock(dropped_mu_);
  return dropped_.erase(ino) > 0;
}

}  // namespace wavefs
