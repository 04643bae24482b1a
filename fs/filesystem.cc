#include "fs/filesystem.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace wavefs {
namespace {

WriteOptions WriteOptionsOf(const FsOptions& o) {
  WriteOptions w;
  w.dirty_buffers = o.dirty_buffers;
  w.max_buffers_per_file = o.max_buffers_per_file;
  w.seal_threads = o.seal_threads;
  w.chunk_format = o.chunk_format;
  w.spill_reserve_bytes = o.spill_reserve_bytes;
  w.space_wait = o.space_wait;
  w.index_stage_max = o.index_stage_max;
  w.index_stage_cap = o.index_stage_cap;
  w.hot_tail_hold = o.hot_tail_hold;
  w.page_out_slots = o.page_out_slots;
  w.buffer_evict_after = o.buffer_evict_after;
  return w;
}

ChunkReader::Options ReaderOptionsOf(const FsOptions& o, ChunkSlots* slots) {
  ChunkReader::Options r;
  r.slots = slots;
  r.prefetch_depth = o.prefetch ? std::max(1, o.prefetch_depth) : 0;
  r.cache_chunks = std::max<size_t>(o.cache_chunks,
                                    static_cast<size_t>(r.prefetch_depth) + 1);
  r.read_window = o.read_window;
  r.recycled_chunks = o.recycled_chunks;
  r.fetch_unlocked = o.hooks.read_unlocked;
  // Room for the files fetched ahead and those the reader is on.
  r.cache_small_entries = o.prefetch_files > 0 ? 4 * o.prefetch_files : 0;
  return r;
}

SiblingPrefetch::Options SiblingOptionsOf(const FsOptions& o) {
  SiblingPrefetch::Options s;
  s.files_ahead = o.prefetch_files;
  s.threads = static_cast<int>(std::min<size_t>(4, o.prefetch_files));
  return s;
}

Status NoSuchOffset(const char* what) {
  return Status::Error(Code::kIo, what, ENXIO);
}

}  // namespace

Filesystem::Filesystem(Index* index, Spill* spill, ChunkStore* store,
                       Uploader* uploader, const Secret& secret,
                       FsOptions options, const CountingStore* counts)
    : index_(index),
      spill_(spill),
      counts_(counts),
      uploader_(uploader),
      options_(std::move(options)),
      files_(index),
      slots_(options_.dirty_buffers, options_.chunk_idle, options_.reuse_idle),
      reader_(index, spill, store, options_.chunk_format,
              ReaderOptionsOf(options_, &slots_)),
      siblings_(index, &reader_, SiblingOptionsOf(options_),
                [this](uint64_t dir) { return RegularFilesOf(dir); }),
      pipeline_(index, spill, uploader, &files_, &reader_, secret,
                WriteOptionsOf(options_), &options_.hooks),
      journal_(secret,
               options_.tail_journal ? options_.hot_tail_hold
                                     : std::chrono::milliseconds(0),
               std::max<size_t>(1, options_.dirty_buffers / 2),
               options_.hooks.hold_now),
      committer_(index, spill, store, &pipeline_, options_.commit_every_chunks,
                 &journal_),
      idle_release_(&slots_, options_.idle_release),
      namespace_(index, &files_, &options_.hooks) {
  pipeline_.ShareSlots(&slots_);
  // A synced index write (fsync, fsyncdir, an index flush) makes every
  // earlier record durable, including queue entries and data maps of files
  // nobody fsynced: their staged chunks must be durable first.
  index_->SetSyncBarrier([spill, store] {
    bool moved_out = false;
    WAVEFS_RETURN_IF_ERROR(spill->SyncStaged(&moved_out));
    // A staged file the local store moved in before it was synced is
    // durable only once the store is.
    return moved_out ? store->Sync() : Status::Ok();
  });
  // A hot file whose last name goes, with no handle left (SQLite unlinks
  // its -journal after each transaction), is dropped now (CoolTail), not
  // sealed a hold later: its buffer and hot slot are wanted by the next.
  namespace_.SetOrphanListener([this](const std::shared_ptr<OpenFile>& f) {
    if (f->hot && f->LastPinOfOrphan()) journal_.CoolNow(f);
  });
  ReplayJournals();
  journal_.Start(
      [this](std::shared_ptr<OpenFile> f) { CoolTail(std::move(f)); });
}

Filesystem::~Filesystem() {
  journal_.Stop();
  index_->SetSyncBarrier(nullptr);
  // Buffers still held by open files (none after CommitAll) go back.
  for (auto& f : files_.All()) {
    std::lock_guard<std::mutex> lock(f->mu);
    pipeline_.ReleaseBuffers(f.get());
  }
}

void Filesystem::ReplayJournals() {
  // The daemon stopped while files were hot: their records go back into
  // buffers on top of their last sealed commits, and they are hot again
  // (sealed by the journal's thread in a moment, or at unmount).
  auto inos = index_->JournaledInodes();
  if (!inos.ok()) {
    spdlog::error("cannot list tail journals: {}", inos.status().ToString());
    return;
  }
  for (uint64_t ino : *inos) {
    auto f = files_.Pin(ino);
    if (!f.ok()) {
      // Its inode went (an orphan reclaimed at start): so do its records.
      spdlog::warn("tail journal of inode {} without its file: {}; dropped",
                   ino, f.status().ToString());
      IndexBatch b;
      b.DeleteJournal(ino);
      index_->Commit(&b, false).IgnoreError();
      continue;
    }
    bool applied = false;
    {
      std::unique_lock<std::mutex> lock((*f)->mu);
      committer_.Replay(f->get(), lock);
      applied = !(*f)->journal_replay;
    }
    files_.Unpin(*f, [&](OpenFile* last) { pipeline_.ReleaseBuffers(last); });
    if (applied) spdlog::info("inode {}: tail journal applied again", ino);
  }
}

void Filesystem::CoolTail(std::shared_ptr<OpenFile> f) {
  {
    std::unique_lock<std::mutex> lock(f->mu);
    if (f->journal_replay || f->replaying) {
      // A failed replay has the next try scheduled already.
      committer_.ReplayIfNeeded(f.get(), lock).IgnoreError();
      return;
    }
    if (!f->hot) return;
    // A file without a name or handle goes at once, unsealed (Unpin).
    const bool orphan = f->LastPinOfOrphan();
    // Sealed only when idle and its hold is over: not while a handle may
    // be writing (a commit then races its writes), nor when it was due
    // for a replay that another thread already did (its hold starts anew).
    const auto age = pipeline_.HoldNow() - f->hot_since;
    if (!orphan && age < journal_.hold()) {
      journal_.CoolAfter(f, journal_.hold() - age);
      return;
    }
    if (!orphan && f->opens > 1 && age < 4 * journal_.hold()) {
      // A reader that keeps the file open (tail -f) delays it to four
      // holds at most.
      journal_.CoolAfter(f, std::chrono::milliseconds(100));
      return;
    }
    f->hot = false;
  }
  // The commit seals the chunk and deletes the records; on failure the
  // records stay and the file is hot again (Committer::DropUncommitted).
  Status st = Unpin(f, nullptr);
  if (!st.ok())
    spdlog::error("inode {}: sealing its journaled tail failed: {}", f->ino,
                  st.ToString());
}

void Filesystem::SetDroppedListener(std::function<void(uint64_t)> listener) {
  committer_.SetDroppedListener(std::move(listener));
}

// ---------------------------------------------------------------- names

Result<InodeAttr> Filesystem::GetAttr(uint64_t ino) {
  if (auto f = files_.Find(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    return f->attr;
  }
  return index_->GetInode(ino);
}

Result<InodeAttr> Filesystem::StatAttr(uint64_t ino) {
  auto a = GetAttr(ino);
  if (a.ok()) AddStoredBytes(&*a, files_.Find(ino).get());
  return a;
}

void Filesystem::AddStoredBytes(InodeAttr* a, OpenFile* f) {
  if (!S_ISREG(a->mode) || a->size <= kChunkSize) return;
  const uint64_t size = a->size;
  // Bytes of chunk i that count, at most what the file's size leaves it.
  auto cap = [size](uint64_t i, uint64_t n) {
    const uint64_t start = i * kChunkSize;
    return start >= size ? 0 : std::min(n, size - start);
  };
  std::unique_lock<std::mutex> lock;
  if (f) {
    lock = std::unique_lock<std::mutex>(f->mu);
    if (f->dirty.empty() && f->pending.empty() && f->inflight.empty() &&
        !f->truncate_from)
      lock.unlock();
  }
  uint64_t stored = 0;
  Status st;
  if (!lock.owns_lock()) {
    // Committed refs are the file's bytes. A change landing after this
    // scan makes the kernel ask again: writes, truncates, fallocate and
    // copy_file_range invalidate its cached attributes.
    st = index_->ListChunks(a->ino, [&](uint64_t i, const ChunkRef& r) {
      if (!r.hole) stored += cap(i, r.length);
    });
  } else {
    // Uncommitted changes, as SeekDataHole sees them: a chunk's bytes are
    // its dirty buffer's length (a hot file's tail journal keeps its
    // buffer), else its sealed ref's; a chunk being sealed counts whole.
    // Sealing may still turn a buffer of zeros into a hole, so the kernel
    // must not keep this answer (uncached).
    auto bytes = DataChunksLocked(f);
    st = bytes.status();
    if (bytes.ok())
      for (const auto& [i, n] : *bytes) stored += cap(i, n);
    a->uncached = true;
  }
  // st_blocks is advisory: on an error the size stands.
  if (st.ok()) a->stored_bytes = stored;
}

Result<InodeAttr> Filesystem::Lookup(uint64_t parent, const std::string& name) {
  auto e = namespace_.Lookup(parent, name);
  if (!e.ok()) return e.status();
  if (S_ISREG(e->mode)) siblings_.NoteLookup(parent, e->ino);
  return StatAttr(e->ino);
}

std::vector<uint64_t> Filesystem::RegularFilesOf(uint64_t dir) {
  std::vector<uint64_t> files;
  namespace_
      .ReadDir(dir, "",
               [&](const DirEntry& e) {
                 if (S_ISREG(e.mode)) files.push_back(e.ino);
                 return files.size() < 16384;  // what it remembers at most
               })
      .IgnoreError();
  return files;
}

Result<InodeAttr> Filesystem::MakeNode(uint64_t parent, const std::string& name,
                                       uint32_t mode, uint64_t rdev,
                                       uint32_t uid, uint32_t gid,
                                       const std::string& symlink) {
  return namespace_.MakeNode(parent, name, mode, rdev, uid, gid, symlink);
}

Status Filesystem::Unlink(uint64_t parent, const std::string& name) {
  return namespace_.Unlink(parent, name);
}

Result<InodeAttr> Filesystem::Link(uint64_t ino, uint64_t new_parent,
                                   const std::string& new_name) {
  WAVEFS_RETURN_IF_ERROR(namespace_.Link(ino, new_parent, new_name));
  return StatAttr(ino);
}

Status Filesystem::Rmdir(uint64_t parent, const std::string& name) {
  return namespace_.Rmdir(parent, name);
}

Status Filesystem::Rename(uint64_t parent, const std::string& name,
                          uint64_t new_parent, const std::string& new_name,
                          unsigned flags) {
  return namespace_.Rename(parent, name, new_parent, new_name, flags);
}

Result<std::string> Filesystem::ReadLink(uint64_t ino) {
  return namespace_.ReadLink(ino);
}

Status Filesystem::ReadDir(uint64_t ino, const std::string& after,
                           const std::function<bool(const DirEntry&)>& fn) {
  if (!siblings_.enabled()) return namespace_.ReadDir(ino, after, fn);
  // The regular files the caller took, in order, for SiblingPrefetch.
  std::vector<uint64_t> files;
  Status st = namespace_.ReadDir(ino, after, [&](const DirEntry& e) {
    if (!fn(e)) return false;
    if (S_ISREG(e.mode)) files.push_back(e.ino);
    return true;
  });
  siblings_.NoteListing(ino, after.empty(), files);
  return st;
}

Status Filesystem::FsyncDir() { return namespace_.Sync(); }

Status Filesystem::StatFs(struct statvfs* out) {
  // Capacity is what the spill's filesystem has: it is what writes consume
  // first. The chunk store's own space is not visible through this call.
  if (::statvfs(spill_->dir().c_str(), out) != 0)
    return Status::FromErrno(errno, "statvfs " + spill_->dir());
  out->f_namemax = 255;
  return Status::Ok();
}

Result<std::string> Filesystem::GetXattr(uint64_t ino,
                                         const std::string& name) {
  return namespace_.GetXattr(ino, name);
}

Result<std::string> Filesystem::ListXattr(uint64_t ino) {
  return namespace_.ListXattr(ino);
}

Status Filesystem::SetXattr(uint64_t ino, const std::string& name,
                            const std::string& value, int flags) {
  return namespace_.SetXattr(ino, name, value, flags);
}

Status Filesystem::RemoveXattr(uint64_t ino, const std::string& name) {
  return namespace_.RemoveXattr(ino, name);
}

// ------------------------------------------------------------ open state

Status Filesystem::Unpin(const std::shared_ptr<OpenFile>& f, FileHandle* h,
                         Committer::Trigger why, bool commit) {
  Status st;
  bool cool_now = false;
  {
    std::unique_lock<std::mutex> lock(f->mu);
    // The last handle of a file with no name left, and only the journal's
    // pin is left besides: the journal's thread lets go of it next.
    const bool last_handle =
        h != nullptr && f->unlinked && f->hot && f->opens == 2;
    if (f->LastPinOfOrphan() || last_handle) {
      // A temporary file unlinked while open, a database's -journal.
      committer_.DiscardOrphan(f.get(), lock);
    } else if (commit) {
      st = committer_.Commit(f.get(), lock, false, h,
                             h != nullptr ? Committer::Trigger::kClose : why);
    }
    if (h != nullptr) f->writers.erase(h);
    if (h != nullptr && h->read_write) f->read_write_handles -= 1;
    cool_now = last_handle;
  }
  bool unlinked = false;
  files_.Unpin(f, [&](OpenFile* last) {
    pipeline_.ReleaseBuffers(last);
    unlinked = last->unlinked;
  });
  if (cool_now) journal_.CoolNow(f);
  if (unlinked) WAVEFS_RETURN_IF_ERROR(namespace_.DeleteOrphan(f->ino));
  return st;
}

Result<std::unique_ptr<FileHandle>> Filesystem::Open(uint64_t ino, int flags) {
  auto f = files_.Pin(ino);
  if (!f.ok()) return f.status();
  auto h = std::make_unique<FileHandle>();
  h->file = *f;
  if (committer_.TakeDropped(ino)) h->keep_cache = false;
  if ((flags & O_ACCMODE) != O_WRONLY && !(flags & O_TRUNC))
    siblings_.NoteOpen(ino);
  if ((flags & O_ACCMODE) == O_RDWR) {
    std::lock_guard<std::mutex> lock(h->file->mu);
    h->read_write = true;
    h->file->read_write_handles += 1;
  }
  if (flags & O_TRUNC) {
    // The kernel sends O_TRUNC with the open (atomic O_TRUNC) instead of a
    // setattr: empty the file here, and commit it, as ext4 would.
    Status st;
    {
      std::unique_lock<std::mutex> lock(h->file->mu);
      if (S_ISREG(h->file->attr.mode)) {
        committer_.DropIfFailed(h->file.get());
        st = committer_.ReplayIfNeeded(h->file.get(), lock);
        if (st.ok()) {
          ChangeScope change(h->file.get(), lock, options_.hooks.change_waits);
          st = Truncate(h->file.get(), lock, 0);
        }
        if (st.ok())
          st = committer_.Commit(h->file.get(), lock, false, nullptr);
      }
    }
    if (!st.ok()) {
      Unpin(h->file, h.get()).IgnoreError();
      return st;
    }
  }
  return h;
}

Status Filesystem::Release(std::unique_ptr<FileHandle> h) {
  return Unpin(h->file, h.get());
}

uint32_t Filesystem::ModeOf(FileHandle* h) {
  std::lock_guard<std::mutex> lock(h->file->mu);
  return h->file->attr.mode;
}

Status Filesystem::Flush(FileHandle* h) {
  std::unique_lock<std::mutex> lock(h->file->mu);
  return committer_.Commit(h->file.get(), lock, false, h,
                           Committer::Trigger::kClose);
}

Status Filesystem::Fsync(FileHandle* h) {
  std::unique_lock<std::mutex> lock(h->file->mu);
  return committer_.Commit(h->file.get(), lock, true, h,
                           Committer::Trigger::kFsync);
}

Status Filesystem::CommitAll() {
  Status first;
  for (auto& f : files_.All()) {
    std::unique_lock<std::mutex> lock(f->mu);
    Status st = committer_.Commit(f.get(), lock, true, nullptr);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

void Filesystem::SealDirtyForTest(uint64_t ino) {
  if (auto f = files_.Find(ino)) {
    std::unique_lock<std::mutex> lock(f->mu);
    pipeline_.SubmitAll(f.get(), lock);
  }
}

std::pair<size_t, size_t> Filesystem::UncommittedForTest(uint64_t ino) {
  auto f = files_.Find(ino);
  if (!f) return {0, 0};
  std::lock_guard<std::mutex> lock(f->mu);
  return {f->pending.size(), f->inflight.size()};
}

// ------------------------------------------------------------- file size

Status Filesystem::Truncate(OpenFile* f, std::unique_lock<std::mutex>& lock,
                            uint64_t n) {
  if (!S_ISREG(f->attr.mode))
    return Status::Error(S_ISDIR(f->attr.mode) ? Code::kIsDir : Code::kInvalid,
                         "truncate of a non-regular file");
  if (n > kMaxFileSize)
    return Status::Error(Code::kTooBig, "file size over the limit");
  const uint64_t keep = ChunkCountFor(n);
  const uint64_t tail = n % kChunkSize;
  // The chunk holding the new end keeps only the bytes before it: bring it
  // into a buffer first (the one step that can fail, and that may release
  // the lock), so a failed truncate changes nothing. From then on the lock
  // is held to the end, and seals that were in flight for cut chunks are
  // discarded when they finish (ForgetChunks).
  while (n < f->attr.size && tail != 0 && !f->dirty.count(n / kChunkSize))
    WAVEFS_RETURN_IF_ERROR(pipeline_.AcquireDirty(f, n / kChunkSize, lock));
  pipeline_.ForgetChunks(f, keep, ~0ull);
  if (n < f->attr.size) {
    f->truncate_from = std::min(f->truncate_from.value_or(keep), keep);
    if (tail != 0) {
      auto& d = f->dirty[n / kChunkSize];
      if (d.len > tail) d.len = static_cast<uint32_t>(tail);
    }
  }
  f->attr.size = n;
  StampChange(f, true);
  f->attr_dirty = true;
  f->unlogged_change = true;
  return Status::Ok();
}

void Filesystem::StampChange(OpenFile* f, bool data) {
  if (kernel_keeps_times_.load(std::memory_order_relaxed)) return;
  const timespec now = WallNow();
  if (data) f->attr.mtime = now;
  f->attr.ctime = now;
}

Result<InodeAttr> Filesystem::SetAttr(uint64_t ino, const AttrChange& c,
                                      pid_t caller) {
  auto fr = files_.Pin(ino);
  if (!fr.ok()) return fr.status();
  std::shared_ptr<OpenFile> f = *fr;
  Status st;
  InodeAttr out;
  bool leave_to_close = false;
  {
    std::unique_lock<std::mutex> lock(f->mu);
    // Changes a failed seal already doomed go first, not with this one.
    committer_.DropIfFailed(f.get());
    st = committer_.ReplayIfNeeded(f.get(), lock);
    if (st.ok() && c.size) {
      ChangeScope change(f.get(), lock, options_.hooks.change_waits);
      st = Truncate(f.get(), lock, *c.size);
    }
    if (st.ok()) {
      const timespec now = WallNow();
      InodeAttr& a = f->attr;
      if (c.mode) a.mode = (a.mode & S_IFMT) | (*c.mode & 07777);
      if (c.uid) a.uid = *c.uid;
      if (c.gid) a.gid = *c.gid;
      if (c.atime) a.atime = c.atime->tv_nsec == UTIME_NOW ? now : *c.atime;
      if (c.mtime) a.mtime = c.mtime->tv_nsec == UTIME_NOW ? now : *c.mtime;
      a.ctime = c.ctime.value_or(now);
      f->attr_dirty = true;
      out = a;
      // The caller's own handle has writes in flight: its close commits
      // this too (Committer::Commit writes f->attr; TryJournal seals when
      // mode or owner changed). tar's futimens, fchown and fchmod of each
      // file cost a seal and two more index commits before.
      if (!c.size && caller != 0) {
        for (const auto& [h, gen] : f->writers)
          if (h->opener == caller) leave_to_close = true;
      }
    }
  }
  // Times alone (touch, and the kernel's mtime before each fsync and close
  // with the writeback cache) may go into the tail journal; anything else
  // seals.
  const bool times_only = !c.size && !c.mode && !c.uid && !c.gid;
  Status unpin = Unpin(f, nullptr,
                       times_only ? Committer::Trigger::kSetTimes
                                  : Committer::Trigger::kInternal,
                       !leave_to_close);
  if (!st.ok()) return st;
  if (!unpin.ok()) return unpin;
  AddStoredBytes(&out, files_.Find(ino).get());
  return out;
}

Status Filesystem::ZeroRange(OpenFile* f, std::unique_lock<std::mutex>& lock,
                             uint64_t start, uint64_t end) {
  for (uint64_t idx = start / kChunkSize; idx * kChunkSize < end; ++idx) {
    const uint64_t base = idx * kChunkSize;
    if (base >= f->attr.size) break;
    const uint64_t in_file = std::min(kChunkSize, f->attr.size - base);
    const uint64_t from = std::max(start, base) - base;
    const uint64_t to = std::min(end - base, in_file);
    if (from >= to) continue;
    f->unlogged_change = true;
    if (from == 0 && to == in_file) {
      // The whole chunk (as far as the file goes) is zero now: a hole.
      pipeline_.ForgetChunks(f, idx, idx + 1);
      ChunkRef hole;
      hole.hole = true;
      hole.length = static_cast<uint32_t>(in_file);
      f->pending[idx] = hole;
      continue;
    }
    WAVEFS_RETURN_IF_ERROR(pipeline_.AcquireDirty(f, idx, lock));
    auto& d = f->dirty[idx];
    if (from < d.len) {
      std::memset(d.buf + from, 0, std::min<uint64_t>(to, d.len) - from);
      d.MarkChanged(from, std::min<uint64_t>(to, d.len));
    }
  }
  return Status::Ok();
}

Status Filesystem::Fallocate(FileHandle* h, int mode, uint64_t offset,
                             uint64_t length) {
  const int known = kFallocKeepSize | kFallocPunchHole | kFallocZeroRange;
  if ((mode & ~known) != 0 ||
      ((mode & kFallocPunchHole) && !(mode & kFallocKeepSize)) ||
      ((mode & kFallocPunchHole) && (mode & kFallocZeroRange)))
    return Status::Error(Code::kNotSupported, "fallocate mode not supported");
  if (length == 0) return Status::Error(Code::kInvalid, "fallocate of 0 bytes");
  const uint64_t end = offset + length;
  if (end > kMaxFileSize || end < offset)
    return Status::Error(Code::kTooBig, "fallocate past the file size limit");
  OpenFile* f = h->file.get();
  std::unique_lock<std::mutex> lock(f->mu);
  if (!S_ISREG(f->attr.mode))
    return Status::Error(Code::kInvalid, "fallocate of a non-regular file");
  if (!f->error.ok()) return f->error;
  WAVEFS_RETURN_IF_ERROR(committer_.ReplayIfNeeded(f, lock));
  ChangeScope change(f, lock, options_.hooks.change_waits);
  f->unlogged_change = true;
  if (mode & (kFallocPunchHole | kFallocZeroRange)) {
    WAVEFS_RETURN_IF_ERROR(ZeroRange(f, lock, offset, end));
    f->write_gen += 1;
    f->writers[h] = f->write_gen;
  }
  const bool grows = !(mode & kFallocKeepSize) && end > f->attr.size;
  // Nothing is preallocated (chunks are written when sealed); the bytes
  // up to the new size read as zeros.
  if (grows) f->attr.size = end;
  // mtime when the bytes or the size changed; ctime always.
  StampChange(f, grows || (mode & (kFallocPunchHole | kFallocZeroRange)));
  f->attr_dirty = true;
  return Status::Ok();
}

// ------------------------------------------------------------- data paths

Result<size_t> Filesystem::Write(FileHandle* h, uint64_t offset,
                                 const char* data, size_t size,
                                 bool writeback) {
  MemorySource src(data);
  return Write(h, offset, &src, size, writeback);
}

Result<size_t> Filesystem::Write(FileHandle* h, uint64_t offset,
                                 WriteSource* src, size_t size,
                                 bool writeback) {
  OpenFile* f = h->file.get();
  if (offset + size > kMaxFileSize || offset + size < offset)
    return Status::Error(Code::kTooBig, "write past the file size limit");
  std::unique_lock<std::mutex> lock(f->mu);
  WAVEFS_RETURN_IF_ERROR(committer_.ReplayIfNeeded(f, lock));
  ChangeScope change(f, lock, options_.hooks.change_waits);
  auto n = pipeline_.Write(f, h, lock, offset, src, size, writeback);
  if (!n.ok()) return n;
  StampChange(f, true);
  f->attr_dirty = true;
  change.End();  // the commit below waits for changes to end
  committer_.CommitLongWrite(f, lock);
  return n;
}

Result<size_t> Filesystem::Read(FileHandle* h, uint64_t offset, size_t size,
                                char* out) {
  CopyingSink sink(out);
  return Read(h, offset, size, &sink);
}

Result<size_t> Filesystem::Read(FileHandle* h, uint64_t offset, size_t size,
                                ReadSink* sink) {
  OpenFile* f = h->file.get();
  std::unique_lock<std::mutex> lock(f->mu);
  return reader_.ReadFile(f, lock, offset, size, sink);
}

Result<std::map<uint64_t, uint64_t>> Filesystem::DataChunksLocked(OpenFile* f) {
  // Committed refs (unless cut), then pending refs, then buffers: a
  // chunk's bytes are its dirty buffer's length, else its newest sealed
  // ref's; a chunk being sealed counts whole.
  std::map<uint64_t, uint64_t> data;
  WAVEFS_RETURN_IF_ERROR(
      index_->ListChunks(f->ino, [&](uint64_t i, const ChunkRef& r) {
        if (!r.hole && !(f->truncate_from && i >= *f->truncate_from))
          data[i] = r.length;
      }));
  for (const auto& [i, r] : f->pending) {
    if (r.hole)
      data.erase(i);
    else
      data[i] = r.length;
  }
  for (const auto& [i, d] : f->dirty) data[i] = d.len;
  for (uint64_t i : f->inflight)
    if (!f->dirty.count(i)) data[i] = kChunkSize;
  return data;
}

Result<uint64_t> Filesystem::SeekDataHole(FileHandle* h, uint64_t offset,
                                          int whence) {
  OpenFile* f = h->file.get();
  std::unique_lock<std::mutex> lock(f->mu);
  const uint64_t size = f->attr.size;
  if (offset >= size) return NoSuchOffset("seek past the end of the file");
  // A shared writable mapping may hold written pages the daemon has not
  // seen yet (the kernel does not write them back before asking), anywhere
  // in the file: while one may exist, every byte counts as data and the
  // only hole is the end, which POSIX allows. (A mapping cannot change the
  // size; a write(2) reaches the daemon before it returns.)
  if (f->read_write_handles > 0) return whence == SEEK_DATA ? offset : size;
  auto data = DataChunksLocked(f);
  if (!data.ok()) return data.status();
  const uint64_t first = offset / kChunkSize;
  if (whence == SEEK_DATA) {
    auto it = data->lower_bound(first);
    if (it == data->end() || it->first * kChunkSize >= size)
      return NoSuchOffset("no data past the offset");
    return std::max(offset, it->first * kChunkSize);
  }
  uint64_t idx = first;
  while (data->count(idx)) ++idx;
  return std::min(size, std::max(offset, idx * kChunkSize));
}

Result<uint64_t> Filesystem::CopyBytes(FileHandle* in, uint64_t off_in,
                                       FileHandle* out, uint64_t off_out,
                                       uint64_t n) {
  std::vector<char> buf(std::min<uint64_t>(n, 1 << 20));
  uint64_t done = 0;
  while (done < n) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(n - done, buf.size()));
    auto got = Read(in, off_in + done, want, buf.data());
    if (!got.ok()) return done > 0 ? Result<uint64_t>(done) : got.status();
    if (*got == 0) break;
    auto put = Write(out, off_out + done, buf.data(), *got);
    if (!put.ok()) return done > 0 ? Result<uint64_t>(done) : put.status();
    done += *put;
    if (*put < *got) break;
  }
  return done;
}

Result<uint64_t> Filesystem::CopyRange(FileHandle* in, uint64_t off_in,
                                       FileHandle* out, uint64_t off_out,
                                       uint64_t length) {
  OpenFile* src = in->file.get();
  OpenFile* dst = out->file.get();
  uint64_t src_size = 0;
  {
    std::unique_lock<std::mutex> lock(dst->mu);
    WAVEFS_RETURN_IF_ERROR(committer_.ReplayIfNeeded(dst, lock));
  }
  {
    // Seal and commit the source, so its chunks have refs to share.
    std::unique_lock<std::mutex> lock(src->mu);
    WAVEFS_RETURN_IF_ERROR(committer_.Commit(src, lock, false, nullptr));
    src_size = src->attr.size;
  }
  if (off_in >= src_size || length == 0) return static_cast<uint64_t>(0);
  length = std::min(length, src_size - off_in);
  if (off_out + length > kMaxFileSize || off_out + length < off_out)
    return Status::Error(Code::kTooBig, "copy past the file size limit");
  uint64_t done = 0;
  uint64_t shared = 0;
  while (done < length) {
    const uint64_t si = off_in + done;
    const uint64_t di = off_out + done;
    const uint64_t n = std::min(kChunkSize, src_size - si);
    bool took = false;
    if (si % kChunkSize == 0 && di % kChunkSize == 0 && length - done >= n) {
      // A whole source chunk onto a chunk boundary: share its ref.
      std::optional<ChunkRef> ref;
      bool clean = false;
      // gc (store/gc.h): between reading the source's ref and recording it
      // in the destination, the copy's reference is nowhere gc looks.
      std::shared_lock<std::shared_mutex> gate(index_->ref_gate());
      {
        std::lock_guard<std::mutex> lock(src->mu);
        const uint64_t idx = si / kChunkSize;
        if (!src->dirty.count(idx) && !src->inflight.count(idx) &&
            src->attr.size >= si + n) {
          auto r = RefOf(index_, src, idx);
          if (!r.ok()) return r.status();
          ref = *r;
          clean = true;
          // Two files name it now: a held chunk can no longer be dropped
          // when the source moves on (store/index.h). Under src->mu, which
          // the source's commits (the only drops of its held chunks) take.
          if (ref && !ref->hole) index_->Retain(ref->address);
        }
      }
      if (clean) {
        ChunkRef r;
        if (ref && !ref->hole) {
          r = *ref;
        } else {
          r.hole = true;
          r.length = static_cast<uint32_t>(n);
        }
        // The ref and the size go in together, mu held throughout: a
        // commit sealing meanwhile records both or neither, so this needs
        // no ChangeScope (and must not wait for one under the gate).
        std::lock_guard<std::mutex> lock(dst->mu);
        // A short last chunk replaces the destination chunk only when the
        // destination has nothing after it in that chunk.
        if (!dst->error.ok()) return dst->error;
        if (n == kChunkSize || dst->attr.size <= di + n) {
          const uint64_t idx = di / kChunkSize;
          pipeline_.ForgetChunks(dst, idx, idx + 1);
          dst->pending[idx] = r;
          dst->attr.size = std::max(dst->attr.size, di + n);
          dst->write_gen += 1;
          dst->writers[out] = dst->write_gen;
          StampChange(dst, true);
          dst->attr_dirty = true;
          took = true;
          shared += 1;
        }
      }
    }
    if (took) {
      done += n;
      continue;
    }
    // Up to the next chunk boundary of the source, through the data paths.
    const uint64_t step = std::min(length - done, kChunkSize - si % kChunkSize);
    auto copied = CopyBytes(in, si, out, di, step);
    if (!copied.ok()) {
      if (done > 0) break;
      return copied.status();
    }
    done += *copied;
    if (*copied < step) break;
  }
  spdlog::debug("copy_file_range: {} bytes, {} chunk refs shared", done,
                shared);
  return done;
}

// ---------------------------------------------------------- introspection

std::string Filesystem::StatsText(const std::string& extra) {
  Uploader::Stats u = uploader_->stats();
  std::string s;
  auto add = [&](const std::string& k, const std::string& v) {
    s += k + "=" + v + "\n";
  };
  if (counts_ != nullptr) {
    add("store_gets", std::to_string(counts_->gets()));
  }
  add("segment_reads", std::to_string(reader_.segment_reads()));
  add("sibling_prefetches", std::to_string(siblings_.prefetched()));
  add("sibling_queued", std::to_string(siblings_.queued()));
  add("sibling_listings", std::to_string(siblings_.listings()));
  add("tail_cache_hits", std::to_string(pipeline_.tail_cache_hits()));
  add("page_outs", std::to_string(pipeline_.page_outs()));
  add("journal_commits", std::to_string(committer_.journal_commits()));
  add("journal_bytes", std::to_string(committer_.journal_bytes()));
  add("journal_replays", std::to_string(committer_.journal_replays()));
  add("hot_files", std::to_string(journal_.hot_files()));
  add("page_ins", std::to_string(pipeline_.page_ins()));
  add("page_bytes_written", std::to_string(pipeline_.page_bytes_written()));
  add("page_bytes_read", std::to_string(pipeline_.page_bytes_read()));
  add("page_slots", std::to_string(pipeline_.page_slots_used()));
  add("chunk_slots", std::to_string(slots_.total()));
  add("chunk_slots_used", std::to_string(slots_.used()));
  add("chunk_slots_peak", std::to_string(slots_.peak()));
  add("chunk_slot_sheds", std::to_string(slots_.sheds()));
  add("idle_buffers_released", std::to_string(idle_release_.released()));
  add("write_buffers", std::to_string(pipeline_.pool_buffers()));
  add("write_buffer_early_evictions",
      std::to_string(pipeline_.early_evictions()));
  add("read_reuse_buffers", std::to_string(reader_.reuse_buffers()));
  if (counts_ != nullptr) {
    add("store_puts", std::to_string(counts_->puts()));
    add("store_bytes_got", std::to_string(counts_->bytes_got()));
    add("store_bytes_put", std::to_string(counts_->bytes_put()));
  }
  add("pending_chunks", std::to_string(u.pending_chunks));
  add("pending_bytes", std::to_string(u.pending_bytes));
  add("pending_in_index_bytes", std::to_string(index_->staged_body_bytes()));
  add("held_chunks", std::to_string(index_->held_chunks()));
  add("superseded_chunks", std::to_string(index_->superseded_chunks()));
  add("superseded_bytes", std::to_string(index_->superseded_bytes()));
  add("uploaded_chunks", std::to_string(u.uploaded_chunks));
  add("uploaded_bytes", std::to_string(u.uploaded_bytes));
  add("waves", std::to_string(u.waves));
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", u.last_rate_mib_s);
  add("upload_rate_mib_s", rate);
  add("upload_error", u.sticky_error);
  add("lost_chunks", std::to_string(u.lost_chunks));
  return s + extra;
}

Result<DataMap> Filesystem::GetDataMap(uint64_t ino) {
  auto f = files_.Pin(ino);
  if (!f.ok()) return f.status();
  DataMap map;
  Status st;
  {
    std::unique_lock<std::mutex> lock((*f)->mu);
    st = committer_.Commit(f->get(), lock, false, nullptr);
    map.size = (*f)->attr.size;
    // Under the file's lock: its commits cannot drop a held chunk of the
    // map before the map's holder (a share, an export) names it too.
    if (st.ok()) {
      st = index_->ListChunks(ino, [&](uint64_t i, const ChunkRef& r) {
        if (i >= ChunkCountFor(map.size)) return;
        if (!r.hole) index_->Retain(r.address);
        map.chunks.emplace_back(i, r);
      });
    }
  }
  Status unpin = Unpin(*f, nullptr);
  if (!st.ok()) return st;
  if (!unpin.ok()) return unpin;
  return map;
}

Result<std::string> Filesystem::FileState(uint64_t ino) {
  if (auto f = files_.Find(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    if (!f->dirty.empty() || !f->pending.empty() || !f->inflight.empty() ||
        f->attr_dirty)
      return std::string("dirty");
  }
  auto a = index_->GetInode(ino);
  if (!a.ok()) return a.status();
  bool staged = false;
  WAVEFS_RETURN_IF_ERROR(
      index_->ListChunks(ino, [&](uint64_t, const ChunkRef& r) {
        if (!r.hole && !staged) {
          auto q = index_->IsQueued(r.address);
          staged = q.ok() && *q;
        }
      }));
  return std::string(staged ? "uploading" : "stored");
}

}  // namespace wavefs
