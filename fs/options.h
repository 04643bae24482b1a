// Command-line options of `wavefs mount` and how --memory-limit is divided.
// Validated once at start-up, immutable afterwards, logged once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "fs/filesystem.h"
#include "store/index.h"
#include "store/store_location.h"
#include "store/uploader.h"
#include "util/status.h"

namespace wavefs {

// Default --seal-threads: one per core plus one, because a seal thread also
// writes its chunk to the spill (O_DIRECT, so it waits on the disk without
// using CPU). Capped at 8: beyond that the write pool, not the CPU, limits.
int DefaultSealThreads();

struct MountOptions {
  std::string store;  // as given (path, file:// or s3:// URL)
  // Resolved while validating: where the store is, and how logs name it.
  StoreLocation location;
  std::string store_desc;
  // --s3-endpoint, --s3-region, --s3-path-style (override the URL's).
  std::string s3_endpoint;
  std::string s3_region;
  std::string s3_path_style;
  // The store's chunk format (from its config), set while validating.
  ChunkFormat chunk_format = kNewestChunkFormat;
  std::string store_id;    // the store config's, set while validating
  std::string mountpoint;  // absolute
  bool foreground = false;
  std::string spill_dir;
  std::string meta_dir;
  std::string key_file;
  std::string log_file;
  std::string log_level = "info";
  std::vector<std::string> fuse_options;  // each -o value
  uint64_t memory_limit = 64ull << 20;
  int upload_threads = 0;  // 0: 2 for a local store, 4 for S3
  // Extra uploads of small chunks (Uploader::Options::small_lanes);
  // -1: 0 for a local store, 12 for S3.
  int small_upload_threads = -1;
  // Small files fetched ahead of a reader going through a directory
  // (fs/sibling_prefetch.h); -1: 0 for a local store, 8 for S3.
  int prefetch_files = -1;
  int seal_threads = DefaultSealThreads();
  // Each FUSE thread keeps a request buffer that a 1 MiB write fills (the
  // kernel hands requests to idle threads in turn, so all of them): 3
  // rather than 4 took 1 MiB off every non-spliced mount's peak RSS
  // (31.0-31.1 against 32.1-32.2 MiB copying 1 GiB) with no slower row in
  // scripts/bench.sh, --workloads or 8 parallel cp (README, Memory).
  int fuse_threads = 3;
  // Most FUSE worker threads at once: more start while every one is held
  // up by a request that waits inside the daemon (fs/fuse_loop.h), e.g.
  // more files written at once than fuse_threads; they leave after 10 s
  // without a request.
  int fuse_max_threads = 64;
  // Microseconds the FUSE receiver polls for the next request before it
  // sleeps (fs/fuse_loop.h); 0: every FUSE thread sleeps in read(2). 100
  // took `tar -x` of /usr/include from 6.4 to 4.9 s and 8 KiB writes from
  // 1.50 to 1.19 s per 256 MiB (medians of 4, 2026-12-06,
  // docs/architecture.md).
  int fuse_spin_us = 100;
  uint64_t spill_reserve = 64ull << 20;
  int drain_timeout_s = 120;
  // How long a writer waits for uploads to free spill space before ENOSPC.
  int space_wait_s = 60;
  // Index snapshots (store/snapshotter.h): at most this long between
  // snapshots while anything changes (0: no snapshots), a burst of this many
  // changes followed by this many quiet seconds, and how many to keep.
  int snapshot_interval_s = 900;
  uint64_t snapshot_changes = 1000;
  int snapshot_quiet_s = 10;
  int snapshot_keep = 10;
  // Seconds between automatic gc runs in the daemon (0: none).
  int gc_interval_s = 0;
  // Seconds the small last chunk of a file rewritten again and again (a
  // log appended to by separate opens) waits before its upload, dropped if
  // the file's next commit replaces it (FsOptions::hot_tail_hold; 0: off).
  int tail_hold_s = 2;
  // Seconds after which chunk buffers nobody used go back to the system
  // (fs/idle_release.h); 0: kept for the mount's life.
  int idle_release_s = 30;
  // Spill space for paged-out buffers (FsOptions::page_out_slots, in
  // bytes; 0: off).
  uint64_t page_out = 1ull << 30;
  // The kernel's writeback cache (FUSE_CAP_WRITEBACK_CACHE): writes land in
  // the page cache and reach the daemon in max_write pieces at close,
  // fsync, or writeback; the kernel owns size and mtime. Off by default:
  // errors of a full spill then come back from close/fsync, not write().
  bool writeback_cache = false;
  // Seconds the kernel keeps names, missing names and attributes before it
  // asks again (FuseContext::timeout; 0: ask every time).
  int attr_timeout_s = 3600;
  // Read write requests into memory instead of having libfuse splice them
  // into pipes (fs/fuse_ops.cc, OpInit): one more copy of every byte; for
  // comparison and for kernels whose splice misbehaves.
  bool no_splice = false;
  // Every close seals (FsOptions::tail_journal off).
  bool no_tail_journal = false;
};

// What each memory user gets out of --memory-limit.
struct MemoryBudget {
  FsOptions fs;
  Index::Options index;
};

// "48M", "1G", "512K", "1048576" (binary units). kInvalid on anything else.
Result<uint64_t> ParseSize(const std::string& text);
// kInvalid when the limit is too small to run at all (under 24 MiB).
Result<MemoryBudget> DivideMemory(const MountOptions& o);
// $WAVEFS_HOME, else ~/.local/share/wavefs.
std::string WavefsHome();
// Parses STORE and applies the --s3-* overrides. For S3 also loads the
// credentials. One-line errors.
Result<StoreLocation> ResolveStore(const std::string& store,
                                   const std::string& endpoint,
                                   const std::string& region,
                                   const std::string& path_style);

}  // namespace wavefs
