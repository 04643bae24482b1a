// Index: the RocksDB database that holds everything wavefs knows locally.
//
// Keys (one column family; big-endian integers so keys sort numerically):
//   'I' ino                      -> inode attributes (EncodeInode)
//   'D' parent_ino name          -> child ino + mode (a directory entry)
//   'C' ino chunk_index          -> ChunkRef (EncodeChunkRef)
//   'Q' address                  -> ciphertext length (upload queue)
//   'B' address                  -> ciphertext of a small queued chunk
//                                   staged here instead of in the spill
//                                   (EnqueueStaged); goes with its 'Q'
//   'A' address                  -> 1 staged, 2 stored (addresses known here)
//   'X' ino name                 -> extended attribute value (setxattr)
//   'P' address                  -> u64le pin count (shared maps; gc keeps
//                                   every pinned address)
//   'S' share id (16 bytes)      -> share record (store/index_shares.cc)
//   'J' ino seq                  -> a sealed tail-journal record: bytes
//                                   written to the file since its last
//                                   sealed commit (fs/tail_journal.h); gone
//                                   with the commit that seals them
// Every change that must be atomic goes through one IndexBatch and Commit().
// Non-sync commits are durable against a killed process (RocksDB's WAL is in
// the page cache); sync commits survive power loss.
//
// Memory: RocksDB is capped by Options (memtables, block cache, table cache).
// Thread safety: all methods are safe for concurrent use. Callers serialise
// read-modify-write sequences themselves (fs/ holds its namespace lock).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "chunker/types.h"
#include "chunker/wfmap.h"
#include "store/env.h"
#include "util/status.h"

namespace rocksdb {
class DB;
class Env;
class EventListener;
class WriteBatch;
class Cache;
class Snapshot;
class PinnableSlice;
}  // namespace rocksdb

namespace wavefs {

inline constexpr uint64_t kRootIno = 1;

struct InodeAttr {
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 1;
  uint64_t size = 0;
  uint64_t rdev = 0;
  timespec atime{};
  timespec mtime{};
  timespec ctime{};
  std::string symlink;  // target, for S_IFLNK only
  // Not persisted: what st_blocks counts, filled in by Filesystem for a
  // regular file of more than one chunk (Filesystem::AddStoredBytes).
  // Plaintext bytes in chunks that hold data (holes excluded); nullopt
  // counts the whole size.
  std::optional<uint64_t> stored_bytes;
  // Not persisted: the file has changes not committed yet, so stored_bytes
  // is unknown and will change without a request the kernel sees; replies
  // carry attr_timeout 0 so that the next stat asks again.
  bool uncached = false;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;
};

std::string EncodeInode(const InodeAttr& attr);
Result<InodeAttr> DecodeInode(uint64_t ino, std::string_view bytes);

class IndexBatch {
 public:
  IndexBatch();
  ~IndexBatch();
  IndexBatch(const IndexBatch&) = delete;
  IndexBatch& operator=(const IndexBatch&) = delete;

  void PutInode(const InodeAttr& attr);
  void DeleteInode(uint64_t ino);
  void PutDirEntry(uint64_t parent, const std::string& name, uint64_t child,
                   uint32_t mode);
  void DeleteDirEntry(uint64_t parent, const std::string& name);
  void PutChunk(uint64_t ino, uint64_t index, const ChunkRef& ref);
  // Deletes every chunk ref of ino with index >= first (all when first = 0),
  // as a range delete ordered before any later PutChunk of the same batch.
  void DeleteChunksFrom(uint64_t ino, uint64_t first);
  void PutXattr(uint64_t ino, const std::string& name,
                const std::string& value);
  void DeleteXattr(uint64_t ino, const std::string& name);
  // Every extended attribute of ino (when its inode goes).
  void DeleteXattrs(uint64_t ino);
  // Tail-journal records of ino (fs/tail_journal.h): opaque sealed bytes,
  // applied in seq order.
  void PutJournal(uint64_t ino, uint64_t seq, std::string_view sealed);
  void DeleteJournal(uint64_t ino);
  // Restoring a snapshot (store/snapshot.h): a record as IndexView::
  // ForEachRecord gave it, and an address known as stored ('A' = 2).
  void PutRecord(std::string_view key, std::string_view value);
  void MarkStored(const Address& address);
  // Range deletes in this batch (DeleteChunksFrom, DeleteXattrs,
  // DeleteJournal): what Index's point-delete variants avoid.
  size_t range_deletes() const { return range_deletes_; }

 private:
  friend class Index;
  void DeleteRange(const std::string& begin, const std::string& end);
  std::unique_ptr<rocksdb::WriteBatch> batch_;
  size_t range_deletes_ = 0;
};

// A consistent read-only view of the index (a RocksDB snapshot taken by
// Index::NewView): what gc and fsck scan, so that a cut taken under a lock
// can be read at leisure after the lock is released. Valid while its Index
// is open. Thread safety: one thread at a time.
class IndexView {
 public:
  ~IndexView();
  IndexView(const IndexView&) = delete;
  IndexView& operator=(const IndexView&) = delete;

  // Every chunk ref of every inode, in (ino, index) order.
  Status ForEachChunk(const std::function<void(uint64_t ino, uint64_t index,
                                               const ChunkRef&)>& fn);
  // Every key tag + 32-byte address ('Q' queue, 'A' known, 'P' pins), with
  // its value, in address order.
  Status ForEachAddressKey(
      char tag,
      const std::function<void(const Address&, std::string_view value)>& fn);
  // Every inode record (a damaged one is reported through `bad`).
  Status ForEachInode(
      const std::function<void(const InodeAttr&)>& fn,
      const std::function<void(uint64_t ino, const Status&)>& bad);
  // Every directory entry, parent by parent.
  Status ForEachDirEntry(
      const std::function<void(uint64_t parent, const DirEntry&)>& fn);
  // Every record, raw, in key order (index snapshots, store/snapshot.h);
  // stops at the first error fn returns.
  Status ForEachRecord(const std::function<Status(std::string_view key,
                                                  std::string_view value)>& fn);

 private:
  friend class Index;
  IndexView(rocksdb::DB* db, const rocksdb::Snapshot* snapshot)
      : db_(db), snapshot_(snapshot) {}
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

class Index {
 public:
  struct Options {
    size_t write_buffer_bytes = 4 << 20;
    size_t block_cache_bytes = 4 << 20;
    int max_open_files = 128;
    // Where RocksDB's files go (store/env.h); nullptr: the default.
    Env* env = nullptr;
  };

  // Opens (creating when absent) the database in dir; creates the root
  // directory inode on first open. kBusy when another process holds it.
  static Result<std::unique_ptr<Index>> Open(const std::string& dir,
                                             const Options& options);
  ~Index();
  Status Close();

  uint64_t AllocateIno() { return next_ino_.fetch_add(1); }

  Result<InodeAttr> GetInode(uint64_t ino);
  // kNotFound when absent.
  Result<DirEntry> Lookup(uint64_t parent, const std::string& name);
  // Entries of a directory in name order, starting after `after` (all when
  // empty); fn returns false to stop.
  Status ListDir(uint64_t parent, const std::string& after,
                 const std::function<bool(const DirEntry&)>& fn);
  Result<bool> DirIsEmpty(uint64_t ino);
  // nullopt when the chunk has no ref (reads as zeros).
  Result<std::optional<ChunkRef>> GetChunk(uint64_t ino, uint64_t index);
  Status ListChunks(uint64_t ino,
                    const std::function<void(uint64_t, const ChunkRef&)>& fn);

  // kNotFound when ino has no attribute of that name.
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  // Every (name, value) of ino in name order.
  Status ListXattrs(
      uint64_t ino,
      const std::function<void(const std::string&, const std::string&)>& fn);

  // Tail-journal records of ino in seq order (fn gets seq and the sealed
  // bytes), and every inode that has some.
  Status ListJournal(uint64_t ino,
                     const std::function<void(uint64_t, std::string_view)>& fn);
  Result<std::vector<uint64_t>> JournaledInodes();

  // Deletes every inode record without links (files unlinked while open
  // when the daemon died), with its chunk refs and attributes. Returns how
  // many went. Run at start-up, before anything is open.
  Result<uint64_t> ReclaimOrphans();

  Status Commit(IndexBatch* batch, bool sync);

  // What IndexBatch's DeleteChunksFrom, DeleteXattrs and DeleteJournal
  // delete, added to `batch` as one point delete per record there now when
  // there are at most kPointDeleteLimit of them, else as their range
  // delete. Why: RocksDB (7.8) rebuilds its list of the memtable's range
  // tombstones for the first read after each new one, a cost that grows
  // with every tombstone until the memtable is flushed; a range delete per
  // small file made `rm -rf` of 8,000 files take 15-19 s instead of 1.
  // They read the keys now: call them only where no commit can add a
  // record of `ino` in that range before `batch` is committed (under the
  // file's lock, or for a file with no name and no handle). Like the range
  // delete, they are ordered before later puts of the same batch; unlike
  // it, they do not delete records put earlier in the same batch.
  static constexpr size_t kPointDeleteLimit = 1024;
  Status DeleteChunksFrom(IndexBatch* batch, uint64_t ino, uint64_t first);
  Status DeleteXattrs(IndexBatch* batch, uint64_t ino);
  Status DeleteJournal(IndexBatch* batch, uint64_t ino);

  // How many Commit calls succeeded since open (namespace changes and file
  // commits; not upload-queue traffic): what triggers index snapshots.
  uint64_t commit_count() const { return commits_.load(); }
  // Makes every earlier commit durable against power loss (syncs the WAL).
  Status Sync();

  // Durability order: a record that names a staged chunk must not become
  // durable before the chunk's bytes are. barrier (which makes every staged
  // chunk durable) runs before each synced write (Commit with sync, Sync),
  // with all other writes held back until that write is done, and before
  // RocksDB flushes a memtable to a table file. Set it before the index is
  // used concurrently; an empty function removes it.
  void SetSyncBarrier(std::function<Status()> barrier);

  // --- upload queue -------------------------------------------------------
  // True when the address is staged or stored (dedup: never stage it again).
  // A caller that may turn the answer into a reference uses LookupForRef.
  Result<bool> IsKnown(const Address& address);
  // IsKnown for a writer about to name the address (a dedup hit): a held
  // chunk it finds can no longer be dropped (see "Held chunks" below).
  Result<bool> LookupForRef(const Address& address);
  // Records a freshly staged chunk: queue entry + known address, unless the
  // address is already known. Returns true when it was new. A non-empty
  // body is the chunk's ciphertext, staged in the index itself ('B', in
  // the same write batch) instead of a spill file: a small chunk then costs
  // no file creation, and its bytes are exactly as durable as the records
  // that name them (one log). CompleteUploads and DropQueued delete it.
  //
  // owner: the file slot the chunk was sealed for, and how long to hold it
  // (see "Held chunks" below; no hold when owner->hold is zero).
  struct StageOwner {
    uint64_t ino = 0;
    uint64_t index = 0;  // chunk index in the file
    std::chrono::steady_clock::duration hold{};
  };
  Result<bool> EnqueueStaged(const Address& address, uint64_t length,
                             std::span<const uint8_t> body = {},
                             const StageOwner* owner = nullptr);
  // The ciphertext of a chunk staged in the index; kNotFound when the
  // address has none (staged in the spill, uploaded, or unknown).
  Status ReadStagedBody(const Address& address, std::vector<uint8_t>* out);
  Result<bool> HasStagedBody(const Address& address);
  // Bytes of ciphertext staged in the index and not yet uploaded.
  uint64_t staged_body_bytes() const { return staged_body_bytes_.load(); }
  // Up to max queued (address, length) pairs, oldest key order. Held
  // chunks are left out unless include_held; *next_release (when given) is
  // lowered to the end of the earliest hold left out.
  Status PeekQueue(
      size_t max, std::vector<std::pair<Address, uint64_t>>* out,
      bool include_held = true,
      std::chrono::steady_clock::time_point* next_release = nullptr);
  // Removes the queue entry and marks the address stored.
  Status CompleteUpload(const Address& address, uint64_t length);
  // The same for many entries in one write batch.
  Status CompleteUploads(const std::vector<std::pair<Address, uint64_t>>& done);
  // Drops a queue entry whose chunk is lost (kept as a sticky error).
  Status DropQueued(const Address& address, uint64_t length);
  Result<bool> IsQueued(const Address& address);
  uint64_t pending_chunks() const { return pending_chunks_.load(); }
  uint64_t pending_bytes() const { return pending_bytes_.load(); }

  // --- held chunks (superseded before their upload) -------------------------
  // A file rewritten again and again (a log appended to by separate opens)
  // seals a new last chunk each time, and each would be uploaded only to
  // be garbage a moment later; so does a chunk whose dirty buffer was
  // evicted before the file's commit (random writes over more chunks than
  // a file has buffers), every time a write brings it back. So such a
  // chunk is *held* (fs/write_pipeline.cc says which): EnqueueStaged
  // records its owner slot (inode, chunk index), the uploader leaves it
  // queued until the hold ends (PeekQueue, ClaimForUpload), and when a
  // commit of that inode no longer names it in that slot (DropSuperseded),
  // or the file seals that slot again before any commit named it
  // (DropReplaced), its queue entry, body and address state are deleted
  // instead. A chunk staged in the spill is then the caller's to remove.
  //
  // That is only safe while the owner slot is its one reference. Every
  // other way an address gets named ends its hold for good, under
  // queue_mu_, the lock the drop takes: a dedup lookup that finds it
  // (LookupForRef, EnqueueStaged of the same bytes), copy_file_range and
  // shares (Retain), an index snapshot (NewViewRetainingAll), the
  // uploader claiming it, its completion, or its loss. A chunk dropped
  // while a reader fetched it is gone from the index: readers look at the
  // file's ref again after a failed fetch (fs/chunk_reader.cc). Holds live
  // in memory only: after a restart every queued chunk is uploaded.
  //
  // Ends the hold of address, if it has one. The caller must hold what
  // keeps the address from being dropped meanwhile: the lock of the file
  // it read the address from (drops run in that file's commits).
  void Retain(const Address& address);
  // Ends the hold of every chunk staged in the spill (it takes space there
  // that writers wait for); returns how many.
  size_t EndSpillHolds();
  // NewView, with every hold ended first (an index snapshot names what it
  // sees, and its queued chunks must still arrive in the store).
  std::unique_ptr<IndexView> NewViewRetainingAll();
  // The uploader is about to put address: ends its hold. False when it is
  // no longer queued (dropped since the uploader listed it).
  Result<bool> ClaimForUpload(const Address& address);
  // After a commit of ino: drops each chunk held for a slot of ino that
  // still_named(index, address) says the file no longer names; the
  // chunks of ino still held then end their hold no later than the
  // dropped ones would have (a file rewritten without pause gets a
  // version uploaded once per hold). Returns how many went.
  // Addresses of dropped chunks that were staged in the spill, not the
  // index, go into *spilled (when given).
  Result<uint64_t> DropSuperseded(
      uint64_t ino,
      const std::function<bool(uint64_t index, const Address&)>& still_named,
      std::vector<Address>* spilled = nullptr);
  // Slot (ino, index) of an open file was sealed again as replacement
  // before a commit named old: drops old if it is still held for that
  // slot, and replacement (when held) ends its hold no later than old
  // would have. True when old went; *spilled says whether it was staged in
  // the spill. The caller holds the file's lock, under which old was the
  // slot's uncommitted ref.
  Result<bool> DropReplaced(uint64_t ino, uint64_t index, const Address& old,
                            const Address& replacement, bool* spilled);
  uint64_t held_chunks() const;
  uint64_t superseded_chunks() const { return superseded_chunks_.load(); }
  uint64_t superseded_bytes() const { return superseded_bytes_.load(); }

  // --- gc coordination (the protocol and its argument: store/gc.h) -------
  // A view of everything committed so far (see IndexView).
  std::unique_ptr<IndexView> NewView();
  // Held shared by code that turns an address it looked up into a file's
  // reference (a dedup hit recorded as a pending ref, copy_file_range
  // sharing a ref), from the lookup until the reference is recorded; gc
  // holds it exclusively while it takes its cut of the live references.
  std::shared_mutex& ref_gate() { return ref_gate_; }
  // For each address that is known as stored and not queued: deletes its
  // 'A' entry, under the lock EnqueueStaged takes, so that from now on a
  // writer of the same bytes stages and queues them again instead of
  // deduplicating against the store's copy. Returns the addresses retired.
  Result<std::vector<Address>> RetireStored(
      const std::vector<Address>& candidates);
  // Marks the retired addresses gc kept as stored again (those still
  // neither known nor queued).
  Status RestoreStored(const std::vector<Address>& kept);
  // True when the address is neither queued, known nor pinned; it is then
  // "being deleted" until EndDelete, and EnqueueStaged of it waits, so its
  // upload cannot start before the store's delete has finished.
  Result<bool> BeginDelete(const Address& address);
  void EndDelete(const Address& address);

  // --- pins and shares (store/index_shares.cc) ----------------------------
  // A pin keeps a chunk alive for gc although no data map may name it any
  // more: 'P' + 32-byte address -> its pin count as a u64 little-endian.
  // Every share of a file (wavefs share) adds one pin to each distinct data
  // address of its map, and records them under 'S' + share id, so that
  // RemoveShare drops exactly those pins. gc treats every 'P' key as live.
  // Pin counts change under pins_mu_ (read-modify-write), in synced writes.
  //
  // Adds one pin to each distinct address (a duplicate counts once).
  Status PinChunks(const std::vector<Address>& addresses);
  // Drops one pin of each distinct address (the key goes at zero);
  // kInvalid, with nothing changed, when one of them is not pinned.
  Status UnpinChunks(const std::vector<Address>& addresses);
  // Pin count of an address (0 when not pinned).
  Result<uint64_t> PinCount(const Address& address);
  // Every pinned address and its count, in address order; fn returns
  // false to stop.
  Status ListPinned(
      const std::function<bool(const Address&, uint64_t count)>& fn);
  // Records a share (its addresses and an opaque payload: the .wfmap bytes)
  // and pins its addresses, in one synced write. kExists when id is taken.
  Status AddShare(const ShareId& id, const std::vector<Address>& addresses,
                  std::string_view payload);
  // kNotFound when there is no such share.
  Result<std::string> GetSharePayload(const ShareId& id);
  Result<std::vector<Address>> GetShareAddresses(const ShareId& id);
  // Unpins exactly the addresses AddShare pinned for id and deletes its
  // record, in one synced write. kNotFound when there is no such share.
  Status RemoveShare(const ShareId& id);
  // Every share id and how many addresses it pins, in id order.
  Status ListShares(
      const std::function<bool(const ShareId&, uint64_t addresses)>& fn);

 private:
  // Point deletes of every key in [begin, end), or one range delete when
  // there are more than kPointDeleteLimit.
  Status DeleteKeys(IndexBatch* batch, const std::string& begin,
                    const std::string& end);
  Index() = default;
  Status Init();
  // Runs the barrier; its error fails the synced write that needed it.
  Status RunBarrier();
  // The 'B' record of address into *v; false when there is none.
  Result<bool> GetStagedBody(const Address& address, rocksdb::PinnableSlice* v);
  Result<uint64_t> DeleteStagedBody(const Address& address,
                                    rocksdb::WriteBatch* b);
  // Ends the hold of address (queue_mu_ held).
  void UntrackLocked(const Address& address);
  // Deletes the records of held chunks gone (queue_mu_ held), ends their
  // holds and counts them as superseded; appends the spill-staged ones to
  // *spilled. Returns how many were still queued.
  Result<uint64_t> DropHeldLocked(const std::vector<Address>& gone,
                                  std::vector<Address>* spilled);

  // Held chunks (under queue_mu_): address -> owner slot, its ciphertext
  // length and the end of its hold; and each owner inode's held addresses.
  struct Held {
    uint64_t ino = 0;
    uint64_t index = 0;
    uint64_t length = 0;      // ciphertext length (its queue entry's)
    uint64_t body_bytes = 0;  // its 'B' record's size
    std::chrono::steady_clock::time_point until;
  };
  std::map<Address, Held> held_;
  std::unordered_map<uint64_t, std::set<Address>> held_by_ino_;
  std::atomic<uint64_t> superseded_chunks_{0};
  std::atomic<uint64_t> superseded_bytes_{0};

  class FlushListener;
  std::unique_ptr<rocksdb::Env> rocks_env_;  // before db_: outlives it
  std::mutex barrier_mu_;  // guards barrier_ (never held while writing)
  std::function<Status()> barrier_;
  // Shared by ordinary writes, exclusive for a synced write and its barrier.
  std::shared_mutex write_mu_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::atomic<uint64_t> next_ino_{2};
  std::atomic<uint64_t> commits_{0};
  mutable std::mutex queue_mu_;  // serialises EnqueueStaged / CompleteUpload
  // gc: addresses whose store object is being deleted (under queue_mu_);
  // EnqueueStaged of one waits on deleting_cv_.
  std::set<Address> deleting_;
  std::condition_variable deleting_cv_;
  std::shared_mutex ref_gate_;  // see ref_gate()
  std::atomic<uint64_t> pending_chunks_{0};
  std::atomic<uint64_t> pending_bytes_{0};
  std::atomic<uint64_t> staged_body_bytes_{0};
  // Serialises pin-count read-modify-writes (PinChunks, UnpinChunks,
  // AddShare, RemoveShare); taken before write_mu_.
  std::mutex pins_mu_;
  // Adds delta (+1/-1) to each distinct address's pin count in batch b;
  // pins_mu_ held.
  Status AdjustPins(const std::vector<Address>& addresses, int delta,
                    IndexBatch* b);
};

}  // namespace wavefs
