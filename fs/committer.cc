#include "fs/committer.h"

#include <spdlog/spdlog.h>

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

Status Committer::Commit(OpenFile* f, std::unique_lock<std::mutex>& lock,
                         bool sync, FileHandle* caller) {
  const uint64_t gen = f->write_gen;
  pipeline_->SealAll(f, lock);
  DropIfFailed(f);
  if (caller != nullptr) WAVEFS_RETURN_IF_ERROR(TakeDroppedError(caller));
  if (sync) {
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
      if (spill_->Contains(a)) {
        Status st = spill_->Sync(a);
        if (st.ok()) continue;
        if (st.code() != Code::kNotFound) return st;
      }
      auto queued = index_->IsQueued(a);
      if (!queued.ok()) return queued.status();
      if (*queued) store_sync = true;
    }
    if (store_sync) WAVEFS_RETURN_IF_ERROR(store_->Sync());
  }
  if (!f->attr_dirty && f->pending.empty() && !f->truncate_from && !sync)
    return Status::Ok();
  IndexBatch b;
  if (f->truncate_from) b.DeleteChunksFrom(f->ino, *f->truncate_from);
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

void Committer::DropUncommitted(OpenFile* f, const Status& why) {
  pipeline_->ReleaseBuffers(f);
  f->pending.clear();
  for (uint64_t i : f->inflight) f->discard.insert(i);
  f->truncate_from.reset();
  f->attr_dirty = false;
  f->attr = f->committed;
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
