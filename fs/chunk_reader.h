// ChunkReader: the read path. Maps a byte range of an open file onto its
// chunks and copies plaintext out of the dirty buffer, the decrypted-chunk
// cache, the spill (staged, not uploaded yet) or the store.
//
// Random reads of a format-2 chunk fetch and open only the 64 KiB segments
// they touch and keep nothing; sequential readers (a run of 2 MiB or more)
// take whole chunks through the cache and get the next chunk prefetched by
// a background thread. A chunk that is named but exists nowhere, or fails
// authentication, is kCorrupt (EIO), never zeros or wrong bytes.
//
// Memory: the cache's capacity in chunks (at least prefetch_depth + 1), the
// chunks being fetched, recycled_chunks reusable fetch buffers, and
// window_entries windows of read_window bytes. Thread safety: all methods are
// thread-safe; ReadFile needs f->mu held through `lock` and releases it around
// fetches.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "fs/open_file.h"
#include "store/chunk_cache.h"
#include "store/chunk_slots.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"

namespace wavefs {

// Where ReadFile puts the bytes of a read, piece by piece in file order.
// Copy: bytes that may change once the file's lock is released (dirty
// buffers): take them now. Share: immutable bytes (a decrypted chunk,
// window or segment range) that stay valid while `keep` lives: a FUSE reply
// can point at them instead of copying. Zeros: holes and bytes past a
// chunk's end.
class ReadSink {
 public:
  virtual ~ReadSink() = default;
  virtual void Copy(const char* data, size_t n) = 0;
  virtual void Share(std::shared_ptr<const void> keep, const char* data,
                     size_t n) = 0;
  virtual void Zeros(size_t n) = 0;
};

// A ReadSink that copies everything into one buffer.
class CopyingSink : public ReadSink {
 public:
  explicit CopyingSink(char* out) : out_(out) {}
  void Copy(const char* data, size_t n) override;
  void Share(std::shared_ptr<const void>, const char* data, size_t n) override {
    Copy(data, n);
  }
  void Zeros(size_t n) override;

 private:
  char* out_;
};

class ChunkReader {
 public:
  struct Options {
    size_t cache_chunks = 2;  // decrypted whole chunks kept
    // Entries the cache keeps besides, within the same bytes (chunks of
    // small files fetched ahead of their reader, fs/sibling_prefetch.h).
    size_t cache_small_entries = 0;
    int prefetch_depth = 1;     // chunks fetched ahead (0: no prefetch)
    uint64_t read_window = 0;   // see FsOptions::read_window
    size_t window_entries = 3;  // windows kept (read_window > 0)
    // Fetched-chunk vectors kept for reuse (saves mapping 4 MiB per fetch).
    size_t recycled_chunks = 2;
    // The budget fetch buffers share with the write buffers
    // (store/chunk_slots.h); none: unshared.
    ChunkSlots* slots = nullptr;
    // Tests: ReadFile, after releasing f->mu and before fetching chunk
    // index of ino (FsHooks::read_unlocked).
    std::function<void(uint64_t ino, uint64_t index)> fetch_unlocked;
  };
  ChunkReader(Index* index, Spill* spill, ChunkStore* store, ChunkFormat format,
              Options options);
  ~ChunkReader();

  // Copies up to size bytes of f at offset to out; returns the bytes read
  // (short at the end of the file).
  Result<size_t> ReadFile(OpenFile* f, std::unique_lock<std::mutex>& lock,
                          uint64_t offset, size_t size, char* out);
  // The same into a sink (no copy of cached or fetched plaintext).
  Result<size_t> ReadFile(OpenFile* f, std::unique_lock<std::mutex>& lock,
                          uint64_t offset, size_t size, ReadSink* sink);
  // The whole decrypted chunk (through the cache).
  Result<ChunkData> FetchChunk(const ChunkRef& ref);
  // Fetches a small file's chunk into the cache ahead of its reader
  // (fs/sibling_prefetch.h); nothing when it is cached or being fetched.
  Status PrefetchSmall(const ChunkRef& ref);
  uint64_t segment_reads() const { return segment_reads_.load(); }
  // Fetch buffers on the reuse list now (stats).
  size_t reuse_buffers();
  // Turns the read windows off (0) once the kernel sends whole reads in one
  // request (fs/kernel_readahead.h): a random read then fetches exactly the
  // segments it covers, one request, however it sits against the windows.
  void DisableReadWindows() { read_window_.store(0); }
  uint64_t read_window() const { return read_window_.load(); }
  // How a read brings the segments it needs of a paged-out dirty buffer
  // back (store/page_out.h): WritePipeline::AcquireDirty, set once before
  // any read.
  using PageInFn =
      std::function<Status(OpenFile*, uint64_t index, uint64_t segments,
                           std::unique_lock<std::mutex>& lock)>;
  void SetPageIn(PageInFn page_in) { page_in_ = std::move(page_in); }

 private:
  // The ciphertext object (range: {offset, length} of it; none: all), from
  // the spill while staged, else from the store.
  Status ReadObject(const Address& address,
                    std::optional<std::pair<uint64_t, uint64_t>> range,
                    std::vector<uint8_t>* out);
  // Format 2 only: plaintext [offset, offset + len) of a chunk to dst.
  Status ReadSegments(const ChunkRef& ref, uint64_t offset, uint64_t len,
                      ReadSink* sink);
  // The same through aligned windows of `window` bytes, each fetched once
  // (single-flight) and kept in windows_.
  Status ReadWindows(const ChunkRef& ref, uint64_t window, uint64_t offset,
                     uint64_t len, ReadSink* sink);
  std::shared_ptr<std::vector<uint8_t>> ChunkBuffer();
  // Unmaps the fetch buffers kept idle since before the cutoffs: cached
  // chunks no reader holds and the reuse list (the slots' shed).
  void ShedIdle(const ChunkSlots::Cutoffs& cutoffs);
  void PrefetchLoop();

  Index* index_;
  Spill* spill_;
  ChunkStore* store_;
  const ChunkFormat format_;
  const Options options_;
  // Fetched-chunk vectors kept for reuse (options_.recycled_chunks);
  // declared before cache_ so they outlive the entries that return to them.
  std::mutex recycle_mu_;
  // Each with the time it came back; the most recent last.
  std::vector<std::pair<std::unique_ptr<std::vector<uint8_t>>,
                        ChunkSlots::Clock::time_point>>
      recycled_;
  int slot_id_ = -1;
  // While ShedIdle drops cached chunks: their buffers are unmapped, not
  // put on the reuse list.
  std::atomic<bool> shedding_{false};
  ChunkCache cache_;
  ChunkCache windows_;  // decrypted windows, keyed by WindowKey

  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<ChunkRef> prefetch_queue_;
  bool stopping_ = false;  // under prefetch_mu_
  std::vector<std::thread> prefetchers_;
  std::atomic<uint64_t> segment_reads_{0};
  std::atomic<uint64_t> read_window_;  // options_.read_window until disabled
  PageInFn page_in_;
};

}  // namespace wavefs
