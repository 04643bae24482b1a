// Maintenance: `wavefs gc` and `wavefs fsck` run inside the daemon when
// they are given a mount point.
//
// Why inside the daemon: the index is the daemon's (RocksDB allows one
// process), and gc is only safe when it can see and hold off what the
// daemon does with references: the uncommitted refs of open files, dedup
// lookups, copy_file_range (store/gc.h). The channel is the mount root's
// extended attributes, which need no socket and carry the caller's
// credentials: setxattr user.wavefs.gc ("run" or "dry-run") or
// user.wavefs.fsck ("check", with ",verify" and/or ",repair") starts a task
// on a thread of its own and returns at once; getxattr of the same name
// returns its state as key=value lines (state=idle|running|done|failed,
// phase, done, total, then the report). One task at a time: kBusy
// (EBUSY) otherwise. Only root or the daemon's owner may start one.
// ScheduleGc runs a gc every interval on its own (`--gc-interval`), exactly
// as `wavefs gc MOUNTPOINT` would; a gc or fsck already running when one is
// due makes it skip that turn.
// Thread safety: thread-safe. Destroy (or Stop) before the Filesystem.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "chunker/types.h"
#include "fs/filesystem.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "util/status.h"

namespace wavefs {

inline constexpr const char* kXattrGc = "user.wavefs.gc";
inline constexpr const char* kXattrFsck = "user.wavefs.fsck";

class Maintenance {
 public:
  Maintenance(Filesystem* fs, Index* index, Spill* spill, ChunkStore* store,
              ChunkFormat format);
  ~Maintenance();

  // name: kXattrGc or kXattrFsck; args as above. kInvalid on bad args,
  // kBusy while a task runs.
  Status Start(const std::string& name, const std::string& args);
  // The state of the last task started under that name.
  std::string StatusText(const std::string& name);
  // Starts a gc every `interval` (the first one `interval` after this call).
  // Call once.
  void ScheduleGc(std::chrono::seconds interval);
  // Ends the schedule, cancels a running gc (what it deleted stays
  // deleted) and joins.
  void Stop();
  // What gc keeps for the index snapshots (GcOptions::snapshot_addresses).
  // Set before the first Start.
  void SetSnapshotAddresses(
      std::function<Status(const std::function<void(const Address&)>&)> fn) {
    snapshot_addresses_ = std::move(fn);
  }

 private:
  struct Task {
    std::string state = "idle";  // idle, running, done, failed
    std::string phase;
    uint64_t done = 0;
    uint64_t total = 0;
    std::string report;  // the finished task's lines
    int exit_code = 0;
  };
  Task* TaskOf(const std::string& name);

  Filesystem* fs_;
  Index* index_;
  Spill* spill_;
  ChunkStore* store_;
  const ChunkFormat format_;
  std::mutex mu_;  // guards the tasks and thread_
  Task gc_;
  Task fsck_;
  bool running_ = false;
  std::thread thread_;
  std::atomic<bool> cancel_{false};
  std::function<Status(const std::function<void(const Address&)>&)>
      snapshot_addresses_;
  // The gc schedule (ScheduleGc).
  std::mutex schedule_mu_;
  std::condition_variable schedule_cv_;
  bool schedule_stop_ = false;  // under schedule_mu_
  std::thread scheduler_;
};

}  // namespace wavefs
