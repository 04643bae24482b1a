#include "fs/options.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <thread>

namespace wavefs {

Result<uint64_t> ParseSize(const std::string& text) {
  // digits, then an optional K/M/G/T, then an optional "B" or "iB".
  auto bad = [&] {
    return Status::Error(Code::kInvalid,
                         "bad size '" + text + "' (use e.g. 64M or 1G)");
  };
  size_t digits = 0;
  while (digits < text.size() &&
         std::isdigit(static_cast<unsigned char>(text[digits])))
    ++digits;
  if (digits == 0 || digits > 19) return bad();
  std::string unit = text.substr(digits);
  for (const char* suffix : {"iB", "ib", "B", "b"}) {
    const std::string sfx(suffix);
    if (unit.size() > sfx.size() && unit.ends_with(sfx)) {
      unit.resize(unit.size() - sfx.size());
      break;
    }
  }
  int shift = 0;
  if (!unit.empty()) {
    const size_t pos = std::string("KMGT").find(
        static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0]))));
    if (unit.size() != 1 || pos == std::string::npos) return bad();
    shift = 10 * (static_cast<int>(pos) + 1);
  }
  const uint64_t v = std::stoull(text.substr(0, digits));
  if (shift && v > (~0ull >> shift)) return bad();
  return v << shift;
}

Result<MemoryBudget> DivideMemory(const MountOptions& o) {
  constexpr uint64_t kMiB = 1ull << 20;
  if (o.memory_limit < 24 * kMiB)
    return Status::Error(Code::kInvalid,
                         "--memory-limit must be at least 24M (two write "
                         "buffers, two cached chunks and the index)");
  MemoryBudget b;
  // Fixed part: code and libraries, heap, thread stacks and the tail cache
  // (measured at the end of a 4 GiB copy: 13.7 MiB of mapped files, with
  // RocksDB linked statically, 1.4 MiB of heap, the 1 MiB tail cache: 16 MiB),
  // FUSE request buffers (about 1 MiB per FUSE thread when writes do not
  // come spliced) and RocksDB. With the default 64M that leaves 7 write
  // buffers: eight writers at once peak at 46-47 MiB without splice, and
  // copy as fast as with 8 buffers (51 MiB) or 9 (within this machine's
  // noise; README, Memory).
  const uint64_t fixed =
      16 * kMiB + static_cast<uint64_t>(o.fuse_threads) * kMiB;
  b.index.write_buffer_bytes = 2 * kMiB;
  b.index.block_cache_bytes = 2 * kMiB;
  const uint64_t rocks =
      2 * b.index.write_buffer_bytes + b.index.block_cache_bytes;
  const uint64_t rest =
      o.memory_limit > fixed + rocks ? o.memory_limit - fixed - rocks : 0;
  // What is left is chunk buffers: a quarter (at least two: the chunk being
  // read and the one prefetched) for the decrypted-chunk cache, the rest for
  // writes. One file holds at most seal_threads write buffers (at least
  // two: the one being filled and one being sealed), so a single writer
  // stays small and several writers share the pool. With the default
  // cores + 1 seal threads, one writer fills one buffer while up to one
  // per core is sealed.
  const uint64_t chunks = std::max<uint64_t>(4, rest / kMaxCiphertextSize);
  b.fs.cache_chunks = std::max<uint64_t>(2, chunks / 4);
  b.fs.dirty_buffers = std::max<uint64_t>(2, chunks - b.fs.cache_chunks);
  b.fs.max_buffers_per_file = static_cast<size_t>(std::max(2, o.seal_threads));
  b.fs.seal_threads = o.seal_threads;
  b.fs.chunk_format = o.chunk_format;
  b.fs.space_wait = std::chrono::seconds(o.space_wait_s);
  b.fs.hot_tail_hold = std::chrono::seconds(o.tail_hold_s);
  b.fs.idle_release = std::chrono::seconds(o.idle_release_s);
  b.fs.tail_journal = !o.no_tail_journal;
  b.fs.spill_reserve_bytes = o.spill_reserve;
  b.fs.page_out_slots = static_cast<size_t>(o.page_out / kChunkSize);
  b.fs.prefetch_files = static_cast<size_t>(std::max(0, o.prefetch_files));
  if (o.location.kind == StoreLocation::Kind::kS3) {
    // A GET costs milliseconds before its first byte: keep two in flight
    // for a sequential reader, and, where the kernel readahead cannot be
    // raised (not root; fs/kernel_readahead.h), make a random read one
    // request per 1 MiB instead of one per 128 KiB piece the kernel sends.
    b.fs.prefetch_depth = 2;
    b.fs.read_window = 1 << 20;
    // The deeper prefetch needs one more cached chunk; one reused fetch
    // buffer instead of two keeps the total within the local store's.
    b.fs.recycled_chunks = 1;
  }
  return b;
}

int DefaultSealThreads() {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::min(8u, cores + 1));
}

std::string WavefsHome() {
  if (const char* h = std::getenv("WAVEFS_HOME"); h && *h) return h;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.local/share/wavefs";
}

Result<StoreLocation> ResolveStore(const std::string& store,
                                   const std::string& endpoint,
                                   const std::string& region,
                                   const std::string& path_style) {
  // The flags are the URL's parameters, given last so that they win, and
  // parsed with it once: what depends on the endpoint (TLS, whether
  // $AWS_CA_BUNDLE is read, path style by default) follows the endpoint
  // the store is reached at, not the one the URL named.
  std::string url = store;
  auto add = [&url](const std::string& key, const std::string& value) {
    if (value.empty()) return;
    url += (url.find('?') == std::string::npos ? "?" : "&") + key + "=" + value;
  };
  add("endpoint", endpoint);
  if (!endpoint.empty() && path_style.empty()) add("path_style", "1");
  add("region", region);
  add("path_style", path_style);
  if (url != store && store.rfind("s3://", 0) != 0)
    return Status::Error(Code::kInvalid,
                         "--s3-endpoint, --s3-region and --s3-path-style "
                         "need an s3:// store");
  auto loc = ParseStoreLocation(url);
  if (!loc.ok()) return loc.status();
  if (loc->kind == StoreLocation::Kind::kS3)
    WAVEFS_RETURN_IF_ERROR(LoadS3Credentials(&loc->s3));
  return loc;
}

}  // namespace wavefs
