// fsck: checks that the index, the spill and the store agree.
//
// Chunks: every address a data map ('C' ref) or the upload queue names is
// in the spill or the store, with the size its plaintext length implies in
// the store's format; with `verify` each one is read and re-hashed against
// its address. Store objects nothing names are counted as orphans (garbage
// for `wavefs gc`, not an error). Index: directory entries name existing
// inodes, link counts equal the entries naming an inode (2 + subdirectories
// for a directory), chunk refs belong to existing inodes, queue entries
// name a staged file or a store object.
//
// Every problem is one line naming the file (path, byte range) or the
// address. With `repair`:
// - a missing, truncated or corrupt store object whose staged copy is
//   intact is put again from the spill (corrected);
// - a bad object nothing can restore is removed and its address forgotten
//   ('A'), so the next writer of those bytes uploads them again; the files
//   naming it stay listed (reads of those ranges give EIO, the rest of the
//   file reads as before);
// - a queue entry whose chunk is nowhere is dropped;
// - with `index_repair` (the store is not mounted): entries naming missing
//   inodes are removed, link counts set to the entries found, refs of
//   missing inodes removed.
// Thread safety: call alone (offline), or from one thread while mounted
// (then index_repair must be false: the daemon owns the namespace).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "util/status.h"

namespace wavefs {

struct FsckOptions {
  bool verify = false;
  bool repair = false;
  bool index_repair = false;  // only when nothing else uses the index
  ChunkFormat format = kNewestChunkFormat;
  // Lines of orphans listed by name (the rest are only counted).
  size_t max_orphan_lines = 100;
  std::function<void(const std::string& phase, uint64_t done, uint64_t total)>
      progress;
};

struct FsckReport {
  std::vector<std::string> problems;   // found and not corrected
  std::vector<std::string> corrected;  // found and corrected
  // "PATH: bytes [a, b) missing|corrupt|truncated (chunk ADDR)"
  std::vector<std::string> damaged_ranges;
  std::vector<std::string> orphan_lines;  // "orphan ADDR (N bytes)"
  uint64_t files = 0;
  uint64_t refs = 0;       // data chunk refs checked
  uint64_t addresses = 0;  // distinct addresses named
  uint64_t objects = 0;    // store objects
  uint64_t verified = 0;   // chunks read and re-hashed
  uint64_t orphans = 0;
  uint64_t orphan_bytes = 0;
  // fsck(8): 0 clean, 1 errors corrected, 4 errors left uncorrected.
  int ExitCode() const;
  std::string Summary() const;
  // The whole report, one line each: problems, corrections, damaged
  // ranges, orphans, then the summary.
  std::string Text() const;
};

Result<FsckReport> CheckStore(Index* index, Spill* spill, ChunkStore* store,
                              const FsckOptions& options);

}  // namespace wavefs
