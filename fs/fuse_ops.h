// The FUSE low-level adapter: one function per operation, each doing its
// work through Filesystem and replying exactly once (errors through
// ErrnoOf, with one log line).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "fs/filesystem.h"
#include "fs/fuse_wire.h"

namespace wavefs {

class KernelInvalidator;
class Maintenance;
class ShareService;

struct FuseContext {
  Filesystem* fs = nullptr;
  // Appended to user.wavefs.stats (pid, directories, store).
  std::string stats_extra;
  // Counted in user.wavefs.stats as kernel_invalidations; may be null.
  KernelInvalidator* invalidator = nullptr;
  // For attribute-only invalidations (offset -1), which the kernel handles
  // without page or inode locks, so a worker may send them itself before it
  // replies; may be null.
  fuse_session* session = nullptr;
  // Runs gc and fsck for `wavefs gc|fsck MOUNTPOINT`; may be null.
  Maintenance* maintenance = nullptr;
  // Answers user.wavefs.share* and user.wavefs.unshare (fs/share_service.h);
  // null: those names are not served.
  ShareService* shares = nullptr;
  // Ask the kernel for its writeback cache (--writeback-cache); `init`
  // records whether it agreed.
  bool want_writeback_cache = false;
  bool want_splice = true;  // false: --no-splice
  // Seconds the kernel may keep names, missing names and attributes
  // without asking again (--attr-timeout). Every change goes through this
  // daemon (the store's lock keeps a second one out), so the kernel's own
  // updates keep them right; what the daemon changes on its own (a
  // commit's dropped changes, killed set-user-ID bits) it invalidates.
  double timeout = 3600;
  std::atomic<bool> writeback_cache{false};
  // WRITE requests received, for user.wavefs.stats (how well the kernel
  // gathers small writes).
  std::atomic<uint64_t> write_requests{0};
  // READ requests received (a 1 MiB read is one: max_pages, OpInit).
  std::atomic<uint64_t> read_requests{0};
  // Of those, the ones whose data came in a pipe (libfuse's splice read),
  // read from there straight into a dirty buffer.
  std::atomic<uint64_t> spliced_writes{0};
  // Of those, the ones the kernel's writeback sent (FUSE_WRITE_CACHE: pages
  // of its cache, with --writeback-cache), not an application's write.
  std::atomic<uint64_t> writeback_writes{0};
  // LOOKUP requests, and entries returned with their attributes by
  // readdirplus (each one a LOOKUP saved).
  std::atomic<uint64_t> lookup_requests{0};
  std::atomic<uint64_t> readdirplus_entries{0};
  // GETXATTR requests (the kernel's security.capability check before each
  // write, ls's security.selinux probe, getfattr, ...).
  std::atomic<uint64_t> getxattr_requests{0};
  // FUSE_HANDLE_KILLPRIV_V2 at the /dev/fuse boundary (fs/fuse_wire.h).
  FuseWire wire;
};

// The /dev/fuse hooks that put ctx->wire between the kernel and libfuse;
// install with fuse_session_custom_io after fuse_session_mount.
fuse_custom_io MakeWireIo();

// The operation table; userdata of the session must be a FuseContext*.
fuse_lowlevel_ops MakeFuseOps();

// Tells the kernel to drop its cached pages of an inode
// (fuse_lowlevel_notify_inval_inode), from a thread of its own: the kernel
// handles the notification inside the write to /dev/fuse and may wait for a
// request that only a FUSE worker can answer, so writing it from a worker
// can deadlock. Invalidate never blocks. Destroy it before the session.
class KernelInvalidator {
 public:
  explicit KernelInvalidator(fuse_session* se);
  ~KernelInvalidator();  // stops the thread; what is still queued is dropped
  void Invalidate(uint64_t ino);
  uint64_t sent() const;  // notifications written so far

 private:
  void Loop();
  fuse_session* const se_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<uint64_t> queue_;
  bool stopping_ = false;
  uint64_t sent_ = 0;
  std::thread thread_;
};

}  // namespace wavefs
