#include "fs/filesystem.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include "chunker/crypto.h"

namespace wavefs {

// The in-memory state of an inode while it is open (or pinned by setattr).
struct OpenFile {
  struct Dirty {
    uint8_t* buf = nullptr;
    uint32_t len = 0;      // valid plaintext bytes; past it reads as zeros
    uint64_t touched = 0;  // Filesystem::clock_ at the last write (LRU)
  };

  explicit OpenFile(const InodeAttr& a) : ino(a.ino), attr(a) {}

  const uint64_t ino;
  std::weak_ptr<OpenFile> self;  // set once at creation
  std::mutex mu;                 // guards everything below
  std::condition_variable cv;    // signalled when a seal of this file ends
  int opens = 0;
  InodeAttr attr;  // authoritative while open (committed + uncommitted)
  bool attr_dirty = false;
  bool unlinked = false;
  std::map<uint64_t, Dirty> dirty;        // chunk index -> plaintext buffer
  std::map<uint64_t, ChunkRef> pending;   // sealed and staged, not committed
  std::set<uint64_t> inflight;            // being sealed right now
  std::optional<uint64_t> truncate_from;  // committed refs >= this go
  Status error;  // sticky: a seal failed; reported by the next flush
  uint64_t next_read = ~0ull;  // offset a sequential reader asks for next
  uint64_t run_start = 0;      // where the current sequential run began
};

namespace {

timespec Now() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != std::string::npos)
    return Status::Error(Code::kInvalid, "bad name '" + name + "'");
  if (name.size() > 255)
    return Status::Error(Code::kNameTooLong, "name too long");
  return Status::Ok();
}

}  // namespace

Filesystem::Filesystem(Index* index, Spill* spill, CountingStore* store,
                       Uploader* uploader, const Secret& secret,
                       FsOptions options)
    : index_(index),
      spill_(spill),
      store_(store),
      uploader_(uploader),
      secret_(secret),
      options_(options),
      pool_(options.dirty_buffers, kMaxCiphertextSize),
      cache_(options.cache_chunks) {
  pool_.SetEvictCallback([this] { return EvictOne(); });
  uploader_->SetSpaceFreedCallback([this] {
    space_epoch_ += 1;
    space_cv_.notify_all();
  });
  for (int i = 0; i < std::max(1, options_.seal_threads); ++i)
    sealers_.emplace_back([this] { SealerLoop(); });
  if (options_.prefetch) prefetcher_ = std::thread([this] { PrefetchLoop(); });
}

Filesystem::~Filesystem() {
  {
    std::lock_guard<std::mutex> lock(seal_mu_);
    stopping_ = true;
  }
  seal_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(prefetch_mu_);  // no lost wake-up
  }
  prefetch_cv_.notify_all();
  for (auto& t : sealers_) t.join();
  if (prefetcher_.joinable()) prefetcher_.join();
  uploader_->SetSpaceFreedCallback(nullptr);
  // Buffers still held by open files (none after CommitAll) go back.
  std::lock_guard<std::mutex> lock(open_mu_);
  for (auto& [ino, f] : open_) {
    std::lock_guard<std::mutex> fl(f->mu);
    for (auto& [i, d] : f->dirty) pool_.Release(d.buf);
    f->dirty.clear();
  }
}

// ---------------------------------------------------------------- names

std::shared_ptr<OpenFile> Filesystem::FindOpen(uint64_t ino) {
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_.find(ino);
  return it == open_.end() ? nullptr : it->second;
}

Result<InodeAttr> Filesystem::GetAttr(uint64_t ino) {
  if (auto f = FindOpen(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    return f->attr;
  }
  return index_->GetInode(ino);
}

Result<InodeAttr> Filesystem::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > 255)
    return Status::Error(Code::kNameTooLong, "name too long");
  auto e = index_->Lookup(parent, name);
  if (!e.ok()) return e.status();
  return GetAttr(e->ino);
}

Status Filesystem::ChangeAttr(NsEdit* edit, uint64_t ino,
                              const std::function<void(InodeAttr&)>& fn) {
  auto it = edit->attrs.find(ino);
  if (it == edit->attrs.end()) {
    auto rec = index_->GetInode(ino);
    if (!rec.ok()) return rec.status();
    it = edit->attrs.emplace(ino, *rec).first;
  }
  fn(it->second);
  if (auto f = FindOpen(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    fn(f->attr);
  }
  return Status::Ok();
}

Status Filesystem::CommitNs(NsEdit* edit) {
  for (auto& [ino, attr] : edit->attrs)
    if (!edit->deleted.count(ino)) edit->batch.PutInode(attr);
  for (uint64_t ino : edit->deleted) edit->batch.DeleteInode(ino);
  return index_->Commit(&edit->batch, false);
}

Result<InodeAttr> Filesystem::MakeNode(uint64_t parent, const std::string& name,
                                       uint32_t mode, uint64_t rdev,
                                       uint32_t uid, uint32_t gid,
                                       const std::string& symlink) {
  WAVEFS_RETURN_IF_ERROR(CheckName(name));
  std::lock_guard<std::mutex> ns(ns_mu_);
  auto dir = index_->GetInode(parent);
  if (!dir.ok()) return dir.status();
  if (!S_ISDIR(dir->mode))
    return Status::Error(Code::kNotDir, "parent is not a directory");
  auto existing = index_->Lookup(parent, name);
  if (existing.ok()) return Status::Error(Code::kExists, name + " exists");
  if (existing.status().code() != Code::kNotFound) return existing.status();

  InodeAttr a;
  a.ino = index_->AllocateIno();
  a.mode = mode;
  a.uid = uid;
  a.gid = gid;
  a.rdev = rdev;
  a.nlink = S_ISDIR(mode) ? 2 : 1;
  a.atime = a.mtime = a.ctime = Now();
  if (S_ISLNK(mode)) {
    a.symlink = symlink;
    a.size = symlink.size();
  }
  NsEdit b;
  b.batch.PutInode(a);
  b.batch.PutDirEntry(parent, name, a.ino, mode);
  const timespec now = a.mtime;
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, parent, [&](InodeAttr& p) {
    p.mtime = p.ctime = now;
    if (S_ISDIR(mode)) p.nlink += 1;
  }));
  WAVEFS_RETURN_IF_ERROR(CommitNs(&b));
  return a;
}

Status Filesystem::DropLink(NsEdit* edit, uint64_t ino, const timespec& now) {
  uint32_t nlink = 0;
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(edit, ino, [&](InodeAttr& a) {
    if (a.nlink > 0) a.nlink -= 1;
    a.ctime = now;
    nlink = a.nlink;
  }));
  if (nlink > 0) return Status::Ok();
  if (auto f = FindOpen(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    f->unlinked = true;  // its records go at the last release
    return Status::Ok();
  }
  edit->deleted.insert(ino);
  edit->batch.DeleteChunksFrom(ino, 0);
  return Status::Ok();
}

Result<InodeAttr> Filesystem::Link(uint64_t ino, uint64_t new_parent,
                                   const std::string& new_name) {
  WAVEFS_RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> ns(ns_mu_);
  auto a = GetAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISDIR(a->mode))
    return Status::Error(Code::kPermission, "hard links to directories", EPERM);
  auto dir = index_->GetInode(new_parent);
  if (!dir.ok()) return dir.status();
  if (!S_ISDIR(dir->mode))
    return Status::Error(Code::kNotDir, "parent is not a directory");
  auto existing = index_->Lookup(new_parent, new_name);
  if (existing.ok()) return Status::Error(Code::kExists, new_name + " exists");
  if (existing.status().code() != Code::kNotFound) return existing.status();
  NsEdit b;
  const timespec now = Now();
  b.batch.PutDirEntry(new_parent, new_name, ino, a->mode);
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, ino, [&](InodeAttr& x) {
    x.nlink += 1;
    x.ctime = now;
  }));
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(
      &b, new_parent, [&](InodeAttr& p) { p.mtime = p.ctime = now; }));
  WAVEFS_RETURN_IF_ERROR(CommitNs(&b));
  return GetAttr(ino);
}

Status Filesystem::Unlink(uint64_t parent, const std::string& name) {
  std::lock_guard<std::mutex> ns(ns_mu_);
  auto e = index_->Lookup(parent, name);
  if (!e.ok()) return e.status();
  if (S_ISDIR(e->mode))
    return Status::Error(Code::kIsDir, name + " is a directory");
  NsEdit b;
  b.batch.DeleteDirEntry(parent, name);
  const timespec now = Now();
  WAVEFS_RETURN_IF_ERROR(
      ChangeAttr(&b, parent, [&](InodeAttr& p) { p.mtime = p.ctime = now; }));
  WAVEFS_RETURN_IF_ERROR(DropLink(&b, e->ino, now));
  return CommitNs(&b);
}

Status Filesystem::Rmdir(uint64_t parent, const std::string& name) {
  std::lock_guard<std::mutex> ns(ns_mu_);
  auto e = index_->Lookup(parent, name);
  if (!e.ok()) return e.status();
  if (!S_ISDIR(e->mode))
    return Status::Error(Code::kNotDir, name + " is not a directory");
  auto empty = index_->DirIsEmpty(e->ino);
  if (!empty.ok()) return empty.status();
  if (!*empty) return Status::Error(Code::kNotEmpty, name + " is not empty");
  NsEdit b;
  b.batch.DeleteDirEntry(parent, name);
  b.deleted.insert(e->ino);
  const timespec now = Now();
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, parent, [&](InodeAttr& p) {
    p.mtime = p.ctime = now;
    if (p.nlink > 2) p.nlink -= 1;
  }));
  return CommitNs(&b);
}

Status Filesystem::Rename(uint64_t parent, const std::string& name,
                          uint64_t new_parent, const std::string& new_name,
                          unsigned flags) {
  constexpr unsigned kNoReplace = 1;  // RENAME_NOREPLACE
  if (flags & ~kNoReplace)
    return Status::Error(Code::kInvalid, "unsupported rename flags");
  WAVEFS_RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> ns(ns_mu_);
  auto src = index_->Lookup(parent, name);
  if (!src.ok()) return src.status();
  auto np = index_->GetInode(new_parent);
  if (!np.ok()) return np.status();
  if (!S_ISDIR(np->mode))
    return Status::Error(Code::kNotDir, "target parent is not a directory");
  auto dst = index_->Lookup(new_parent, new_name);
  if (!dst.ok() && dst.status().code() != Code::kNotFound) return dst.status();
  const bool src_dir = S_ISDIR(src->mode);
  NsEdit b;
  const timespec now = Now();
  if (dst.ok()) {
    if (flags & kNoReplace)
      return Status::Error(Code::kExists, new_name + " exists");
    if (dst->ino == src->ino) return Status::Ok();
    const bool dst_dir = S_ISDIR(dst->mode);
    if (dst_dir && !src_dir)
      return Status::Error(Code::kIsDir, new_name + " is a directory");
    if (!dst_dir && src_dir)
      return Status::Error(Code::kNotDir, new_name + " is not a directory");
    if (dst_dir) {
      auto empty = index_->DirIsEmpty(dst->ino);
      if (!empty.ok()) return empty.status();
      if (!*empty)
        return Status::Error(Code::kNotEmpty, new_name + " is not empty");
      b.deleted.insert(dst->ino);
      WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, new_parent, [&](InodeAttr& p) {
        if (p.nlink > 2) p.nlink -= 1;
      }));
    } else {
      WAVEFS_RETURN_IF_ERROR(DropLink(&b, dst->ino, now));
    }
  }
  // Moving a directory into its own subtree is refused by the kernel's
  // rename checks before the request reaches us.
  b.batch.DeleteDirEntry(parent, name);
  b.batch.PutDirEntry(new_parent, new_name, src->ino, src->mode);
  WAVEFS_RETURN_IF_ERROR(
      ChangeAttr(&b, src->ino, [&](InodeAttr& a) { a.ctime = now; }));
  WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, parent, [&](InodeAttr& p) {
    p.mtime = p.ctime = now;
    if (src_dir && parent != new_parent && p.nlink > 2) p.nlink -= 1;
  }));
  if (new_parent != parent) {
    WAVEFS_RETURN_IF_ERROR(ChangeAttr(&b, new_parent, [&](InodeAttr& p) {
      p.mtime = p.ctime = now;
      if (src_dir) p.nlink += 1;
    }));
  }
  return CommitNs(&b);
}

Result<std::string> Filesystem::ReadLink(uint64_t ino) {
  auto a = index_->GetInode(ino);
  if (!a.ok()) return a.status();
  if (!S_ISLNK(a->mode)) return Status::Error(Code::kInvalid, "not a symlink");
  return a->symlink;
}

Status Filesystem::ReadDir(uint64_t ino, const std::string& after,
                           const std::function<bool(const DirEntry&)>& fn) {
  return index_->ListDir(ino, after, fn);
}

Status Filesystem::StatFs(struct statvfs* out) {
  // Capacity is what the spill's filesystem has: it is what writes consume
  // first. The chunk store's own space is not visible through this call.
  if (::statvfs(spill_->dir().c_str(), out) != 0)
    return Status::FromErrno(errno, "statvfs " + spill_->dir());
  out->f_namemax = 255;
  return Status::Ok();
}

// ------------------------------------------------------------ open state

Result<std::shared_ptr<OpenFile>> Filesystem::PinFile(uint64_t ino) {
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_.find(ino);
  std::shared_ptr<OpenFile> f;
  if (it != open_.end()) {
    f = it->second;
  } else {
    auto a = index_->GetInode(ino);
    if (!a.ok()) return a.status();
    f = std::make_shared<OpenFile>(*a);
    f->self = f;
    open_[ino] = f;
  }
  std::lock_guard<std::mutex> fl(f->mu);
  f->opens += 1;
  return f;
}

Status Filesystem::Unpin(const std::shared_ptr<OpenFile>& f) {
  Status st;
  {
    std::unique_lock<std::mutex> lock(f->mu);
    st = Commit(f.get(), f, lock, false);
  }
  bool drop = false;
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    std::lock_guard<std::mutex> fl(f->mu);
    f->opens -= 1;
    if (f->opens == 0) {
      for (auto& [i, d] : f->dirty) pool_.Release(d.buf);
      f->dirty.clear();
      open_.erase(f->ino);
      drop = f->unlinked;
    }
  }
  if (drop) {
    std::lock_guard<std::mutex> ns(ns_mu_);
    IndexBatch b;
    b.DeleteInode(f->ino);
    b.DeleteChunksFrom(f->ino, 0);
    WAVEFS_RETURN_IF_ERROR(index_->Commit(&b, false));
  }
  return st;
}

Result<std::unique_ptr<FileHandle>> Filesystem::Open(uint64_t ino) {
  auto f = PinFile(ino);
  if (!f.ok()) return f.status();
  auto h = std::make_unique<FileHandle>();
  h->file = *f;
  {
    std::lock_guard<std::mutex> lock(dropped_mu_);
    if (dropped_.erase(ino) > 0) h->keep_cache = false;
  }
  return h;
}

Status Filesystem::Release(std::unique_ptr<FileHandle> h) {
  return Unpin(h->file);
}

Status Filesystem::Flush(FileHandle* h) {
  std::unique_lock<std::mutex> lock(h->file->mu);
  return Commit(h->file.get(), h->file, lock, false);
}

Status Filesystem::Fsync(FileHandle* h) {
  std::unique_lock<std::mutex> lock(h->file->mu);
  return Commit(h->file.get(), h->file, lock, true);
}

Status Filesystem::CommitAll() {
  std::vector<std::shared_ptr<OpenFile>> files;
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    for (auto& [ino, f] : open_) files.push_back(f);
  }
  Status first;
  for (auto& f : files) {
    std::unique_lock<std::mutex> lock(f->mu);
    Status st = Commit(f.get(), f, lock, true);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Result<InodeAttr> Filesystem::SetAttr(uint64_t ino, const AttrChange& c) {
  auto fr = PinFile(ino);
  if (!fr.ok()) return fr.status();
  std::shared_ptr<OpenFile> f = *fr;
  Status st;
  InodeAttr out;
  {
    std::unique_lock<std::mutex> lock(f->mu);
    const timespec now = Now();
    InodeAttr& a = f->attr;
    if (c.size) {
      if (!S_ISREG(a.mode)) {
        st = Status::Error(S_ISDIR(a.mode) ? Code::kIsDir : Code::kInvalid,
                           "truncate of a non-regular file");
      } else if (*c.size > kMaxFileSize) {
        st = Status::Error(Code::kTooBig, "file size over the limit");
      } else {
        // Settle seals in flight, then cut the refs past the new end.
        f->cv.wait(lock, [&] { return f->inflight.empty(); });
        const uint64_t n = *c.size;
        const uint64_t keep = ChunkCountFor(n);
        const uint64_t tail = n % kChunkSize;
        // The chunk holding the new end keeps only bytes before it: bring it
        // into a buffer first (the one step that can fail), so a failed
        // truncate changes nothing, and cut it below so a later extension
        // reads zeros.
        if (n < a.size && tail != 0)
          st = AcquireDirty(f.get(), n / kChunkSize, lock);
        if (st.ok()) {
          for (auto it = f->dirty.lower_bound(keep); it != f->dirty.end();) {
            pool_.Release(it->second.buf);
            it = f->dirty.erase(it);
          }
          f->pending.erase(f->pending.lower_bound(keep), f->pending.end());
          if (n < a.size) {
            f->truncate_from = std::min(f->truncate_from.value_or(keep), keep);
            if (tail != 0) {
              auto& d = f->dirty[n / kChunkSize];
              if (d.len > tail) d.len = static_cast<uint32_t>(tail);
            }
          }
        }
        if (st.ok()) {
          a.size = n;
          a.mtime = a.ctime = now;
        }
      }
    }
    if (st.ok()) {
      if (c.mode) a.mode = (a.mode & S_IFMT) | (*c.mode & 07777);
      if (c.uid) a.uid = *c.uid;
      if (c.gid) a.gid = *c.gid;
      if (c.atime) a.atime = c.atime->tv_nsec == UTIME_NOW ? now : *c.atime;
      if (c.mtime) a.mtime = c.mtime->tv_nsec == UTIME_NOW ? now : *c.mtime;
      a.ctime = now;
      f->attr_dirty = true;
      out = a;
    }
  }
  Status unpin = Unpin(f);
  if (!st.ok()) return st;
  if (!unpin.ok()) return unpin;
  return out;
}

// ------------------------------------------------------------ write path

Result<std::optional<ChunkRef>> Filesystem::RefOf(OpenFile* f, uint64_t idx) {
  auto p = f->pending.find(idx);
  if (p != f->pending.end()) return std::optional<ChunkRef>(p->second);
  if (f->truncate_from && idx >= *f->truncate_from)
    return std::optional<ChunkRef>();
  return index_->GetChunk(f->ino, idx);
}

Result<ChunkData> Filesystem::FetchChunk(const ChunkRef& ref) {
  return cache_.GetOrLoad(ref.address, [&]() -> Result<ChunkData> {
    std::shared_ptr<std::vector<uint8_t>> buf = ChunkBuffer();
    WAVEFS_RETURN_IF_ERROR(ReadObject(ref.address, std::nullopt, buf.get()));
    // The AEAD tag authenticates every byte; checking the address too
    // would cost a second hash pass on every read (fsck does that).
    WAVEFS_RETURN_IF_ERROR(
        OpenChunk(ref, options_.chunk_format, buf->data(), buf->size(), false));
    buf->resize(ref.length);
    return ChunkData(std::move(buf));
  });
}

Status Filesystem::ReadObject(
    const Address& address, std::optional<std::pair<uint64_t, uint64_t>> range,
    std::vector<uint8_t>* out) {
  // A staged chunk is read from the spill; once uploaded (its spill file
  // gone) from the store.
  Status st = range
                  ? spill_->ReadRange(address, range->first, range->second, out)
                  : spill_->Read(address, out);
  if (st.code() == Code::kNotFound) {
    st = range ? store_->GetRange(address, range->first, range->second, out)
               : store_->Get(address, out);
  }
  return st.ok() ? st : st.Annotate("fetch chunk " + ToHex(address));
}

Status Filesystem::ReadSegments(const ChunkRef& ref, uint64_t offset,
                                uint64_t len, char* dst) {
  const SegmentRange range = SegmentsCovering(ref.length, offset, len);
  std::shared_ptr<std::vector<uint8_t>> buf = ChunkBuffer();
  WAVEFS_RETURN_IF_ERROR(ReadObject(
      ref.address, std::make_pair(range.ct_offset, range.ct_len), buf.get()));
  WAVEFS_RETURN_IF_ERROR(OpenSegments(ref, range, buf->data(), buf->size()));
  std::memcpy(dst, buf->data() + (offset - range.pt_offset), len);
  segment_reads_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

std::shared_ptr<std::vector<uint8_t>> Filesystem::ChunkBuffer() {
  // Reusing chunk-sized vectors saves mapping and faulting in 4 MiB per
  // fetch (chunk buffers come from mmap, see fs/mount.cc): a third of the
  // read path's time. At most kRecycledChunks wait here.
  std::vector<uint8_t>* v = nullptr;
  {
    std::lock_guard<std::mutex> lock(recycle_mu_);
    if (!recycled_.empty()) {
      v = recycled_.back().release();
      recycled_.pop_back();
    }
  }
  if (v == nullptr) v = new std::vector<uint8_t>();
  return std::shared_ptr<std::vector<uint8_t>>(
      v, [this](std::vector<uint8_t>* p) {
        std::unique_ptr<std::vector<uint8_t>> owned(p);
        std::lock_guard<std::mutex> lock(recycle_mu_);
        if (recycled_.size() < kRecycledChunks)
          recycled_.push_back(std::move(owned));
      });
}

Status Filesystem::WaitForSpace(uint64_t bytes) {
  const auto deadline = std::chrono::steady_clock::now() + options_.space_wait;
  bool warned = false;
  while (true) {
    auto free = spill_->FreeBytes();
    if (!free.ok()) return free.status();
    if (*free >= bytes + options_.spill_reserve_bytes) return Status::Ok();
    if (uploader_->stats().pending_chunks == 0 ||
        std::chrono::steady_clock::now() >= deadline) {
      return Status::Error(Code::kNoSpace,
                           "spill directory " + spill_->dir() +
                               " is full and no upload can free space",
                           ENOSPC, false);
    }
    if (!warned) {
      spdlog::warn("spill directory is full; writers wait for uploads");
      warned = true;
    }
    uploader_->Notify();
    std::unique_lock<std::mutex> lock(space_mu_);
    const uint64_t epoch = space_epoch_.load();
    space_cv_.wait_for(lock, std::chrono::milliseconds(500),
                       [&] { return space_epoch_.load() != epoch; });
  }
}

Status Filesystem::AcquireDirty(OpenFile* f, uint64_t idx,
                                std::unique_lock<std::mutex>& lock) {
  while (true) {
    if (f->dirty.count(idx)) return Status::Ok();
    if (f->inflight.count(idx)) {
      f->cv.wait(lock);
      continue;
    }
    // One file holds at most max_buffers_per_file buffers (dirty or being
    // sealed), so the pool is shared fairly between files written at once.
    if (f->dirty.size() + f->inflight.size() >= options_.max_buffers_per_file) {
      if (f->inflight.empty()) {
        auto lru = std::min_element(
            f->dirty.begin(), f->dirty.end(), [](const auto& a, const auto& b) {
              return a.second.touched < b.second.touched;
            });
        SubmitSeal(f->self.lock(), lru->first, lock);
      }
      f->cv.wait(lock);
      continue;
    }
    lock.unlock();
    Status space = WaitForSpace(kMaxCiphertextSize);
    uint8_t* buf = space.ok() ? pool_.Acquire() : nullptr;
    lock.lock();
    if (!space.ok()) return space;
    if (f->dirty.count(idx) || f->inflight.count(idx)) {
      pool_.Release(buf);
      continue;
    }
    // Bring in what the chunk holds now (copy-on-write per chunk).
    uint32_t len = 0;
    auto ref = RefOf(f, idx);
    if (!ref.ok()) {
      pool_.Release(buf);
      return ref.status();
    }
    const uint64_t base = idx * kChunkSize;
    const uint64_t limit =
        f->attr.size > base ? std::min(kChunkSize, f->attr.size - base) : 0;
    if (ref->has_value() && !(*ref)->hole) {
      auto data = FetchChunk(**ref);
      if (!data.ok()) {
        pool_.Release(buf);
        return data.status();
      }
      len = static_cast<uint32_t>(std::min<uint64_t>((*data)->size(), limit));
      std::memcpy(buf, (*data)->data(), len);
    } else if (ref->has_value()) {
      len = static_cast<uint32_t>(std::min<uint64_t>((*ref)->length, limit));
      std::memset(buf, 0, len);
    }
    f->dirty[idx] = OpenFile::Dirty{buf, len};
    return Status::Ok();
  }
}

Filesystem::SealJob Filesystem::TakeForSeal(const std::shared_ptr<OpenFile>& fp,
                                            uint64_t idx) {
  auto it = fp->dirty.find(idx);
  SealJob job{fp, idx, it->second.buf, it->second.len};
  fp->dirty.erase(it);
  fp->inflight.insert(idx);
  seals_in_flight_ += 1;
  return job;
}

void Filesystem::SubmitSeal(const std::shared_ptr<OpenFile>& fp, uint64_t idx,
                            std::unique_lock<std::mutex>& lock) {
  (void)lock;
  SealJob job = TakeForSeal(fp, idx);
  {
    std::lock_guard<std::mutex> sl(seal_mu_);
    seal_queue_.push_back(std::move(job));
  }
  seal_cv_.notify_one();
}

Status Filesystem::StageCiphertext(const Address& address, const uint8_t* data,
                                   size_t len) {
  auto known = index_->IsKnown(address);
  if (!known.ok()) return known.status();
  if (*known) return Status::Ok();  // staged or stored already: dedup
  WAVEFS_RETURN_IF_ERROR(WaitForSpace(len));
  WAVEFS_RETURN_IF_ERROR(spill_->Stage(address, {data, len}));
  auto added = index_->EnqueueStaged(address, len);
  if (!added.ok()) return added.status();
  uploader_->Notify();
  return Status::Ok();
}

void Filesystem::SealAndRecord(const SealJob& job) {
  const ChunkFormat format = options_.chunk_format;
  ChunkRef ref = SealChunk(secret_, format, job.buf, job.len);
  Status st;
  if (!ref.hole)
    st = StageCiphertext(ref.address, job.buf, CiphertextSize(format, job.len));
  pool_.Release(job.buf);
  OpenFile* f = job.file.get();
  {
    std::lock_guard<std::mutex> lock(f->mu);
    if (st.ok()) {
      f->pending[job.index] = ref;
    } else {
      spdlog::error("inode {}: staging chunk {} failed: {}", f->ino, job.index,
                    st.ToString());
      if (f->error.ok()) f->error = st;
    }
    f->inflight.erase(job.index);
  }
  seals_in_flight_ -= 1;
  f->cv.notify_all();
}

void Filesystem::SealerLoop() {
  while (true) {
    SealJob job;
    {
      std::unique_lock<std::mutex> lock(seal_mu_);
      seal_cv_.wait(lock, [&] { return stopping_ || !seal_queue_.empty(); });
      if (seal_queue_.empty()) return;
      job = std::move(seal_queue_.front());
      seal_queue_.pop_front();
    }
    SealAndRecord(job);
  }
}

bool Filesystem::EvictOne() {
  // Buffers being sealed come back by themselves: wait for them rather
  // than seal a half-written chunk (which the writer would then have to
  // read back and seal again).
  if (seals_in_flight_.load() > 0) return true;
  std::vector<std::shared_ptr<OpenFile>> files;
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    for (auto& [ino, f] : open_) files.push_back(f);
  }
  // The least recently written dirty buffer goes first.
  std::shared_ptr<OpenFile> victim;
  uint64_t victim_index = 0;
  uint64_t oldest = ~0ull;
  for (auto& f : files) {
    std::unique_lock<std::mutex> lock(f->mu, std::try_to_lock);
    if (!lock.owns_lock()) continue;
    for (auto& [index, d] : f->dirty) {
      if (d.touched < oldest) {
        oldest = d.touched;
        victim = f;
        victim_index = index;
      }
    }
  }
  if (!victim) return false;
  std::unique_lock<std::mutex> lock(victim->mu);
  if (!victim->dirty.count(victim_index)) return true;  // sealed meanwhile
  SubmitSeal(victim, victim_index, lock);
  return true;
}

Result<size_t> Filesystem::Write(FileHandle* h, uint64_t offset,
                                 const char* data, size_t size) {
  OpenFile* f = h->file.get();
  if (offset + size > kMaxFileSize || offset + size < offset)
    return Status::Error(Code::kTooBig, "write past the file size limit");
  std::unique_lock<std::mutex> lock(f->mu);
  if (!f->error.ok()) return f->error;
  uint64_t pos = offset;
  const uint64_t end = offset + size;
  while (pos < end) {
    const uint64_t idx = pos / kChunkSize;
    const uint32_t in = static_cast<uint32_t>(pos % kChunkSize);
    const uint32_t n =
        static_cast<uint32_t>(std::min<uint64_t>(kChunkSize - in, end - pos));
    Status st = AcquireDirty(f, idx, lock);
    if (!st.ok()) {
      if (pos == offset) return st;
      break;  // a short write: what got in stays
    }
    auto& d = f->dirty[idx];
    d.touched = clock_.fetch_add(1);
    if (in > d.len) std::memset(d.buf + d.len, 0, in - d.len);
    std::memcpy(d.buf + in, data + (pos - offset), n);
    d.len = std::max(d.len, in + n);
    pos += n;
    if (f->attr.size < pos) f->attr.size = pos;
    // A write reaching the end of a chunk means a sequential writer is done
    // with it: seal it now, overlapping with the next writes.
    if (in + n == kChunkSize) SubmitSeal(h->file, idx, lock);
  }
  f->attr.mtime = f->attr.ctime = Now();
  f->attr_dirty = true;
  return static_cast<size_t>(pos - offset);
}

void Filesystem::DropUncommitted(OpenFile* f) {
  for (auto& [i, d] : f->dirty) pool_.Release(d.buf);
  f->dirty.clear();
  f->pending.clear();
  f->truncate_from.reset();
  f->attr_dirty = false;
  auto committed = index_->GetInode(f->ino);
  if (committed.ok()) f->attr = *committed;
  // The kernel cached what was written: the next open must not keep it,
  // and handles open now should see the pages go.
  std::lock_guard<std::mutex> lock(dropped_mu_);
  dropped_.insert(f->ino);
  if (dropped_listener_) dropped_listener_(f->ino);
}

void Filesystem::SetDroppedListener(std::function<void(uint64_t)> listener) {
  std::lock_guard<std::mutex> lock(dropped_mu_);
  dropped_listener_ = std::move(listener);
}

Status Filesystem::Commit(OpenFile* f, const std::shared_ptr<OpenFile>& fp,
                          std::unique_lock<std::mutex>& lock, bool sync) {
  // Seal the buffers dirty now, here in this thread, then wait for every
  // seal in flight. Buffers another handle dirties meanwhile are not this
  // flush's business (its own flush commits them), so this cannot be kept
  // waiting by a busy writer.
  std::vector<uint64_t> mine;
  for (auto& [i, d] : f->dirty) mine.push_back(i);
  std::set<uint64_t> awaited(f->inflight);
  awaited.insert(mine.begin(), mine.end());
  for (uint64_t i : mine) {
    if (!f->dirty.count(i)) continue;
    SealJob job = TakeForSeal(fp, i);
    lock.unlock();
    SealAndRecord(job);
    lock.lock();
  }
  f->cv.wait(lock, [&] {
    for (uint64_t i : awaited)
      if (f->inflight.count(i)) return false;
    return true;
  });
  if (!f->error.ok()) {
    Status err = f->error;
    f->error = Status::Ok();
    spdlog::error("inode {}: changes since the last commit are dropped: {}",
                  f->ino, err.ToString());
    DropUncommitted(f);
    return err;
  }
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
    for (const Address& a : staged) {
      if (!spill_->Contains(a)) continue;
      Status st = spill_->Sync(a);
      if (!st.ok() && st.code() != Code::kNotFound) return st;
    }
  }
  if (!f->attr_dirty && f->pending.empty() && !f->truncate_from && !sync)
    return Status::Ok();
  IndexBatch b;
  if (f->truncate_from) b.DeleteChunksFrom(f->ino, *f->truncate_from);
  for (auto& [i, r] : f->pending) b.PutChunk(f->ino, i, r);
  b.PutInode(f->attr);
  WAVEFS_RETURN_IF_ERROR(index_->Commit(&b, sync));
  f->pending.clear();
  f->truncate_from.reset();
  f->attr_dirty = false;
  return Status::Ok();
}

// ------------------------------------------------------------- read path

Result<size_t> Filesystem::Read(FileHandle* h, uint64_t offset, size_t size,
                                char* out) {
  OpenFile* f = h->file.get();
  std::unique_lock<std::mutex> lock(f->mu);
  if (offset >= f->attr.size) return static_cast<size_t>(0);
  size = static_cast<size_t>(std::min<uint64_t>(size, f->attr.size - offset));
  if (offset != f->next_read) f->run_start = offset;
  uint64_t pos = offset;
  const uint64_t end = offset + size;
  // A run of 2 MiB or more tells a sequential reader (whole chunks, cached,
  // the next one prefetched) from a random 1 MiB read that the kernel split
  // into several requests (which must not cost a 4 MiB fetch).
  const bool sequential = end - f->run_start >= (2u << 20);
  while (pos < end) {
    const uint64_t idx = pos / kChunkSize;
    const uint64_t in = pos % kChunkSize;
    const uint64_t n = std::min<uint64_t>(kChunkSize - in, end - pos);
    char* dst = out + (pos - offset);
    if (f->inflight.count(idx)) {
      f->cv.wait(lock);
      continue;
    }
    auto d = f->dirty.find(idx);
    if (d != f->dirty.end()) {
      const uint64_t have =
          in < d->second.len ? std::min<uint64_t>(n, d->second.len - in) : 0;
      std::memcpy(dst, d->second.buf + in, have);
      std::memset(dst + have, 0, n - have);
      pos += n;
      continue;
    }
    auto ref = RefOf(f, idx);
    if (!ref.ok()) return ref.status();
    if (!ref->has_value() || (*ref)->hole) {
      std::memset(dst, 0, n);
      pos += n;
      continue;
    }
    const ChunkRef r = **ref;
    const uint64_t stored =
        in < r.length ? std::min<uint64_t>(n, r.length - in) : 0;
    if (options_.chunk_format == ChunkFormat::kSegmented && !sequential &&
        stored > 0 && !cache_.Contains(r.address)) {
      // A random read: fetch and open only the segments it covers, and keep
      // nothing (the page cache keeps what the reader reads again).
      lock.unlock();
      Status st = ReadSegments(r, in, stored, dst);
      lock.lock();
      if (!st.ok()) {
        spdlog::error("inode {} chunk {}: {}", f->ino, idx, st.ToString());
        return st;
      }
      std::memset(dst + stored, 0, n - stored);
      pos += n;
      continue;
    }
    lock.unlock();
    auto data = FetchChunk(r);
    lock.lock();
    if (!data.ok()) {
      spdlog::error("inode {} chunk {}: {}", f->ino, idx,
                    data.status().ToString());
      return data.status();
    }
    const uint64_t have =
        in < (*data)->size() ? std::min<uint64_t>(n, (*data)->size() - in) : 0;
    std::memcpy(dst, (*data)->data() + in, have);
    std::memset(dst + have, 0, n - have);
    pos += n;
  }
  f->next_read = end;
  // A sequential reader gets the next chunk fetched ahead of it.
  if (sequential && options_.prefetch) {
    const uint64_t next = ChunkIndexOf(end - 1) + 1;
    if (next * kChunkSize < f->attr.size && !f->dirty.count(next)) {
      auto ref = RefOf(f, next);
      if (ref.ok() && ref->has_value() && !(*ref)->hole &&
          !cache_.Contains((*ref)->address)) {
        std::lock_guard<std::mutex> pl(prefetch_mu_);
        if (prefetch_queue_.size() < 2) prefetch_queue_.push_back(**ref);
        prefetch_cv_.notify_one();
      }
    }
  }
  return size;
}

void Filesystem::PrefetchLoop() {
  while (true) {
    ChunkRef ref;
    {
      std::unique_lock<std::mutex> lock(prefetch_mu_);
      prefetch_cv_.wait(
          lock, [&] { return stopping_.load() || !prefetch_queue_.empty(); });
      if (prefetch_queue_.empty()) return;
      ref = prefetch_queue_.front();
      prefetch_queue_.pop_front();
    }
    auto r = FetchChunk(ref);
    if (!r.ok()) spdlog::warn("prefetch failed: {}", r.status().ToString());
  }
}

// ---------------------------------------------------------- introspection

std::string Filesystem::StatsText(const std::string& extra) {
  Uploader::Stats u = uploader_->stats();
  std::string s;
  auto add = [&](const std::string& k, const std::string& v) {
    s += k + "=" + v + "\n";
  };
  add("store_gets", std::to_string(store_->gets()));
  add("segment_reads", std::to_string(segment_reads_.load()));
  add("store_puts", std::to_string(store_->puts()));
  add("store_bytes_got", std::to_string(store_->bytes_got()));
  add("store_bytes_put", std::to_string(store_->bytes_put()));
  add("pending_chunks", std::to_string(u.pending_chunks));
  add("pending_bytes", std::to_string(u.pending_bytes));
  add("uploaded_chunks", std::to_string(u.uploaded_chunks));
  add("uploaded_bytes", std::to_string(u.uploaded_bytes));
  add("waves", std::to_string(u.waves));
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", u.last_rate_mib_s);
  add("upload_rate_mib_s", rate);
  add("upload_error", u.sticky_error);
  return s + extra;
}

Result<DataMap> Filesystem::GetDataMap(uint64_t ino) {
  auto f = PinFile(ino);
  if (!f.ok()) return f.status();
  DataMap map;
  Status st;
  {
    std::unique_lock<std::mutex> lock((*f)->mu);
    st = Commit(f->get(), *f, lock, false);
    map.size = (*f)->attr.size;
  }
  if (st.ok()) {
    st = index_->ListChunks(ino, [&](uint64_t i, const ChunkRef& r) {
      if (i < ChunkCountFor(map.size)) map.chunks.emplace_back(i, r);
    });
  }
  Status unpin = Unpin(*f);
  if (!st.ok()) return st;
  if (!unpin.ok()) return unpin;
  return map;
}

Result<std::string> Filesystem::FileState(uint64_t ino) {
  if (auto f = FindOpen(ino)) {
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
