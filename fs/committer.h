// Committer: makes an open file's changes part of the index, or drops them.
//
// A commit seals what is dirty, waits for the file's seals in flight, and
// writes the new chunk refs, the truncation range and the attributes in one
// index batch (synced, with every staged chunk the file names fsynced first,
// for fsync). When a seal failed (the spill was full, a stage failed), the
// changes since the last commit cannot be kept: they are dropped, every
// handle that wrote since then is told (its next flush/fsync/close returns
// the error, whoever ran the commit), and the kernel is told to forget the
// pages it cached of them.
//
// A close (flush or release) or an fsync may commit as tail-journal records
// instead (fs/tail_journal.h, TryJournal): then nothing is sealed, and the
// file stays hot until a sealed commit takes the records' place.
//
// Thread safety: thread-safe; Commit needs f->mu held through `lock`.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>

#include "fs/open_file.h"
#include "fs/tail_journal.h"
#include "fs/write_pipeline.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"

namespace wavefs {

class Committer {
 public:
  // Bounds of one file's journal: past them its next commit seals (its
  // buffer is bounded by the pool, its records here). Each seal costs the
  // whole chunk (4 MiB: two hash passes and the cipher, a spill write and
  // an fsync), so the cap sets how often a file rewritten in place (a
  // database's write-ahead log) pays it: at 256 KiB SQLite in WAL mode ran
  // at 510-577 transactions/s, at 1 MiB 756-848 (gocryptfs: 762-780, same
  // run). The records sit in the index's memtable until the seal deletes
  // them (at most max_hot files are hot: three at the default memory
  // limit); more of them make the memtable flush sooner, not the daemon
  // bigger (the memtable has its own bound).
  static constexpr uint64_t kMaxJournalBytes = 1 << 20;
  static constexpr uint64_t kMaxJournalRecords = 1024;
  // commit_every_chunks: see CommitLongWrite.
  // journal: the tail journal, or null (every commit seals).
  Committer(Index* index, Spill* spill, ChunkStore* store,
            WritePipeline* pipeline, size_t commit_every_chunks,
            TailJournal* journal)
      : index_(index),
        spill_(spill),
        store_(store),
        pipeline_(pipeline),
        commit_every_(commit_every_chunks),
        journal_(journal) {}

  // What asks for a commit. A close (flush or release), an fsync of a
  // handle and a setattr of times only may commit as journal records
  // (TryJournal); anything else (other setattrs, xattrs, long writes,
  // unmount) seals. kSetTimes is what the kernel sends before each fsync
  // and close with the writeback cache (it owns mtime then): sealing there
  // sealed a database's write-ahead log at every transaction.
  enum class Trigger { kInternal, kClose, kFsync, kSetTimes };
  // caller: the handle on whose behalf this runs (null for setattr, xattrs,
  // unmount). It gets its own dropped-writes error, if any.
  // sync: durable against power loss when this returns (fsync, unmount).
  Status Commit(OpenFile* f, std::unique_lock<std::mutex>& lock, bool sync,
                FileHandle* caller, Trigger why = Trigger::kInternal);
  // Applies f's journal records again to its last sealed commit when a
  // failed commit dropped them from its buffers (before any write or
  // commit of f), and once at start-up. The file is hot afterwards. A
  // record that cannot be opened (fails authentication) is logged and
  // left out. When one cannot be applied (its chunk cannot be brought in:
  // the store unreachable, the spill full) nothing is: f is back at its
  // last sealed commit, the records stay in the index, the replay stays
  // due with that error (OpenFile::replay_error) and the journal's thread
  // tries again a second later. Needs f->mu, and a pin of f held by the
  // caller.
  void Replay(OpenFile* f, std::unique_lock<std::mutex>& lock);
  // Waits for a replay of f in progress (another thread's), then replays
  // if one is due. Not ok while the replay is still due (it failed): then
  // nothing may write or commit f, or the records would be lost.
  Status ReplayIfNeeded(OpenFile* f, std::unique_lock<std::mutex>& lock) {
    f->cv.wait(lock, [&] { return !f->replaying; });
    if (f->journal_replay) Replay(f, lock);
    return f->journal_replay ? f->replay_error : Status::Ok();
  }
  uint64_t journal_commits() const { return journal_commits_.load(); }
  uint64_t journal_bytes() const { return journal_bytes_.load(); }
  uint64_t journal_replays() const { return journal_replays_.load(); }
  // After a write: commits f, as a close would, once it holds
  // commit_every_chunks sealed refs not yet in the index and no half-filled
  // buffer, or twice as many whatever its buffers hold, so what a file
  // written for long keeps in memory stays bounded (invariant 5). Not after
  // a failed seal (that error stays for the next write and the close). A
  // failure is logged and left for the close to report.
  void CommitLongWrite(OpenFile* f, std::unique_lock<std::mutex>& lock);
  // When a seal of f failed: drops f's uncommitted changes now and tells
  // their writers. Needs f->mu.
  void DropIfFailed(OpenFile* f);
  // Takes (and clears) the dropped-writes error of h. Needs h->file->mu.
  static Status TakeDroppedError(FileHandle* h);

  // Called (with internal locks held: it must only queue work) with the
  // inode whenever changes are dropped. Empty: none.
  void SetDroppedListener(std::function<void(uint64_t ino)> listener);
  // True once per inode whose changes were dropped since it was last asked
  // (the next open must not keep the kernel's cached pages).
  bool TakeDropped(uint64_t ino);
  // The last pin of f goes and f has no name left: no handle, mapping or
  // name can reach it again, so what it holds beyond its last commit is
  // dropped instead of sealed (a database's -journal file, unlinked at the
  // end of every transaction, was sealed each time), with its journal
  // state; its chunks held for upload go without one. The caller deletes
  // its records (Namespace::DeleteOrphan).
  void DiscardOrphan(OpenFile* f, std::unique_lock<std::mutex>& lock);

 private:
  // f back at its last commit: buffers, pending refs, cut and attribute
  // changes go; seals in flight are discarded when they end.
  void ResetToCommitted(OpenFile* f);
  void DropUncommitted(OpenFile* f, const Status& why);
  // Commits f's changes as journal records when they are writes into the
  // one chunk it holds in a buffer (see fs/tail_journal.h); false when
  // they are not, or the index write failed: then the commit seals. sync
  // (an fsync): the records, and the sealed commit under them with every
  // chunk it names, are durable against power loss when it returns true.
  // kSetTimes with no bytes written since the last record journals a
  // record of no bytes, carrying the new times.
  bool TryJournal(OpenFile* f, bool sync, Trigger why);
  // Makes every chunk f names (its pending refs and its data map in the
  // index) that is still staged, or stored but not yet synced there,
  // durable against power loss.
  Status SyncNamedChunks(OpenFile* f);

  Index* index_;
  Spill* spill_;
  ChunkStore* store_;
  WritePipeline* pipeline_;
  const size_t commit_every_;
  TailJournal* const journal_;
  std::atomic<uint64_t> journal_commits_{0};
  std::atomic<uint64_t> journal_bytes_{0};
  std::atomic<uint64_t> journal_replays_{0};
  std::mutex dropped_mu_;
  std::set<uint64_t> dropped_;                      // under dropped_mu_
  std::function<void(uint64_t)> dropped_listener_;  // under dropped_mu_
};

}  // namespace wavefs
