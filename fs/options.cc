#include "fs/options.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <regex>

namespace wavefs {

Result<uint64_t> ParseSize(const std::string& text) {
  static const std::regex re("^([0-9]+)([KMGTkmgt]?)(i?[Bb])?$");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    return Status::Error(Code::kInvalid,
                         "bad size '" + text + "' (use e.g. 64M or 1G)");
  const std::string unit = m[2].str();
  const int shift = unit.empty() ? 0 : 10 * (1 + static_cast<int>(std::string("KMGT").find(std::toupper(unit[0]))));
  if (m[1].length() > 19) return Status::Error(Code::kInvalid, "size too large: " + text);
  const uint64_t v = std::stoull(m[1].str());
  if (shift && v > (~0ull >> shift))
    return Status::Error(Code::kInvalid, "size too large: " + text);
  return v << shift;
}

Result<MemoryBudget> DivideMemory(const MountOptions& o) {
  constexpr uint64_t kMiB = 1ull << 20;
  if (o.memory_limit < 24 * kMiB)
    return Status::Error(Code::kInvalid,
                         "--memory-limit must be at least 24M (two write "
                         "buffers, two cached chunks and the index)");
  MemoryBudget b;
  // Fixed part: code, libraries, thread stacks in use, FUSE request buffers
  // (about 1 MiB per FUSE thread) and RocksDB.
  const uint64_t fixed = 8 * kMiB + static_cast<uint64_t>(o.fuse_threads) * kMiB;
  b.index.write_buffer_bytes = 2 * kMiB;
  b.index.block_cache_bytes = 2 * kMiB;
  const uint64_t rocks = 2 * b.index.write_buffer_bytes + b.index.block_cache_bytes;
  const uint64_t rest = o.memory_limit > fixed + rocks ? o.memory_limit - fixed - rocks : 0;
  // What is left is chunk buffers: half for writes, half for reads.
  const uint64_t chunks = std::max<uint64_t>(4, rest / kMaxCiphertextSize);
  b.fs.dirty_buffers = std::max<uint64_t>(2, chunks / 2);
  b.fs.cache_chunks = std::max<uint64_t>(2, chunks - b.fs.dirty_buffers);
  b.fs.seal_threads = o.seal_threads;
  b.fs.spill_reserve_bytes = o.spill_reserve;
  return b;
}

std::string WavefsHome() {
  if (const char* h = std::getenv("WAVEFS_HOME"); h && *h) return h;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.local/share/wavefs";
}

Result<std::string> StoreDirOf(const std::string& store) {
  if (store.rfind("file://", 0) == 0) return store.substr(7);
  if (store.find("://") != std::string::npos)
    return Status::Error(Code::kNotSupported,
                         "store URL '" + store + "' is not supported (use a "
                         "directory path or file:// URL)");
  return store;
}

}  // namespace wavefs
