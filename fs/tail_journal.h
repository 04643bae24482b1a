// TailJournal: what makes a small change to a file's last chunk cost a
// small index record instead of a 4 MiB seal at every close.
//
// A log appended to by separate opens (`echo line >> log`, loggers that
// reopen, `rsync --append`) used to have every close seal the file's whole
// last chunk again (two SHA-256 passes and AES-GCM over up to 4 MiB), stage
// it and queue it: 500 appends to a 3 MB log took 12 s against gocryptfs's
// 0.12 s. Now a close (flush or release) whose changes since the file's
// last commit are writes into one chunk that stays in its dirty buffer
// commits them as journal records instead: the bytes written, each record
// encrypted and bound to its place, in one index write with the file's new
// size and times ('J' keys, store/index.h). The buffer stays dirty and the
// file stays pinned ("hot") while later closes add records; the file is
// committed the usual way, sealing the chunk and deleting the records in
// the same index batch, at the latest `hold` after its first record, or
// earlier by any commit that is not such a close, fsync or setattr of
// times only (other setattrs, a truncate, writes to a second chunk, too
// much journal, unmount). A setattr of times (touch; the kernel's mtime
// before each fsync and close with the writeback cache) journals the
// writes before it, or a record of no bytes that carries the times. An fsync
// journals the same way, in a synced index write, once every chunk of the
// sealed version under the records is durable (Committer::TryJournal): a
// database fsyncing its write-ahead log after every transaction no longer
// seals 4 MiB each time. A file's first fsync journals too (a database's
// rollback journal is a new file in every transaction), and a hot file
// whose last name and handle are gone is dropped, not sealed
// (Committer::DiscardOrphan).
//
// What the index holds meanwhile is two things: the file as of its last
// sealed commit (inode record and data map agree: what snapshots, gc, fsck
// and shares see), and the journal on top of it. Invariant 1 holds because
// the records are in RocksDB's log when the close returns (synced, for an
// fsync: they survive power loss too); at the next
// start, and after a commit of the file failed and dropped its buffers,
// the records are applied again to that sealed version (Replay in
// fs/committer.h), and the file is hot again.
//
// Records are sealed with XChaCha20-Poly1305 (libsodium) under a key
// derived from the store's secret, with a random nonce, and the record's
// index key (inode, sequence number) as additional data: no plaintext
// reaches the disk (invariant 4), and a record cannot be moved to another
// file or place.
//
// Thread safety: Seal and Open are const and thread-safe. The hot set has
// its own leaf lock; `cool` runs on the journal's thread with no lock held.
#pragma once

#include <time.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "chunker/types.h"
#include "fs/open_file.h"
#include "util/status.h"

namespace wavefs {

struct JournalRecord {
  uint64_t chunk_index = 0;
  uint32_t offset = 0;  // in the chunk
  uint64_t size = 0;    // the file's size after this record
  timespec atime{};
  timespec mtime{};
  timespec ctime{};
  std::string data;  // the bytes written at offset
};

class TailJournal {
 public:
  // hold: how long a file stays hot after its first record (0: never).
  // max_hot: how many files may be hot at once; each keeps a chunk buffer
  // of the write pool, which writers of other files need.
  // now: the hold's clock (FsHooks::hold_now); empty: steady_clock. With
  // a clock of its own the thread looks every 10 ms instead of sleeping
  // until the next file is due.
  TailJournal(const Secret& secret, std::chrono::milliseconds hold,
              size_t max_hot = 2,
              std::function<std::chrono::steady_clock::time_point()> now = {});
  ~TailJournal();
  TailJournal(const TailJournal&) = delete;
  TailJournal& operator=(const TailJournal&) = delete;

  std::chrono::milliseconds hold() const { return hold_; }
  // Whether one more file may become hot now.
  bool HasRoom() const;

  std::string Seal(uint64_t ino, uint64_t seq, const JournalRecord& r) const;
  // kCorrupt when the record does not open under this key at this place.
  Result<JournalRecord> Open(uint64_t ino, uint64_t seq,
                             std::string_view sealed) const;

  // Starts the thread that hands each hot file to cool once its time is up
  // (or at once, for CoolNow).
  void Start(std::function<void(std::shared_ptr<OpenFile>)> cool);
  // Stops the thread; hot files stay as they are (unmount commits them).
  void Stop();
  // f became hot (its first record since its last sealed commit): cool
  // runs for it hold from now. Leaf lock: callable with f->mu held.
  // after: when to cool it instead (a file found busy is looked at again
  // soon rather than a whole hold later).
  void MarkHot(std::shared_ptr<OpenFile> f);
  void CoolAfter(std::shared_ptr<OpenFile> f,
                 std::chrono::steady_clock::duration after);
  // Cool f soon, whatever its time (its commit failed and it needs its
  // records applied again). Leaf lock.
  void CoolNow(std::shared_ptr<OpenFile> f);
  size_t hot_files() const;

 private:
  void Loop();
  std::chrono::steady_clock::time_point Now() const;

  std::array<uint8_t, 32> key_;
  const std::chrono::milliseconds hold_;
  const size_t max_hot_;
  const std::function<std::chrono::steady_clock::time_point()> now_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::pair<std::shared_ptr<OpenFile>,
                               std::chrono::steady_clock::time_point>>
      hot_;
  bool stop_ = false;
  std::function<void(std::shared_ptr<OpenFile>)> cool_;
  std::thread thread_;
};

}  // namespace wavefs
