// Snapshotter: takes index snapshots (store/snapshot.h) in the daemon.
//
// When: after a burst (at least `burst_changes` index commits since the
// last snapshot, then `quiet` without a commit, and not sooner than
// min(interval, 60 s) after the last snapshot); and at least every
// `interval` while anything changed; and once more at unmount, after the
// final drain (Final), so that snapshot names uploaded chunks only.
// A snapshot that fails is logged and tried again a minute later: it never
// stops the mount.
//
// A marker file (`marker`, in the metadata directory) records that the
// last session ended with a snapshot of its final state; without it (a
// crash, a failed final snapshot) the next session counts as changed, so
// its unmount snapshots even when nothing else changes.
//
// Thread safety: thread-safe. Start once; Stop (or Final) before the index
// and the store go.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "store/chunk_store.h"
#include "store/index.h"
#include "store/snapshot.h"

namespace wavefs {

struct SnapshotterOptions {
  std::chrono::seconds interval{900};  // 0: no snapshots at all
  uint64_t burst_changes = 1000;
  std::chrono::seconds quiet{10};
  size_t keep = kDefaultSnapshotKeep;
  std::string marker;  // path of the clean-end marker; empty: none
  // Where a snapshot is built before it is streamed to the store (the
  // metadata directory).
  std::string work_dir;
};

class Snapshotter {
 public:
  Snapshotter(Index* index, ChunkStore* store, const SnapshotKey& key,
              const StoreIdBytes& store_id, SnapshotterOptions options);
  ~Snapshotter();

  void Start();
  // Stops the background thread (a snapshot in progress finishes).
  void Stop();
  // Stops, then snapshots the index when anything changed since the last
  // snapshot (or the store has none), and writes the marker on success.
  Status Final();
  // Snapshots now, whatever changed (tests, and Final).
  Result<TakenSnapshot> SnapshotNow();

 private:
  void Loop();
  bool Changed() const;

  Index* index_;
  ChunkStore* store_;
  const SnapshotKey key_;
  const StoreIdBytes store_id_;
  const SnapshotterOptions o_;
  std::mutex take_mu_;  // one snapshot at a time; before mu_
  std::mutex mu_;       // guards the fields below
  std::condition_variable cv_;
  bool stop_ = false;
  bool dirty_ = false;  // changed before this session's first snapshot
  uint64_t commits_at_snapshot_ = 0;
  std::thread thread_;
};

}  // namespace wavefs
