// Filesystem: wavefs's file semantics, independent of FUSE's types.
//
// fs/fuse_ops.cc turns FUSE requests into calls here and statuses into
// errnos. Everything below is expressed in inode numbers, names and byte
// ranges, so it can be unit-tested with a MemoryStore and no mount.
//
// This class only composes the parts that do the work, one file each:
//   Namespace      (fs/namespace.h)      names, links, renames, xattrs
//   OpenFileTable  (fs/open_file.h)      open inodes, pins, last release
//   WritePipeline  (fs/write_pipeline.h) dirty buffers, sealing, staging
//   Committer      (fs/committer.h)      data maps into the index, drops
//   ChunkReader    (fs/chunk_reader.h)   cache, segments, prefetch
//   SiblingPrefetch (fs/sibling_prefetch.h) small files read in a row
// and the operations that span them (open with O_TRUNC, setattr,
// fallocate, lseek, copy_file_range). The lock order is written in
// fs/open_file.h.
// Thread safety: every public method is thread-safe.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "chunker/data_map.h"
#include "chunker/types.h"
#include "fs/chunk_reader.h"
#include "fs/committer.h"
#include "fs/idle_release.h"
#include "fs/namespace.h"
#include "fs/open_file.h"
#include "fs/sibling_prefetch.h"
#include "fs/tail_journal.h"
#include "fs/write_pipeline.h"
#include "store/chunk_store.h"
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
  // Reads and writes share dirty_buffers slots of chunk buffers: past
  // them, the side that needs one unmaps the other's cached chunks idle
  // for chunk_idle and the buffers it keeps for reuse idle for reuse_idle
  // (store/chunk_slots.h); a reader and writers running at once keep
  // theirs. The cache's share of the memory limit is the headroom for
  // chunks readers hold while writers hold every slot.
  std::chrono::milliseconds chunk_idle{1000};
  std::chrono::milliseconds reuse_idle{100};
  // How long a write waits for a write buffer before it evicts another
  // file's (store/buffer_pool.h); FuseSaturated ends the wait at once.
  std::chrono::milliseconds buffer_evict_after = BufferPool::kEvictAfter;
  // Chunk buffers nobody used for this long go back to the system while
  // the mount is idle (fs/idle_release.h); 0: kept for the mount's life.
  // Mounts default to 30 s (--idle-release).
  std::chrono::milliseconds idle_release{0};
  int seal_threads = 2;
  bool prefetch = true;
  // Chunks a sequential reader gets fetched ahead of it, each by its own
  // thread (1 for a local store; more for S3, whose GETs take longer than
  // decrypting a chunk). The cache holds at least this many + 1.
  int prefetch_depth = 1;
  // Random reads: 0 = fetch exactly the 64 KiB segments a request covers
  // (a local store: reads are cheap); else fetch and keep aligned windows of
  // this many bytes (a multiple of 64 KiB), so the kernel's 128 KiB pieces
  // of one read cost one request, not eight (S3).
  uint64_t read_window = 0;
  // Fetched-chunk buffers kept for reuse (speed against 4 MiB of RSS each).
  size_t recycled_chunks = 2;
  // The store's format: how chunks are sealed, and whether a read may fetch
  // and open only the 64 KiB segments it needs (formats 2 and 3).
  ChunkFormat chunk_format = kNewestChunkFormat;
  // Staging keeps this much free on the spill's filesystem.
  uint64_t spill_reserve_bytes = 64ull << 20;
  // How long a writer waits for uploads to free spill space before ENOSPC.
  std::chrono::seconds space_wait{60};
  // A chunk of at most this much ciphertext is staged in the index instead
  // of a spill file, while the index holds at most index_stage_cap bytes of
  // such chunks not yet uploaded (docs/architecture.md, "Small chunks are
  // staged in the index"). 0: every chunk goes to the spill.
  uint64_t index_stage_max = 64ull << 10;
  uint64_t index_stage_cap = 16ull << 20;
  // A small chunk staged in the index for a file committed again within
  // this long (a log appended to by separate opens) is held this long
  // before its upload, and dropped if the file's next commit replaces it
  // (store/index.h, "Held chunks"). 0: every chunk is uploaded.
  std::chrono::milliseconds hot_tail_hold{2000};
  // A file that stays open for writing is committed once it has this many
  // sealed chunks not yet in the index (1 GiB; at twice as many at the
  // latest): what it holds in memory for them stays bounded whatever the
  // file's size (invariant 5), and a crash keeps what was written before
  // that commit.
  size_t commit_every_chunks = 256;
  // Evicted buffers of files written all over that may wait, encrypted
  // under a key of this process, in the spill's page-out file instead of
  // being sealed as chunks (store/page_out.h): 256 = 1 GiB at most. 0: off.
  size_t page_out_slots = 256;
  // A close whose changes are writes into one chunk commits them as
  // encrypted journal records in the index, and the chunk is sealed once,
  // hot_tail_hold after the first (fs/tail_journal.h). Off (or a
  // hot_tail_hold of 0): every such close seals the chunk.
  bool tail_journal = true;
  // Small files (up to 1 MiB) fetched ahead of a reader going through a
  // directory in order (fs/sibling_prefetch.h). 0: off.
  size_t prefetch_files = 0;
  // Test-only interleaving and fault hooks (empty in production).
  FsHooks hooks;
};

inline constexpr uint64_t kMaxFileSize = 1ull << 50;

// fallocate modes (as <linux/falloc.h> defines them).
inline constexpr int kFallocKeepSize = 0x01;
inline constexpr int kFallocPunchHole = 0x02;
inline constexpr int kFallocZeroRange = 0x10;

// Which attributes SetAttr changes.
struct AttrChange {
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<timespec> atime;  // tv_nsec == UTIME_NOW for now
  std::optional<timespec> mtime;
  // The kernel's change time: sent with the writeback cache, where the
  // kernel keeps a regular file's times (FUSE_SET_ATTR_CTIME). Without it
  // the change time is the daemon's clock.
  std::optional<timespec> ctime;
};

class Filesystem {
 public:
  // `store` is any ChunkStore (usually a stack of decorators). `counts`,
  // when not null, is the CountingStore in that stack whose counters
  // user.wavefs.stats shows (store_gets, store_puts, ...); without it those
  // lines are left out. Neither is owned; both outlive the Filesystem.
  Filesystem(Index* index, Spill* spill, ChunkStore* store, Uploader* uploader,
             const Secret& secret, FsOptions options,
             const CountingStore* counts = nullptr);
  ~Filesystem();

  // Called (with an internal lock held: it must only queue work) with the
  // inode whenever a failed commit drops a file's changes, so the FUSE layer
  // can tell the kernel to forget the pages it cached of them. Empty: none.
  void SetDroppedListener(std::function<void(uint64_t ino)> listener);
  // The kernel sends whole reads in one request: random reads need no
  // windows (ChunkReader::DisableReadWindows).
  void DisableReadWindows() { reader_.DisableReadWindows(); }
  // With the writeback cache the kernel keeps a regular file's mtime and
  // ctime: it stamps them on every write, mmap store, copy_file_range,
  // fallocate and O_TRUNC open, and sends them with a setattr (at the
  // latest before fsync and close return). Changes to the data then leave
  // the times alone (StampChange). Stamping the daemon's clock would
  // overwrite the kernel's whenever its setattr came first (background
  // writeback sends it beside the data), or its coarse clock (4 ms ticks)
  // saw no change and sent none (two changes in one tick): stat would show
  // other times once the kernel forgot the inode.
  void SetKernelKeepsTimes(bool on) { kernel_keeps_times_.store(on); }
  // Every FUSE worker is held up and no more may start
  // (FuseLoopOptions::saturated): see WritePipeline::Unstick.
  bool FuseSaturated() { return pipeline_.Unstick(); }

  // --- names ---------------------------------------------------------------
  Result<InodeAttr> Lookup(uint64_t parent, const std::string& name);
  Result<InodeAttr> GetAttr(uint64_t ino);
  // GetAttr with InodeAttr::stored_bytes (st_blocks) filled in: what a
  // reply to the kernel carries (Lookup, Link and SetAttr give it too). A
  // scan of the file's chunk refs when it has more than one chunk.
  Result<InodeAttr> StatAttr(uint64_t ino);
  Result<InodeAttr> MakeNode(uint64_t parent, const std::string& name,
                             uint32_t mode, uint64_t rdev, uint32_t uid,
                             uint32_t gid, const std::string& symlink = "");
  Status Unlink(uint64_t parent, const std::string& name);
  // A hard link: new_parent/new_name names ino too.
  Result<InodeAttr> Link(uint64_t ino, uint64_t new_parent,
                         const std::string& new_name);
  Status Rmdir(uint64_t parent, const std::string& name);
  // flags: 0, RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2).
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                const std::string& new_name, unsigned flags);
  // caller: the thread asking (the FUSE request's pid), 0 when not known.
  // A change of times, mode or owner by the thread that has uncommitted
  // writes to the file through a handle it opened (tar, cp -p and rsync
  // --inplace set a file's times, owner and mode before they close it) is
  // committed by that handle's close, with the writes, instead of now:
  // one commit per file instead of one per call. Nothing closed waits:
  // the writes it joins were not committed either. A size change, or a
  // change by anyone else, commits at once.
  Result<InodeAttr> SetAttr(uint64_t ino, const AttrChange& change,
                            pid_t caller = 0);
  Result<std::string> ReadLink(uint64_t ino);
  // Directory listing in name order after `after`; fn returns false to stop.
  Status ReadDir(uint64_t ino, const std::string& after,
                 const std::function<bool(const DirEntry&)>& fn);
  // fsyncdir: every namespace change so far survives power loss.
  Status FsyncDir();
  Status StatFs(struct statvfs* out);

  // Stored extended attributes (fs/namespace.h has the rules and limits).
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  Result<std::string> ListXattr(uint64_t ino);
  Status SetXattr(uint64_t ino, const std::string& name,
                  const std::string& value, int flags);
  Status RemoveXattr(uint64_t ino, const std::string& name);

  // --- file data -------------------------------------------------------------
  // flags: the open(2) flags; O_TRUNC empties a regular file.
  Result<std::unique_ptr<FileHandle>> Open(uint64_t ino, int flags = 0);
  Result<size_t> Write(FileHandle* h, uint64_t offset, const char* data,
                       size_t size, bool writeback = false);
  // The same from a source (a FUSE request's pipe: fs/write_pipeline.h);
  // writeback: pages the kernel's writeback cache sends (WritePipeline).
  Result<size_t> Write(FileHandle* h, uint64_t offset, WriteSource* src,
                       size_t size, bool writeback = false);
  // Reads up to size bytes at offset into out; returns bytes read (short at
  // end of file).
  Result<size_t> Read(FileHandle* h, uint64_t offset, size_t size, char* out);
  // The same into a sink: cached and fetched plaintext is shared with the
  // sink, not copied (a FUSE reply points at it).
  Result<size_t> Read(FileHandle* h, uint64_t offset, size_t size,
                      ReadSink* sink);
  // The open file's mode (cheap: no index read, no copy).
  uint32_t ModeOf(FileHandle* h);
  Status Flush(FileHandle* h);
  Status Fsync(FileHandle* h);
  Status Release(std::unique_ptr<FileHandle> h);
  // mode 0, kFallocKeepSize, kFallocPunchHole|kFallocKeepSize,
  // kFallocZeroRange (with or without kFallocKeepSize); whole chunks that
  // become zero become holes. Other modes: kNotSupported.
  Status Fallocate(FileHandle* h, int mode, uint64_t offset, uint64_t length);
  // SEEK_DATA / SEEK_HOLE at chunk granularity (a chunk with any data is
  // data). ENXIO (kIo with that errno) at or past the end of the file.
  Result<uint64_t> SeekDataHole(FileHandle* h, uint64_t offset, int whence);
  // copy_file_range within the mount. Where both offsets are chunk-aligned
  // and a whole chunk is copied, the destination takes the source's chunk
  // ref (nothing is read, decrypted or staged); elsewhere bytes go through
  // the read and write paths. Returns the bytes copied.
  Result<uint64_t> CopyRange(FileHandle* in, uint64_t off_in, FileHandle* out,
                             uint64_t off_out, uint64_t length);

  // --- introspection
  // ---------------------------------------------------------- "key=value"
  // lines: store and upload counters, pids, directories.
  std::string StatsText(const std::string& extra);
  // "dirty", "uploading" (some chunks still in the spill), or "stored".
  Result<std::string> FileState(uint64_t ino);
  Result<DataMap> GetDataMap(uint64_t ino);

  // gc (store/gc.h): every address the open files' uncommitted (sealed,
  // not yet committed) refs name. Takes each file's lock in turn.
  Status ForEachUncommittedRef(const std::function<void(const Address&)>& fn);

  // Commits every open file (called when the kernel unmounts).
  Status CommitAll();

  // Tests: hands every dirty buffer of the file to the sealer threads.
  void SealDirtyForTest(uint64_t ino);
  // Tests: how many chunks of an open file are sealed and not committed,
  // and how many are being sealed ({0, 0} when it is not open).
  std::pair<size_t, size_t> UncommittedForTest(uint64_t ino);

 private:
  // Fills a->stored_bytes (st_blocks) of a regular file of more than one
  // chunk from its committed chunk refs, or sets a->uncached when f (the
  // file's open state, if any) holds uncommitted changes. One chunk or
  // less counts as its size: no scan in the small-file paths.
  void AddStoredBytes(InodeAttr* a, OpenFile* f);
  // f's chunks that hold data, with their plaintext bytes, as its open
  // state sees them (what SeekDataHole and AddStoredBytes count). Under
  // f->mu.
  Result<std::map<uint64_t, uint64_t>> DataChunksLocked(OpenFile* f);
  // The regular files of dir in name order (SiblingPrefetch's listing of a
  // directory read by paths).
  std::vector<uint64_t> RegularFilesOf(uint64_t dir);
  // Drops one pin of f (committing on behalf of h, or for why without a
  // handle); the records of an unlinked file go with its last pin.
  // commit false: only the pin goes (SetAttr's change that a writer's close
  // commits).
  Status Unpin(const std::shared_ptr<OpenFile>& f, FileHandle* h,
               Committer::Trigger why = Committer::Trigger::kInternal,
               bool commit = true);
  // Start-up: applies the tail journals left by the last daemon.
  void ReplayJournals();
  // The journal's thread: f's time as a hot file is up (a sealed commit and
  // its pin go), or its records must be applied again.
  void CoolTail(std::shared_ptr<OpenFile> f);
  // A change to f's bytes (data) or to its size or allocation alone: mtime
  // (data only) and ctime go to the daemon's clock, unless the kernel keeps
  // them (SetKernelKeepsTimes). Under f->mu.
  void StampChange(OpenFile* f, bool data);
  // Cuts or extends f to n bytes. Needs f->mu; may release it.
  Status Truncate(OpenFile* f, std::unique_lock<std::mutex>& lock, uint64_t n);
  // Zeroes [start, end) of f (inside its size); whole chunks become holes.
  Status ZeroRange(OpenFile* f, std::unique_lock<std::mutex>& lock,
                   uint64_t start, uint64_t end);
  // Copies [off_in, off_in + n) through the read and write paths.
  Result<uint64_t> CopyBytes(FileHandle* in, uint64_t off_in, FileHandle* out,
                             uint64_t off_out, uint64_t n);

  Index* index_;
  Spill* spill_;
  const CountingStore* counts_;  // may be null
  Uploader* uploader_;
  const FsOptions options_;
  std::atomic<bool> kernel_keeps_times_{false};  // SetKernelKeepsTimes
  OpenFileTable files_;
  ChunkSlots slots_;  // outlives the reader's and the pipeline's buffers
  ChunkReader reader_;
  SiblingPrefetch siblings_;  // before reader_ goes
  WritePipeline pipeline_;
  TailJournal journal_;
  Committer committer_;
  IdleRelease idle_release_;  // stops before the slots' holders go
  Namespace namespace_;
};

}  // namespace wavefs
