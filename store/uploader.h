// Uploader: moves queued chunks from the spill to the chunk store as a
// continuous pipeline, completing them in batches ("waves").
//
// Threads: a dispatcher, `concurrency` long-lived workers and a completer.
// - The dispatcher reads the index queue (PeekQueue, a wave's worth of
//   candidates at a time: it gets slower as completed entries leave
//   tombstones) and hands chunks to the workers through a short ready
//   list, so a worker that finishes a put starts the next one at once. A chunk
//   that is handed out, in flight, or put but not yet completed is "claimed"
//   and never handed out twice. Chunks queued meanwhile (Notify) are picked up
//   without waiting for anything else to finish.
// - Each worker reads its chunk from the spill only when it sends it
//   (UploadOne: retries with exponential backoff; one scratch buffer per
//   worker, none when the store streams the file or moves it by rename).
// - The completer batches finished puts. A batch is completed when it holds
//   `wave_size` chunks, or when nothing is in flight or queued besides it
//   (at once only while that is cheap: a Drain waits or the last Sync()
//   took no time, as on S3), or `gather` after its oldest put finished.
//   Completing = one store Sync() (at most one at a time), then one index
//   write batch completing the queue entries, then removing the spill
//   files, then the space-freed callback. Workers keep uploading meanwhile.
// A spill file is removed and its queue entry completed only after the
// store confirmed the put AND a Sync() called after that returned ok. A
// failed Sync (or index write) sends every put that returned so far, and
// those in flight, back to be put again (after a failed syncfs a later one
// may return ok although the bytes never reached the disk).
//
// Failures: a put that still fails after its retries is the sticky error
// (stats) until a later batch completes; the chunk backs off on its own
// (doubling up to max_backoff) and the whole uploader backs off too: no
// new chunk is handed out before the backoff ends, then one chunk at a
// time until a put succeeds again. A failing store is logged once when it
// starts failing (not once per chunk or attempt), again at most once a
// minute while it keeps failing, and once when a batch completes again.
//
// Torn or corrupted puts (a store that acknowledged bytes it does not
// hold): a chunk's spill file is the last copy the daemon has, so what
// keeps it from being lost is checking the store before that copy goes.
// S3Store checks every PUT (the ETag must be the MD5 of what was sent) and
// LocalStore moves the staged file itself in (start-up recovery hashes
// staged files), so by default the uploader trusts an ok put. With
// `verify_puts` it reads each put back and hashes it before the chunk can
// be completed: for stores that check nothing (an S3 clone whose ETag is
// not an MD5, a network mount), at the cost of one read per chunk. Either
// way a read of a damaged chunk is kCorrupt (EIO), never wrong bytes: the
// AEAD tag authenticates every byte.
//
// Stats: `waves` counts completed batches. A batch's time runs from its
// earliest put's start (or from the previous batch's completion, when that
// is later: batches overlap) to the end of its completion; the log line of
// each batch gives its own rate, and `last_rate_mib_s` is a sliding rate:
// the bytes of the batches completed in the 3 s up to the last one (at
// least the last one) over the time they span.
//
// Thread safety: all public methods are thread-safe. Lifecycle: Start once,
// Drain any number of times, Stop once (the destructor stops). Stop lets the
// puts in flight finish (a put cannot be interrupted), completes what they
// finished, and joins every thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "util/status.h"

namespace wavefs {

class Uploader {
 public:
  struct Options {
    size_t wave_size = 64;  // most chunks completed by one Sync()
    int concurrency = 2;    // puts in flight (worker threads)
    // A put of a small chunk (a small file, a file's tail: at most
    // small_max_bytes) costs the store's round trip, not its bandwidth, so
    // up to small_lanes more of them run beside the `concurrency` puts
    // (concurrency + small_lanes workers): no more than `concurrency` puts
    // of bigger chunks run at once, small ones take any free worker.
    // With 0 the uploader is exactly `concurrency` workers for any chunk.
    int small_lanes = 0;
    uint64_t small_max_bytes = 256u << 10;
    int max_attempts = 5;  // per chunk and hand-out, then it backs off
    // The longest a finished put waits for more to join its batch.
    std::chrono::milliseconds gather{200};
    std::chrono::milliseconds initial_backoff{100};
    std::chrono::milliseconds max_backoff{5000};
    // Read every put back and check its hash before completing it; a
    // mismatch removes the bad object and puts the chunk again.
    bool verify_puts = false;
    // The store's chunk format: what an object must hash to (AddressOf).
    ChunkFormat format = kNewestChunkFormat;
  };
  struct Stats {
    uint64_t pending_chunks = 0;
    uint64_t pending_bytes = 0;
    uint64_t uploaded_chunks = 0;
    uint64_t uploaded_bytes = 0;
    uint64_t waves = 0;          // completed batches
    double last_rate_mib_s = 0;  // of the last ~3 s of completed batches
    std::string sticky_error;    // empty when the last attempt succeeded
    // Queued chunks found in neither the spill nor the store (their data
    // is gone): counted and reported until the daemon restarts, never
    // cleared by a later successful wave.
    uint64_t lost_chunks = 0;
    std::string lost_error;
  };

  Uploader(Index* index, Spill* spill, ChunkStore* store, Options options);
  ~Uploader();

  void Start();
  // Wakes the dispatcher (new chunks were queued).
  void Notify();
  // Blocks until the queue is empty (and the spill files of the last batch
  // are removed), calling progress about once a second.
  // Gives up with the sticky error when no chunk could be uploaded for
  // `give_up_after` (the queue stays persisted and resumes next mount).
  Status Drain(std::chrono::seconds give_up_after,
               const std::function<void(const Stats&)>& progress);
  void Stop();
  Stats stats() const;
  // Called whenever chunks leave the spill (writers waiting for space).
  void SetSpaceFreedCallback(std::function<void()> fn);

 private:
  using Clock = std::chrono::steady_clock;
  struct Chunk {
    Address address;
    uint64_t length = 0;
  };
  bool IsSmall(const Chunk& c) const {
    return c.length <= options_.small_max_bytes;
  }
  int BigLanes() const { return std::max(1, options_.concurrency); }
  int Workers() const { return BigLanes() + std::max(0, options_.small_lanes); }
  std::deque<Chunk>::iterator FirstSmall(std::deque<Chunk>& chunks) const {
    return std::find_if(chunks.begin(), chunks.end(),
                        [&](const Chunk& c) { return IsSmall(c); });
  }
  // The first chunk in ready_ a free worker may put now: a small one, or a
  // big one while fewer than `concurrency` big puts run. Needs mu_.
  std::deque<Chunk>::iterator TakeableLocked() {
    return big_in_flight_ < BigLanes() ? ready_.begin() : FirstSmall(ready_);
  }
  struct Finished {  // put, not yet completed
    Chunk chunk;
    Clock::time_point put_start;
    Clock::time_point put_end;
  };
  struct Backoff {  // a chunk whose put kept failing
    Clock::time_point not_before;
    std::chrono::milliseconds delay{0};
  };

  void DispatchLoop();
  // lane: 0..concurrency-1 keep their scratch buffer whatever its size;
  // small lanes keep one only up to small_max_bytes.
  void WorkerLoop(int lane);
  void CompleteLoop();
  // Chunks the dispatcher may hand out now (0: none; *wake: when to look
  // again). Called with mu_ held.
  size_t RoomLocked(Clock::time_point now, Clock::time_point* wake) const;
  // Whether the completer should complete a batch now (else *wake: when).
  // Called with mu_ held.
  bool BatchDueLocked(Clock::time_point now, Clock::time_point* wake) const;
  // Syncs the store, completes the batch in the index and removes its spill
  // files. Called without mu_.
  // *sync_seconds: how long Sync() took.
  Status CompleteBatch(const std::vector<Finished>& batch,
                       double* sync_seconds);
  // After a failed put or completion: stop handing out chunks for a while.
  void TripLocked(Clock::time_point now, const std::string& error);
  // Puts one chunk with retries; ok when the store has it (not yet synced).
  // *dropped: the chunk was lost (in neither the spill nor the store) and
  // its queue entry is gone.
  Status UploadOne(const Address& address, uint64_t length,
                   std::vector<uint8_t>* scratch, bool* dropped);
  // Checks that the store holds intact bytes for address (recovery path).
  bool StoreHoldsIntact(const Address& address, std::vector<uint8_t>* scratch);
  // verify_puts: ok when the store holds intact bytes for a chunk it just
  // acknowledged (format 4: also equal to the staged copy, when there is
  // one). Otherwise removes the bad object while the spill still
  // has the chunk, and returns a (retryable) kCorrupt.
  Status VerifyPut(const Address& address, std::vector<uint8_t>* scratch);

  Index* index_;
  Spill* spill_;
  ChunkStore* store_;
  const Options options_;

  mutable std::mutex mu_;                // guards everything below
  std::condition_variable cv_;           // dispatcher
  std::condition_variable stop_cv_;      // backoff waits inside UploadOne
  std::condition_variable work_cv_;      // workers: ready_ or stop_
  std::condition_variable complete_cv_;  // completer
  std::condition_variable done_cv_;      // Drain
  bool stop_ = false;
  bool workers_joined_ = false;  // Stop: the completer may finish up
  bool notified_ = false;
  int draining_ = 0;  // Drain calls waiting: complete batches at once
  // Pipeline state.
  std::deque<Chunk> candidates_;  // queued, unclaimed: next to hand out
  std::deque<Chunk> ready_;       // handed out, not yet taken by a worker
  int in_flight_ = 0;             // puts running
  // Chunks above small_max_bytes in ready_ and in flight: at most
  // `concurrency` in flight, and (as without small lanes) at most
  // 2 * concurrency of them handed out.
  int big_ready_ = 0;
  int big_in_flight_ = 0;
  std::deque<Finished> done_;  // put ok, waiting for a batch
  size_t completing_ = 0;      // chunks of the batch being completed
  std::set<Address> claimed_;  // in ready_, in flight, in done_ or completing
  // Bumped whenever the uploader removes queue entries (completion, lost
  // chunk): a PeekQueue that overlapped it may list them and is redone.
  uint64_t queue_generation_ = 0;
  std::map<Address, Backoff> backoff_;  // chunks whose last put failed
  // Puts that started before this failed to complete are put again.
  Clock::time_point invalid_before_{};
  // Uploader-wide backoff after a failure (a "tripped" uploader hands out
  // one chunk at a time, after tripped_until_, until a put succeeds).
  bool tripped_ = false;
  Clock::time_point tripped_until_{};
  std::chrono::milliseconds trip_delay_{0};  // reset by a completed batch
  // Logging of failures: once per failing spell, not once per chunk.
  bool failing_ = false;  // a put or completion failed since the last batch
  uint64_t unlogged_failures_ = 0;  // since the last error line
  Clock::time_point last_error_log_{};
  bool cheap_sync_ = true;  // the last Sync() took no time
  // Stats.
  uint64_t uploaded_chunks_ = 0;
  uint64_t uploaded_bytes_ = 0;
  uint64_t waves_ = 0;
  double last_rate_ = 0;
  Clock::time_point last_completed_{};  // when the last batch completed
  struct RecentBatch {
    Clock::time_point since;  // its first put's start or the one before's end
    Clock::time_point end;
    uint64_t bytes = 0;
  };
  std::deque<RecentBatch> recent_;  // for the sliding rate
  std::string sticky_error_;
  uint64_t lost_chunks_ = 0;
  std::string lost_error_;
  Clock::time_point last_progress_;
  std::mutex callback_mu_;  // guards space_freed_ and serialises its calls
  std::function<void()> space_freed_;
  std::thread dispatcher_;
  std::thread completer_;
  std::vector<std::thread> workers_;
};

}  // namespace wavefs
