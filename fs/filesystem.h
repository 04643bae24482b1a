// Filesystem: wavefs's file semantics, independent of FUSE's types.
//
// fs/fuse_ops.cc turns FUSE requests into calls here and statuses into
// errnos. Everything below is expressed in inode numbers, names and byte
// ranges, so it can be unit-tested with a MemoryStore and no mount.
//
// Write path: a write lands in the dirty buffer of its (inode, chunk index)
// (BufferPool bounds how many exist). A buffer whose chunk is complete, or
// one evicted because the pool ran dry, goes to the sealer threads: seal in
// place, stage the ciphertext in the spill (skipped when the address is
// known: dedup), queue it for upload. flush/fsync/release seal what is left
// and commit refs, size and times in one index batch.
//
// Lock order (outer first): ns_mu_ > open_mu_ > OpenFile::mu > leaf locks
// (pool, cache, space, sealer queue). A thread never waits for the pool, for
// spill space or for a sealer while holding any OpenFile::mu.
// Thread safety: every public method is thread-safe.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chunker/data_map.h"
#include "chunker/types.h"
#include "store/buffer_pool.h"
#include "store/chunk_cache.h"
#include "store/counting_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "store/uploader.h"
#include "util/status.h"

namespace wavefs {

struct FsOptions {
  size_t dirty_buffers = 4;  // chunk buffers for writes (4 MiB each)
  // Most buffers one file may hold (dirty or being sealed): a sequential
  // writer needs one to fill plus one per seal thread.
  size_t max_buffers_per_file = 3;
  size_t cache_chunks = 4;  // decrypted chunks kept for reads
  int seal_threads = 2;
  bool prefetch = true;
  // The store's format: how chunks are sealed, and whether a read may fetch
  // and open only the 64 KiB segments it needs (format 2).
  ChunkFormat chunk_format = kNewestChunkFormat;
  // Staging keeps this much free on the spill's filesystem.
  uint64_t spill_reserve_bytes = 64ull << 20;
  // How long a writer waits for uploads to free spill space before ENOSPC.
  std::chrono::seconds space_wait{60};
};

inline constexpr uint64_t kMaxFileSize = 1ull << 50;

// Which attributes SetAttr changes.
struct AttrChange {
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<timespec> atime;  // tv_nsec == UTIME_NOW for now
  std::optional<timespec> mtime;
};

struct OpenFile;
// What open() hands out; owned by the caller until Release.
struct FileHandle {
  std::shared_ptr<OpenFile> file;
  // False when the kernel may cache pages of this file that are not its
  // content any more (changes were dropped after a failed commit): the open
  // must then not keep the kernel's page cache.
  bool keep_cache = true;
  // readdir continuation for directory handles
  uint64_t dir_offset = 0;
  std::string dir_last_name;
};

class Filesystem {
 public:
  Filesystem(Index* index, Spill* spill, CountingStore* store,
             Uploader* uploader, const Secret& secret, FsOptions options);
  ~Filesystem();

  // Called (with an internal lock held: it must only queue work) with the
  // inode whenever a failed commit drops a file's changes, so the FUSE layer
  // can tell the kernel to forget the pages it cached of them. Empty: none.
  void SetDroppedListener(std::function<void(uint64_t ino)> listener);

  // --- names ---------------------------------------------------------------
  Result<InodeAttr> Lookup(uint64_t parent, const std::string& name);
  Result<InodeAttr> GetAttr(uint64_t ino);
  // Creates a file, directory (S_IFDIR), symlink (S_IFLNK, with target) or
  // special node. kExists when the name is taken.
  Result<InodeAttr> MakeNode(uint64_t parent, const std::string& name,
                             uint32_t mode, uint64_t rdev, uint32_t uid,
                             uint32_t gid, const std::string& symlink = "");
  Status Unlink(uint64_t parent, const std::string& name);
  // A hard link: new_parent/new_name names ino too.
  Result<InodeAttr> Link(uint64_t ino, uint64_t new_parent,
                         const std::string& new_name);
  Status Rmdir(uint64_t parent, const std::string& name);
  // flags: RENAME_NOREPLACE honoured; RENAME_EXCHANGE is kInvalid.
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                const std::string& new_name, unsigned flags);
  Result<InodeAttr> SetAttr(uint64_t ino, const AttrChange& change);
  Result<std::string> ReadLink(uint64_t ino);
  // Directory listing in name order after `after`; fn returns false to stop.
  Status ReadDir(uint64_t ino, const std::string& after,
                 const std::function<bool(const DirEntry&)>& fn);
  Status StatFs(struct statvfs* out);

  // --- file data -------------------------------------------------------------
  Result<std::unique_ptr<FileHandle>> Open(uint64_t ino);
  Result<size_t> Write(FileHandle* h, uint64_t offset, const char* data,
                       size_t size);
  // Reads up to size bytes at offset into out; returns bytes read (short at
  // end of file).
  Result<size_t> Read(FileHandle* h, uint64_t offset, size_t size, char* out);
  Status Flush(FileHandle* h);
  Status Fsync(FileHandle* h);
  Status Release(std::unique_ptr<FileHandle> h);

  // --- introspection
  // ---------------------------------------------------------- "key=value"
  // lines: store and upload counters, pids, directories.
  std::string StatsText(const std::string& extra);
  // "dirty", "uploading" (some chunks still in the spill), or "stored".
  Result<std::string> FileState(uint64_t ino);
  Result<DataMap> GetDataMap(uint64_t ino);

  // Commits every open file (called when the kernel unmounts).
  Status CommitAll();

 private:
  struct SealJob {
    std::shared_ptr<OpenFile> file;
    uint64_t index;
    uint8_t* buf;
    uint32_t len;
  };

  std::shared_ptr<OpenFile> FindOpen(uint64_t ino);
  // Pins (creating when needed) the open state of ino.
  Result<std::shared_ptr<OpenFile>> PinFile(uint64_t ino);
  Status Unpin(const std::shared_ptr<OpenFile>& f);
  // One namespace change: the batch, plus the inode records it edits (so
  // two edits of one inode in one change compose).
  struct NsEdit {
    IndexBatch batch;
    std::map<uint64_t, InodeAttr> attrs;
    std::set<uint64_t> deleted;
  };
  // Applies fn to the inode's record in edit and to its open state.
  Status ChangeAttr(NsEdit* edit, uint64_t ino,
                    const std::function<void(InodeAttr&)>& fn);
  Status CommitNs(NsEdit* edit);
  // Removes one link of ino; its records go when the last link went (now,
  // or at its last release when it is open).
  Status DropLink(NsEdit* edit, uint64_t ino, const timespec& now);

  // Write path helpers; `lock` holds f->mu on entry and on return.
  Status AcquireDirty(OpenFile* f, uint64_t index,
                      std::unique_lock<std::mutex>& lock);
  // Moves the dirty buffer of index into a seal job (now in flight).
  // Needs fp->mu.
  SealJob TakeForSeal(const std::shared_ptr<OpenFile>& fp, uint64_t index);
  void SubmitSeal(const std::shared_ptr<OpenFile>& fp, uint64_t index,
                  std::unique_lock<std::mutex>& lock);
  // Seals and stages one buffer (no locks held), records the result.
  void SealAndRecord(const SealJob& job);
  Status StageCiphertext(const Address& address, const uint8_t* data,
                         size_t len);
  Status WaitForSpace(uint64_t bytes);
  Status Commit(OpenFile* f, const std::shared_ptr<OpenFile>& fp,
                std::unique_lock<std::mutex>& lock, bool sync);
  void DropUncommitted(OpenFile* f);
  bool EvictOne();
  void SealerLoop();
  void PrefetchLoop();

  // Current ref of a chunk (pending first, then committed). Needs f->mu.
  Result<std::optional<ChunkRef>> RefOf(OpenFile* f, uint64_t index);
  Result<ChunkData> FetchChunk(const ChunkRef& ref);
  // The ciphertext object (range: {offset, length} of it; empty: all),
  // from the spill while staged, else from the store.
  Status ReadObject(const Address& address,
                    std::optional<std::pair<uint64_t, uint64_t>> range,
                    std::vector<uint8_t>* out);
  // Format 2 only: copies plaintext [offset, offset + len) of a stored chunk
  // to dst, fetching and opening only the segments that cover it.
  Status ReadSegments(const ChunkRef& ref, uint64_t offset, uint64_t len,
                      char* dst);
  // An empty vector for a fetched chunk, reused when one is free.
  std::shared_ptr<std::vector<uint8_t>> ChunkBuffer();

  Index* index_;
  Spill* spill_;
  CountingStore* store_;
  Uploader* uploader_;
  const Secret secret_;
  const FsOptions options_;
  BufferPool pool_;
  // Fetched-chunk vectors kept for reuse; declared before cache_ so they
  // outlive the cache entries that return to them.
  static constexpr size_t kRecycledChunks = 2;
  std::mutex recycle_mu_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> recycled_;
  ChunkCache cache_;

  std::mutex ns_mu_;  // serialises namespace changes
  std::mutex open_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<OpenFile>> open_;

  std::mutex seal_mu_;
  std::condition_variable seal_cv_;
  std::deque<SealJob> seal_queue_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> sealers_;

  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<ChunkRef> prefetch_queue_;
  std::thread prefetcher_;

  std::atomic<int> seals_in_flight_{0};
  std::mutex dropped_mu_;
  std::set<uint64_t> dropped_;  // inodes whose changes were dropped
  std::function<void(uint64_t)> dropped_listener_;  // under dropped_mu_
  std::atomic<uint64_t> segment_reads_{0};  // reads served by ReadSegments
  std::atomic<uint64_t> clock_{0};          // orders writes for LRU eviction

  std::mutex space_mu_;
  std::condition_variable space_cv_;
  std::atomic<uint64_t> space_epoch_{0};
};

}  // namespace wavefs
