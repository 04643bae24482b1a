// `wavefs mount`: validate, daemonise, open the layers, serve FUSE, and on
// unmount drain every pending wave before exiting.
#include <fcntl.h>
#include <malloc.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "chunker/crypto.h"
#include "fs/commands.h"
#include "fs/fuse_loop.h"
#include "fs/fuse_ops.h"
#include "fs/kernel_readahead.h"
#include "fs/maintenance.h"
#include "fs/sd_notify.h"
#include "fs/share_service.h"
#include "store/counting_store.h"
#include "store/file_util.h"
#include "store/recovery.h"
#include "store/snapshotter.h"
#include "store/store_config.h"

namespace wavefs {
namespace {

// The mount's kernel readahead: FUSE requests carry at most 1 MiB
// (256 pages, set in the INIT reply), so more would only add requests in
// flight.
constexpr uint32_t kKernelReadaheadKib = 1024;
// With --writeback-cache: the mount's share of the kernel's dirty threshold
// (fs/kernel_readahead.h, RelaxDirtyLimit).
constexpr uint32_t kDirtyMaxRatio = 50;

// Where the daemon tells `wavefs unmount` how draining goes.
std::string StatusPath(const std::string& meta_dir) {
  return meta_dir + "/daemon-status";
}

void WriteDaemonStatus(const std::string& meta_dir, const std::string& state,
                       const Uploader::Stats& s, const std::string& error) {
  std::string text = "state=" + state +
                     "\npending_chunks=" + std::to_string(s.pending_chunks) +
                     "\npending_bytes=" + std::to_string(s.pending_bytes) +
                     "\nuploaded_chunks=" + std::to_string(s.uploaded_chunks) +
                     "\nlost_chunks=" + std::to_string(s.lost_chunks) +
                     "\nlost_error=" + s.lost_error + "\nerror=" + error + "\n";
  Status st = WriteFileAtomically(
      StatusPath(meta_dir),
      {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0644);
  if (!st.ok()) spdlog::warn("cannot write daemon status: {}", st.ToString());
}

// Reports start-up failure or success to the waiting parent (or stderr).
class StartupReporter {
 public:
  explicit StartupReporter(int fd) : fd_(fd) {}
  int Fail(const std::string& message) {
    if (fd_ >= 0) {
      std::string m = "ERR " + message + "\n";
      (void)!write(fd_, m.data(), m.size());
      close(fd_);
      fd_ = -1;
    } else {
      std::fprintf(stderr, "wavefs: %s\n", message.c_str());
    }
    spdlog::error("start-up failed: {}", message);
    return 1;
  }
  void Ready() {
    if (fd_ >= 0) {
      (void)!write(fd_, "OK\n", 3);
      close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "wavefs: %s\n", message.c_str());
  return 1;
}

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return "";
  return buf;
}

void SetUpLogging(const MountOptions& o) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(
      std::make_shared<spdlog::sinks::basic_file_sink_mt>(o.log_file));
  if (o.foreground)
    sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  auto logger =
      std::make_shared<spdlog::logger>("wavefs", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::from_str(o.log_level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

// The daemon proper, in the child after fork (or in the foreground).
int Serve(MountOptions o, const Secret& secret, const MemoryBudget& budget,
          std::vector<int> lock_fds, StartupReporter report) {
  for (int fd : lock_fds) {
    std::string owner = std::to_string(getpid()) + "\n" + o.mountpoint + "\n";
    (void)!ftruncate(fd, 0);
    (void)!pwrite(fd, owner.data(), owner.size(), 0);
  }
  // Chunk-sized allocations (4 MiB) must come from mmap and go back to the
  // kernel when freed; glibc would otherwise raise its mmap threshold after
  // the first free and keep them in per-thread arenas, whose count grows
  // with the thread count. Both make RSS creep with the amount copied.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_ARENA_MAX, 2);
  SetUpLogging(o);
  spdlog::info(
      "wavefs {} starting: store {} mountpoint {} meta {} spill {} "
      "memory-limit {} MiB -> {} write buffers, {} cached chunks, "
      "index {}+{} MiB; seal threads {}, upload threads {} (+{} small), fuse "
      "threads {} (at most {})",
      "0.1", o.store_desc, o.mountpoint, o.meta_dir, o.spill_dir,
      o.memory_limit >> 20, budget.fs.dirty_buffers, budget.fs.cache_chunks,
      (2 * budget.index.write_buffer_bytes) >> 20,
      budget.index.block_cache_bytes >> 20, budget.fs.seal_threads,
      o.upload_threads, o.small_upload_threads, o.fuse_threads,
      o.fuse_max_threads);

  // No core dump or ptrace by other users: the daemon holds the
  // convergence secret, every chunk key and decrypted file data.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  auto index = Index::Open(o.meta_dir + "/index", budget.index);
  if (!index.ok())
    return report.Fail("cannot open the index: " + index.status().message());
  auto spill = Spill::Open(o.spill_dir);
  if (!spill.ok())
    return report.Fail("cannot open the spill directory: " +
                       spill.status().message());
  auto opened = OpenChunkStore(o.location, o.chunk_format);
  if (!opened.ok())
    return report.Fail("cannot open the store: " + opened.status().message());
  CountingStore store(std::move(*opened));

  // Orphan inodes, stale and torn staged files (store/recovery.h).
  auto recovered =
      RecoverAtStart(index->get(), spill->get(), o.chunk_format, &store);
  if (!recovered.ok())
    return report.Fail("start-up recovery failed: " +
                       recovered.status().message());
  spdlog::info(
      "{} chunks ({} MiB) pending upload from earlier runs ({} verified, {} "
      "damaged and removed); {} stale staged files removed; {} orphan "
      "inodes reclaimed",
      (*index)->pending_chunks(), (*index)->pending_bytes() >> 20,
      recovered->staged_verified, recovered->torn_staged_removed,
      recovered->stale_staged_removed, recovered->orphans_reclaimed);

  Uploader::Options uo;
  uo.concurrency = o.upload_threads;
  uo.small_lanes = o.small_upload_threads;
  uo.format = o.chunk_format;
  Uploader uploader(index->get(), spill->get(), &store, uo);
  uploader.Start();
  auto fs = std::make_unique<Filesystem>(index->get(), spill->get(), &store,
                                         &uploader, secret, budget.fs, &store);

  // `wavefs gc|fsck MOUNTPOINT` run here (fs/maintenance.h).
  auto maintenance = std::make_unique<Maintenance>(
      fs.get(), index->get(), spill->get(), &store, o.chunk_format);
  // Index snapshots in the store (store/snapshotter.h); gc keeps what the
  // retained ones name, whether or not this mount takes new ones.
  const SnapshotKey snapshot_key = DeriveSnapshotKey(secret);
  maintenance->SetSnapshotAddresses(
      [&store, snapshot_key,
       work = o.meta_dir](const std::function<void(const Address&)>& fn) {
        return ForEachSnapshotAddress(&store, snapshot_key, work, fn);
      });
  if (o.gc_interval_s > 0)
    maintenance->ScheduleGc(std::chrono::seconds(o.gc_interval_s));
  std::unique_ptr<Snapshotter> snapshotter;
  if (auto sid = IdFromHex(o.store_id); sid.ok()) {
    SnapshotterOptions so;
    so.interval = std::chrono::seconds(o.snapshot_interval_s);
    so.burst_changes = o.snapshot_changes;
    so.quiet = std::chrono::seconds(o.snapshot_quiet_s);
    so.keep = static_cast<size_t>(o.snapshot_keep);
    so.marker = o.meta_dir + "/snapshot-clean";
    so.work_dir = o.meta_dir;
    snapshotter = std::make_unique<Snapshotter>(index->get(), &store,
                                                snapshot_key, *sid, so);
    snapshotter->Start();
  } else {
    spdlog::warn("store id '{}' is not 32 hex characters: no index snapshots",
                 o.store_id);
  }
  FuseContext ctx;
  ctx.fs = fs.get();
  ctx.want_writeback_cache = o.writeback_cache;
  ctx.want_splice = !o.no_splice;
  ctx.timeout = o.attr_timeout_s;
  ctx.maintenance = maintenance.get();
  std::unique_ptr<ShareService> shares;
  if (auto sid = IdFromHex(o.store_id); sid.ok()) {
    shares = std::make_unique<ShareService>(fs.get(), index->get(),
                                            o.chunk_format, *sid);
    ctx.shares = shares.get();
  } else {
    spdlog::warn("store id '{}' is not 32 hex characters: sharing is off",
                 o.store_id);
  }
  ctx.stats_extra = "pid=" + std::to_string(getpid()) +
                    "\nstore=" + o.store_desc + "\nmeta_dir=" + o.meta_dir +
                    "\nspill_dir=" + o.spill_dir + "\nlog_file=" + o.log_file +
                    "\n";

  // Mounted by root, the mount serves every user as a disk would (the
  // kernel checks modes: default_permissions). Other users' mounts need
  // user_allow_other in /etc/fuse.conf for that, so they ask with -o.
  std::string base_opts =
      "fsname=wavefs:" + o.store_desc + ",subtype=wavefs,default_permissions";
  if (geteuid() == 0) base_opts += ",allow_other";
  std::vector<std::string> argv_s = {"wavefs", "-o", base_opts};
  for (const auto& opt : o.fuse_options) {
    argv_s.push_back("-o");
    argv_s.push_back(opt);
  }
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = MakeFuseOps();
  // libfuse reports bad options on stderr: send that to the log.
  int saved_err = -1;
  if (!o.foreground) {
    saved_err = dup(2);
    int logfd = open(o.log_file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (logfd >= 0) {
      dup2(logfd, 2);
      close(logfd);
    }
  }
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &ctx);
  fuse_opt_free_args(&args);  // libfuse may have added arguments of its own
  if (se == nullptr) {
    return report.Fail(
        "invalid FUSE mount options '" +
        (o.fuse_options.empty() ? std::string() : o.fuse_options[0]) +
        "' (details in " + o.log_file + ")");
  }
  if (fuse_set_signal_handlers(se) != 0 ||
      fuse_session_mount(se, o.mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    return report.Fail("cannot mount at " + o.mountpoint + " (details in " +
                       o.log_file + ")");
  }
  // FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate: requests
  // and replies pass through ctx.wire (fs/fuse_wire.h). Before the loop, so
  // that it sees INIT.
  const fuse_custom_io wire_io = MakeWireIo();
  if (fuse_session_custom_io(se, &wire_io, fuse_session_fd(se)) != 0) {
    spdlog::warn(
        "cannot hook /dev/fuse: the kernel keeps asking for "
        "security.capability before each write");
  }
  // Whole reads in one request (fs/kernel_readahead.h). Root only; others
  // keep the kernel's 128 KiB pieces, which the S3 read windows then join.
  if (auto ra = SetKernelReadahead(o.mountpoint, kKernelReadaheadKib);
      ra.ok() && *ra >= kKernelReadaheadKib) {
    fs->DisableReadWindows();
    spdlog::info("kernel readahead of the mount: {} KiB", *ra);
  } else {
    spdlog::info(
        "kernel readahead of the mount stays at the kernel's default ({}): "
        "reads arrive in 128 KiB pieces",
        ra.ok() ? std::to_string(*ra) + " KiB" : ra.status().ToString());
  }
  // With the writeback cache, dirty pages wait for close or fsync, and then
  // come in order, instead of being written back past FUSE's strict 1 %
  // in any order (fs/kernel_readahead.h). Root, Linux >= 6.2.
  if (o.writeback_cache) {
    if (Status st = RelaxDirtyLimit(o.mountpoint, kDirtyMaxRatio); st.ok()) {
      spdlog::info(
          "dirty pages of the mount: up to {} % of the kernel's dirty "
          "threshold, no strict limit",
          kDirtyMaxRatio);
    } else {
      spdlog::info(
          "dirty pages of the mount keep FUSE's strict 1 % limit ({}): "
          "random writes may be sealed more than once",
          st.ToString());
    }
  }
  // A failed commit drops a file's changes; pages the kernel cached of them
  // must go, for handles open now too.
  auto invalidator = std::make_unique<KernelInvalidator>(se);
  fs->SetDroppedListener(
      [inv = invalidator.get()](uint64_t ino) { inv->Invalidate(ino); });
  ctx.invalidator = invalidator.get();
  ctx.session = se;
  spdlog::info("mounted at {}", o.mountpoint);
  WriteDaemonStatus(o.meta_dir, "mounted", uploader.stats(), "");
  report.Ready();
  // Under a Type=notify unit (packaging/wavefs@.service): started now.
  if (o.foreground) NotifySystemd("READY=1\nSTATUS=mounted at " + o.mountpoint);
  if (!o.foreground) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      close(null);
    }
    if (saved_err >= 0) close(saved_err);
  }

  // Our own loop, so that requests may be read or spliced by turns
  // (fs/fuse_loop.h); --fuse-threads workers stay for the session, and
  // more start (up to --fuse-max-threads) only while all are held up. The
  // kept ones' 1 MiB request buffers are in the budget (fs/options.cc
  // counts 1 MiB per FUSE thread).
  FuseLoopOptions loop_options;
  loop_options.threads = static_cast<unsigned>(o.fuse_threads);
  loop_options.max_threads = static_cast<unsigned>(o.fuse_max_threads);
  loop_options.spin_us = static_cast<unsigned>(o.fuse_spin_us);
  loop_options.saturated = [fs = fs.get()] { fs->FuseSaturated(); };
  int rc = RunFuseLoop(se, loop_options);
  fuse_remove_signal_handlers(se);
  fs->SetDroppedListener(nullptr);
  ctx.invalidator = nullptr;
  ctx.session = nullptr;
  invalidator.reset();  // it writes to the session's /dev/fuse
  fuse_session_unmount(se);
  ctx.maintenance = nullptr;
  maintenance.reset();       // cancels a running gc, joins its thread
  fuse_session_destroy(se);  // runs destroy: commits every open file
  spdlog::info("unmounted (loop status {}); flushing {} pending chunks", rc,
               uploader.stats().pending_chunks);

  if (o.foreground)
    NotifySystemd("STOPPING=1\nSTATUS=unmounted; flushing pending chunks");
  Status committed = fs->CommitAll();
  Status drained = uploader.Drain(
      std::chrono::seconds(o.drain_timeout_s), [&](const Uploader::Stats& s) {
        WriteDaemonStatus(o.meta_dir, "draining", s, s.sticky_error);
        if (o.foreground)
          NotifySystemd("STATUS=flushing, " + std::to_string(s.pending_chunks) +
                        " chunks left");
      });
  fs.reset();
  uploader.Stop();
  // After the drain, so the snapshot names uploaded chunks only (those
  // still queued after a failed drain are marked pending in it).
  if (snapshotter && committed.ok()) {
    Status snap = snapshotter->Final();
    if (!snap.ok())
      spdlog::error(
          "final index snapshot failed: {} (the store's newest "
          "snapshot is older than this unmount)",
          snap.ToString());
  }
  snapshotter.reset();
  Uploader::Stats final_stats = uploader.stats();
  Status closed = (*index)->Close();
  int exit_code = 0;
  if (drained.ok() && committed.ok() && closed.ok() &&
      final_stats.lost_chunks > 0) {
    // Everything that could go did, but some chunks were found nowhere:
    // not a clean stop, and `wavefs unmount` must say so.
    WriteDaemonStatus(o.meta_dir, "lost", final_stats, final_stats.lost_error);
    spdlog::error("{} chunks were lost this session: {}",
                  final_stats.lost_chunks, final_stats.lost_error);
    exit_code = 1;
  } else if (drained.ok() && committed.ok() && closed.ok()) {
    WriteDaemonStatus(o.meta_dir, "clean", final_stats, "");
    spdlog::info("every chunk is in the store; {} uploaded this session",
                 final_stats.uploaded_chunks);
  } else {
    const Status& bad = !committed.ok() ? committed
                        : !drained.ok() ? drained
                                        : closed;
    WriteDaemonStatus(o.meta_dir, "pending", final_stats, bad.message());
    spdlog::error("exiting with work left: {}", bad.ToString());
    exit_code = 1;
  }
  spdlog::shutdown();
  for (int fd : lock_fds) close(fd);
  return exit_code;
}

}  // namespace

int RunMount(MountOptions o) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  auto loc = ResolveStore(o.store, o.s3_endpoint, o.s3_region, o.s3_path_style);
  if (!loc.ok()) return Fail(loc.status().message());
  o.location = *loc;
  if (o.location.kind == StoreLocation::Kind::kLocal) {
    const std::string dir = o.location.local_dir;
    o.location.local_dir = RealPath(dir);
    if (o.location.local_dir.empty())
      return Fail("store " + dir +
                  " does not exist (create it with 'wavefs init " + dir + "')");
  }
  o.store_desc = o.location.Describe();
  if (o.upload_threads == 0)
    o.upload_threads = o.location.kind == StoreLocation::Kind::kS3 ? 4 : 2;
  // A small object's put costs the store's round trip, so more of them
  // run at once against S3 (docs/architecture.md, "Upload path"); a local
  // store's puts are file creates on the same disk: no more than before.
  if (o.small_upload_threads < 0)
    o.small_upload_threads =
        o.location.kind == StoreLocation::Kind::kS3 ? 12 : 0;
  // A local store's read is a file read on this disk: nothing to hide.
  if (o.prefetch_files < 0)
    o.prefetch_files = o.location.kind == StoreLocation::Kind::kS3 ? 8 : 0;
  // For S3 this is a signed request: wrong keys, a missing bucket, a bad
  // region or an unreachable endpoint fail here, before the fork.
  auto cfg = ReadStoreConfigAt(o.location);
  if (!cfg.ok()) return Fail(cfg.status().message());
  o.chunk_format = cfg->chunk_format();
  o.store_id = cfg->store_id;
  const std::string base = WavefsHome() + "/" + cfg->store_id;
  if (o.key_file.empty()) o.key_file = base + "/key";
  auto secret = ReadKeyFile(o.key_file);
  if (!secret.ok()) return Fail(secret.status().message());
  struct stat st;
  if (IsDeadMount(o.mountpoint)) {
    // A daemon that died (kill -9, crash) leaves its mount behind; nothing
    // of it is lost (the next start resumes its uploads), so clear it.
    if (!DetachStaleMount(o.mountpoint))
      return Fail("mount point " + o.mountpoint +
                  " is a dead FUSE mount and cannot be cleared: run "
                  "'fusermount3 -uz " +
                  o.mountpoint + "'");
    std::fprintf(stderr, "wavefs: cleared a dead mount at %s\n",
                 o.mountpoint.c_str());
  }
  const std::string mp = RealPath(o.mountpoint);
  if (mp.empty() || stat(mp.c_str(), &st) != 0)
    return Fail("mount point " + o.mountpoint + " does not exist");
  if (!S_ISDIR(st.st_mode))
    return Fail("mount point " + o.mountpoint + " is not a directory");
  // A second mount on top of a live one would hide it (and its files) until
  // the top one is unmounted: refuse, as mount(8) refuses a mounted fstab
  // entry. (A dead wavefs mount was cleared above.)
  struct statx stx;
  if (statx(AT_FDCWD, mp.c_str(), AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &stx) ==
          0 &&
      (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
      (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0)
    return Fail("mount point " + o.mountpoint +
                " is already a mount point; unmount it first");
  o.mountpoint = mp;
  if (o.meta_dir.empty()) o.meta_dir = base + "/meta";
  if (o.spill_dir.empty()) o.spill_dir = base + "/spill";
  if (o.log_file.empty()) o.log_file = base + "/wavefs.log";
  for (const std::string& d : {o.meta_dir, o.spill_dir}) {
    if (Status s = MakeDirs(d); !s.ok()) return Fail(s.message());
  }
  o.meta_dir = RealPath(o.meta_dir);
  o.spill_dir = RealPath(o.spill_dir);
  if (spdlog::level::from_str(o.log_level) == spdlog::level::off &&
      o.log_level != "off")
    return Fail("unknown --log-level '" + o.log_level +
                "' (trace, debug, info, warn, error)");
  auto budget = DivideMemory(o);
  if (!budget.ok()) return Fail(budget.status().message());
  if (o.upload_threads < 1 || o.upload_threads > 64 || o.seal_threads < 1 ||
      o.seal_threads > 64 || o.fuse_threads < 1 || o.fuse_threads > 64)
    return Fail("thread counts must be between 1 and 64");
  if (o.fuse_max_threads < o.fuse_threads || o.fuse_max_threads > 1024)
    return Fail("--fuse-max-threads must be between --fuse-threads (" +
                std::to_string(o.fuse_threads) + ") and 1024");
  if (o.fuse_spin_us < 0 || o.fuse_spin_us > 1000)
    return Fail("--fuse-spin must be between 0 and 1000 microseconds");
  if (o.small_upload_threads < 0 || o.small_upload_threads > 64)
    return Fail("--small-upload-threads must be between 0 and 64");
  if (o.prefetch_files < 0 || o.prefetch_files > 64)
    return Fail("--prefetch-files must be between 0 and 64");
  if (o.attr_timeout_s < 0 || o.attr_timeout_s > 86400)
    return Fail("--attr-timeout must be between 0 and 86400 seconds");
  if (o.space_wait_s < 0 || o.space_wait_s > 86400)
    return Fail("--space-wait must be between 0 and 86400 seconds");
  if (o.drain_timeout_s < 1 || o.drain_timeout_s > 86400)
    return Fail("--drain-timeout must be between 1 and 86400 seconds");
  if (o.snapshot_interval_s < 0 || o.snapshot_interval_s > 7 * 86400)
    return Fail("--snapshot-interval must be between 0 and 604800 seconds");
  if (o.snapshot_quiet_s < 0 || o.snapshot_quiet_s > 86400)
    return Fail("--snapshot-quiet must be between 0 and 86400 seconds");
  if (o.snapshot_keep < 1 || o.snapshot_keep > 10000)
    return Fail("--snapshot-keep must be between 1 and 10000");
  if (o.tail_hold_s < 0 || o.tail_hold_s > 86400)
    return Fail("--tail-hold must be between 0 and 86400 seconds");
  if (o.idle_release_s < 0 || o.idle_release_s > 86400)
    return Fail("--idle-release must be between 0 and 86400 seconds");
  if (o.page_out != 0 && (o.page_out < kChunkSize || o.page_out > (1ull << 40)))
    return Fail("--page-out must be 0 or between 4M and 1T");

  // The metadata directory holds every chunk key: only its owner may read
  // it.
  for (const std::string& d : {o.meta_dir}) {
    struct stat ds;
    if (::stat(d.c_str(), &ds) == 0 && (ds.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o",
                    static_cast<unsigned>(ds.st_mode & 07777));
      return Fail("metadata directory " + d + " is open to other users (mode " +
                  mode + "); it holds every chunk key: chmod 700 it");
    }
  }
  // One daemon per metadata directory and per spill directory: a second
  // daemon on either would delete or upload the other's staged chunks.
  std::vector<int> lock_fds;
  for (const auto& [dir, what] :
       {std::pair<std::string, std::string>{o.meta_dir, "metadata"},
        std::pair<std::string, std::string>{o.spill_dir, "spill"}}) {
    const std::string lock_path = dir + "/LOCK";
    int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return Fail("cannot open " + lock_path + ": " + std::strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char owner[512] = {0};
      (void)!pread(fd, owner, sizeof owner - 1, 0);
      std::string who(owner);
      for (char& c : who)
        if (c == '\n') c = ' ';
      while (!who.empty() && who.back() == ' ') who.pop_back();
      return Fail(what + " directory " + dir +
                  " is in use by another wavefs daemon (pid and mount point: " +
                  who + ")");
    }
    lock_fds.push_back(fd);
  }
  {
    FILE* probe = std::fopen(o.log_file.c_str(), "a");
    if (probe == nullptr)
      return Fail("cannot write the log file " + o.log_file);
    std::fclose(probe);
  }

  if (o.foreground)
    return Serve(o, *secret, *budget, lock_fds, StartupReporter(-1));

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    return Fail(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) return Fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    close(pipefd[0]);
    setsid();
    if (chdir("/") != 0) {
    }
    _exit(Serve(o, *secret, *budget, lock_fds, StartupReporter(pipefd[1])));
  }
  close(pipefd[1]);
  for (int fd : lock_fds) close(fd);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0 ||
         (n < 0 && errno == EINTR))
    if (n > 0) msg.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  if (msg.rfind("OK", 0) == 0) {
    std::printf("wavefs: mounted %s at %s (log: %s)\n", o.store_desc.c_str(),
                o.mountpoint.c_str(), o.log_file.c_str());
    return 0;
  }
  if (msg.rfind("ERR ", 0) == 0) {
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Fail(msg.substr(4));
  }
  return Fail("the daemon died during start-up (see " + o.log_file + ")");
}

}  // namespace wavefs
