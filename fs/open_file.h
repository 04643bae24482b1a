// OpenFile and OpenFileTable: the in-memory state of every inode that is
// open (or pinned for a moment by setattr, getxattr, a namespace change).
//
// While an inode is pinned its OpenFile is the authority on its attributes
// (`attr`: committed plus uncommitted changes) and on its chunk refs
// (`dirty` buffers, `pending` sealed refs, `truncate_from`); `committed` is
// what the index holds for it, so a namespace change can edit the record
// without writing anyone's uncommitted size into it.
//
// Lock order (outer first): Namespace::mu_ > OpenFileTable::mu_ >
// OpenFile::mu (several only in ascending inode order, and only by
// Namespace::Commit) > leaf locks (buffer pool, chunk cache, tail cache,
// spill space, sealer queue, dropped set). Nobody waits for the pool, for spill
// space or for a sealer while holding an OpenFile::mu (they unlock and
// re-check). Thread safety: OpenFileTable is thread-safe; OpenFile fields are
// guarded by its mu unless said otherwise.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chunker/page_cipher.h"
#include "chunker/types.h"
#include "store/index.h"
#include "util/status.h"

namespace wavefs {

struct FileHandle;

struct OpenFile {
  struct Dirty {
    // Null while paged out (store/page_out.h): the chunk's bytes then wait in
    // its page-out slot.
    uint8_t* buf = nullptr;
    uint32_t len = 0;      // valid plaintext bytes; past it reads as zeros
    uint64_t touched = 0;  // write clock at the last write (LRU eviction)
    // End of the run of writes that went in order from offset 0: when it
    // reaches the chunk's end a sequential writer is done with the chunk.
    // Writes that landed past it wait in `ahead` (sorted, disjoint) and join
    // the run once the gap before them is written: the kernel's writeback
    // (--writeback-cache) sends a file's pieces from several requests at
    // once, so they arrive a little out of order (NoteWritten).
    uint32_t in_order = 0;
    std::vector<std::pair<uint32_t, uint32_t>> ahead;
    // Page-out (store/page_out.h): once paged out, the chunk keeps its slot
    // until it is sealed or cut. Masks of its 64 KiB segments: in_slot,
    // what the slot holds; absent, what is in the slot but not in buf
    // (read when needed); changed, what buf changed since it last went
    // to the slot.
    bool slotted = false;
    uint32_t page_slot = 0;
    uint64_t in_slot = 0;
    uint64_t absent = 0;
    uint64_t changed = 0;
    std::shared_ptr<std::array<PageSeal, 64>> seals;
    // Tail journal (fs/tail_journal.h): byte ranges [first, second) written
    // since the buffer came in or since its last journal records, and
    // whether they stopped being trackable (too many).
    std::vector<std::pair<uint32_t, uint32_t>> logged;
    bool log_overflow = false;
    // Taken without waiting for spill room (WritePipeline::StagesInIndex):
    // the write that makes it too big for the index waits for it then.
    bool spill_unchecked = false;
    bool paged_out() const { return buf == nullptr; }
    // Records a write of bytes [from, to) for the tail journal.
    // Kept sorted and disjoint: a database rewrites the same few pages
    // (its header page at every transaction) between two fsyncs.
    void Log(uint32_t from, uint32_t to) {
      if (to <= from || log_overflow) return;
      if (!MergeRange(logged, from, to, kMaxLogged)) {
        log_overflow = true;
        logged.clear();
      }
    }
    // Records a write of bytes [from, to) for in_order; one past it waits in
    // `ahead` only when it came from the kernel's writeback (keep_ahead).
    // An application's own writes that leave gaps are random writes (fio,
    // a database), which go on rewriting the chunk: sealed early, it would
    // be sealed, staged and uploaded again.
    void NoteWritten(uint32_t from, uint32_t to, bool keep_ahead) {
      if (to <= from) return;
      if (from > in_order) {
        if (!keep_ahead) return;
        // Too many gaps: the write is forgotten here, which only costs the
        // early seal (the chunk is then sealed at the commit or eviction).
        (void)MergeRange(ahead, from, to, kMaxAhead);
        return;
      }
      in_order = std::max(in_order, to);
      size_t joined = 0;
      while (joined < ahead.size() && ahead[joined].first <= in_order)
        in_order = std::max(in_order, ahead[joined++].second);
      ahead.erase(ahead.begin(), ahead.begin() + joined);
    }
    // Adds [from, to) to sorted, disjoint `ranges`, merging what it touches;
    // false (ranges unchanged) when that would make more than `max`.
    static bool MergeRange(std::vector<std::pair<uint32_t, uint32_t>>& ranges,
                           uint32_t from, uint32_t to, size_t max) {
      // The first range that ends at or after from: it and those after it
      // that start at or before to merge with [from, to).
      auto it = std::lower_bound(ranges.begin(), ranges.end(), from,
                                 [](const std::pair<uint32_t, uint32_t>& r,
                                    uint32_t v) { return r.second < v; });
      auto end = it;
      while (end != ranges.end() && end->first <= to) {
        from = std::min(from, end->first);
        to = std::max(to, end->second);
        ++end;
      }
      if (it != end) {
        *it = {from, to};
        ranges.erase(it + 1, end);
        return true;
      }
      if (ranges.size() >= max) return false;
      ranges.insert(it, {from, to});
      return true;
    }
    static constexpr size_t kMaxAhead = 16;
    static constexpr size_t kMaxLogged = 32;
    // Records that bytes [from, to) of the chunk changed in buf.
    void MarkChanged(uint64_t from, uint64_t to) {
      changed |= SegmentMask(from, to);
    }
    // The segments that bytes [from, to) of a chunk touch.
    static uint64_t SegmentMask(uint64_t from, uint64_t to) {
      if (to <= from) return 0;
      const uint64_t first = from / kSegmentSize;
      const uint64_t last = (to - 1) / kSegmentSize;  // < 64
      const uint64_t upto = last == 63 ? ~0ull : (1ull << (last + 1)) - 1;
      return upto & ~((1ull << first) - 1);
    }
  };

  explicit OpenFile(const InodeAttr& a) : ino(a.ino), attr(a), committed(a) {}

  const uint64_t ino;
  std::weak_ptr<OpenFile> self;  // set once at creation
  std::mutex mu;                 // guards everything below
  std::condition_variable cv;    // signalled when a seal of this file ends
  int opens = 0;                 // handles and pins
  InodeAttr attr;       // authoritative: committed + uncommitted changes
  InodeAttr committed;  // the record as the index holds it
  bool attr_dirty = false;
  bool unlinked = false;  // last link gone: records go at the last unpin
  // No name left and one pin, the caller's: nothing can open the file
  // again (the kernel releases a handle only once no descriptor or mapping
  // holds it), so what it did not commit is nobody's. Under mu.
  bool LastPinOfOrphan() const { return unlinked && opens == 1; }
  std::map<uint64_t, Dirty> dirty;  // chunk index -> plaintext buffer
  size_t paged_out = 0;             // entries of `dirty` that are paged out
  int page_outs = 0;  // buffers being paged out right now (in inflight)
  // Commits in progress (WritePipeline::SealAll): while > 0 an evicted
  // buffer of this file is sealed, never paged out.
  int no_page_out = 0;
  std::map<uint64_t, ChunkRef> pending;  // sealed and staged, not committed
  std::set<uint64_t> inflight;           // being sealed right now
  // Seals in flight whose result must be thrown away: their chunk was cut
  // off by a truncate or zeroed while they ran.
  std::set<uint64_t> discard;
  std::optional<uint64_t> truncate_from;  // committed refs >= this go
  Status error;  // sticky: a seal failed; the next commit drops and reports
  // Handles that wrote since the last successful commit, with the write
  // generation of their last write: each of them is told when a commit
  // drops those writes, whoever runs that commit.
  std::map<FileHandle*, uint64_t> writers;
  // Handles opened O_RDWR: each may back a shared writable mapping, whose
  // dirty pages the kernel keeps until msync, munmap or its writeback, so
  // the daemon does not know where data is while one is open
  // (Filesystem::SeekDataHole).
  int read_write_handles = 0;
  uint64_t write_gen = 0;      // bumped by every write
  uint64_t next_read = ~0ull;  // offset a sequential reader asks for next
  uint64_t run_start = 0;      // where the current sequential run began
  // Tail journal (fs/tail_journal.h). A change since the last commit that
  // is not a write (truncate, hole punch, zeroed range, fallocate): the
  // next commit seals.
  bool unlogged_change = false;
  // Records in the index on top of the last sealed commit, their bytes,
  // the chunk they are about, and the next record's sequence number.
  uint64_t journal_records = 0;
  uint64_t journal_bytes = 0;
  uint64_t journal_chunk = 0;
  uint64_t journal_next_seq = 1;
  // Pinned by the journal until its sealed commit (counted in opens),
  // since hot_since.
  bool hot = false;
  std::chrono::steady_clock::time_point hot_since;
  // A commit failed and dropped the buffers the records were applied to:
  // they must be applied again before the next write or commit.
  bool journal_replay = false;
  // A replay is applying records now: it may release mu while it brings
  // the chunk in, and nothing else may write or commit f meanwhile
  // (Committer::ReplayIfNeeded waits on cv).
  bool replaying = false;
  std::thread::id replayer;  // the thread replaying, while replaying
  // Why the last replay failed, while it is due again (journal_replay).
  Status replay_error;
  // A commit seals with mu released (WritePipeline::SealAll). A change of
  // the file's bytes or size landing meanwhile (another handle's write,
  // cut or fallocate) might miss the seal while the commit records the
  // size it makes: a crash before the next commit would then leave zeros,
  // or refs cut away, where that change wrote. So a change waits while
  // commits seal (`commits`), and a commit seals only once the changes in
  // progress are done (`changes`; they may release mu too, waiting for a
  // buffer or spill space). See ChangeScope.
  int commits = 0;
  int changes = 0;
};

// A change of f's bytes or size in progress (OpenFile::changes), from
// construction (which first waits for f's sealing commits to end, calling
// on_wait before it waits) to End() or destruction; both need f->mu held
// through the lock given.
class ChangeScope {
 public:
  ChangeScope(OpenFile* f, std::unique_lock<std::mutex>& lock,
              const std::function<void(uint64_t ino)>& on_wait);
  ~ChangeScope() { End(); }
  ChangeScope(const ChangeScope&) = delete;
  ChangeScope& operator=(const ChangeScope&) = delete;
  void End();

 private:
  OpenFile* f_;
};

// What open() hands out; owned by the caller until Release.
struct FileHandle {
  std::shared_ptr<OpenFile> file;
  // False when the kernel may cache pages of this file that are not its
  // content any more (changes were dropped after a failed commit): the open
  // must then not keep the kernel's page cache.
  bool keep_cache = true;
  // Opened O_RDWR (counted in file->read_write_handles).
  bool read_write = false;
  // The thread that opened it (the FUSE request's pid); 0: not known.
  // SetAttr leaves the commit of an attribute change by that same thread
  // to this handle's close while its writes are uncommitted.
  pid_t opener = 0;
  // Set (under file->mu) when a commit dropped writes made through this
  // handle; its next flush, fsync or release reports it and clears it.
  Status dropped_error;
  // readdir continuation for directory handles
  uint64_t dir_offset = 0;
  std::string dir_last_name;
};

// The current ref of a chunk of f: pending first, then the committed one
// unless a truncate cut it. nullopt reads as zeros. Needs f->mu.
Result<std::optional<ChunkRef>> RefOf(Index* index, OpenFile* f,
                                      uint64_t chunk_index);

// The wall clock, for inode times.
inline timespec WallNow() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

class OpenFileTable {
 public:
  explicit OpenFileTable(Index* index) : index_(index) {}

  // The open state of ino, or null when it is not pinned.
  std::shared_ptr<OpenFile> Find(uint64_t ino);
  // Pins ino (loading its record when it is not pinned yet).
  Result<std::shared_ptr<OpenFile>> Pin(uint64_t ino);
  // Drops one pin. On the last one, `last` runs with the table lock and
  // f->mu held (it must not block), and the entry goes. Returns true when
  // that was the last pin.
  bool Unpin(const std::shared_ptr<OpenFile>& f,
             const std::function<void(OpenFile*)>& last);
  // Every pinned file (a snapshot).
  std::vector<std::shared_ptr<OpenFile>> All();
  // Runs fn with the table lock held: no inode gets pinned or unpinned
  // meanwhile (Namespace::Commit uses this).
  void WithLock(const std::function<void()>& fn);
  // Find for callers already inside WithLock.
  std::shared_ptr<OpenFile> FindLocked(uint64_t ino);

 private:
  Index* index_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<OpenFile>> open_;
};

}  // namespace wavefs
