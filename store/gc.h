// Garbage collection: removes the store objects that nothing names.
//
// A store object is live when its address is named by a chunk ref of any
// inode ('C', including inodes unlinked while open), a queue entry ('Q'), a
// pin ('P', shared data maps), a retained index snapshot (GcOptions::
// snapshot_addresses), or a mounted Filesystem's uncommitted refs
// (GcOptions::memory_refs). Everything else in the store is garbage.
//
// Safety while the mount is in use (docs/gc.md has the whole argument):
// 1. List the store, then compute a first live set: candidates are the
//    listed objects it does not name. Objects put after the listing are
//    never candidates.
// 2. Retire the candidates (Index::RetireStored): their 'A' entries go,
//    under the lock Index::EnqueueStaged takes. From then on a writer of
//    the same bytes does not deduplicate against the store's copy: it
//    stages and queues the chunk again ('Q' + 'A' = staged).
// 3. Take the cut: with Index::ref_gate() held exclusively (no dedup hit
//    is between its lookup and its recorded ref, no copy_file_range is
//    between reading a ref and recording it), read the in-memory refs and
//    open an IndexView; then release the gate and scan the view. Refs only
//    move memory -> index (commit) or are copied under the gate, so the
//    memory refs plus the view hold every ref that existed at the cut.
// 4. Every retired address the cut names is kept. For the rest, each
//    delete starts with Index::BeginDelete, which under the same lock
//    checks that the address is still neither queued, known nor pinned and
//    makes EnqueueStaged of it wait until the delete is done: a chunk
//    re-staged after the cut is either seen there (kept), or queued only
//    after its old object is gone (its upload creates it again).
// 5. Retired addresses that were kept are marked stored again.
// A crash anywhere leaves at worst addresses retired (their next writer
// uploads them again) and garbage not yet removed: never a lost chunk.
//
// Thread safety: one collection at a time per index (the caller ensures
// it); safe against concurrent writers, the uploader and readers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "chunker/types.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "util/status.h"

namespace wavefs {

struct GcProgress {
  std::string phase;  // "listing", "scanning", "removing"
  uint64_t done = 0;
  uint64_t total = 0;  // 0: unknown yet
};

struct GcOptions {
  bool dry_run = false;  // report what would go, remove nothing
  int delete_threads = 8;
  // Addresses marked "being deleted" at once (writers of one of them wait
  // for the batch's deletes).
  size_t delete_batch = 256;
  // References that only a mounted Filesystem holds (sealed but not yet
  // committed refs). Called with Index::ref_gate() held exclusively; must
  // not take that gate. Empty: none (the store is not mounted).
  std::function<Status(const std::function<void(const Address&)>&)> memory_refs;
  // Addresses the index snapshots in the store name (store/snapshot.h:
  // ForEachSnapshotAddress), kept so every retained snapshot stays
  // restorable. Read once, after the listing. Empty: none.
  std::function<Status(const std::function<void(const Address&)>&)>
      snapshot_addresses;
  std::function<void(const GcProgress&)> progress;
  // Set from another thread to stop early (what is deleted stays deleted).
  const std::atomic<bool>* cancel = nullptr;
  // Test-only seams: after the candidates are known (before retirement),
  // before the gate is taken, after the cut (before any delete), and for
  // each address after BeginDelete and before the store's delete.
  std::function<void()> after_candidates;
  std::function<void()> before_gate;
  std::function<void()> after_cut;
  std::function<void(const Address&)> before_delete;
};

struct GcReport {
  uint64_t objects = 0;       // store objects listed
  uint64_t object_bytes = 0;  // their bytes (0 when the store cannot tell)
  uint64_t referenced = 0;    // distinct addresses named at the cut
  uint64_t candidates = 0;    // unreferenced at the first look
  uint64_t removed = 0;       // deleted (dry run: would be)
  uint64_t removed_bytes = 0;
  uint64_t kept = 0;    // candidates that became referenced during gc
  uint64_t failed = 0;  // deletes that failed (tried again by the next gc)
  std::string first_error;
  bool dry_run = false;
  // One line: "removed 12 chunks (48.0 MiB) of 40 (160.0 MiB); ..."
  std::string Summary() const;
};

// Runs one collection. An error means nothing more could be done (listing
// or the index failed); deletes that fail are counted in the report.
Result<GcReport> CollectGarbage(Index* index, ChunkStore* store,
                                const GcOptions& options);

}  // namespace wavefs
