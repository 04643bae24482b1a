// Command-line options of `wavefs mount` and how --memory-limit is divided.
// Validated once at start-up, immutable afterwards, logged once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "fs/filesystem.h"
#include "store/index.h"
#include "store/uploader.h"
#include "util/status.h"

namespace wavefs {

// Default --seal-threads: one per core plus one, because a seal thread also
// writes its chunk to the spill (O_DIRECT, so it waits on the disk without
// using CPU). Capped at 8: beyond that the write pool, not the CPU, limits.
int DefaultSealThreads();

struct MountOptions {
  std::string store;      // as given (path or file:// URL)
  std::string store_dir;  // resolved local directory
  // The store's chunk format (from its config), set while validating.
  ChunkFormat chunk_format = kNewestChunkFormat;
  std::string mountpoint;  // absolute
  bool foreground = false;
  std::string spill_dir;
  std::string meta_dir;
  std::string key_file;
  std::string log_file;
  std::string log_level = "info";
  std::vector<std::string> fuse_options;  // each -o value
  uint64_t memory_limit = 64ull << 20;
  int upload_threads = 2;
  int seal_threads = DefaultSealThreads();
  int fuse_threads = 4;
  uint64_t spill_reserve = 64ull << 20;
  int drain_timeout_s = 120;
  // How long a writer waits for uploads to free spill space before ENOSPC.
  int space_wait_s = 60;
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
// A path or file:// URL to a local directory; kNotSupported for other
// schemes (s3:// comes with the S3 store).
Result<std::string> StoreDirOf(const std::string& store);

}  // namespace wavefs
