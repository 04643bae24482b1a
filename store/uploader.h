// Uploader: moves queued chunks from the spill to the chunk store in waves.
//
// A background thread takes up to `wave_size` queue entries from the index
// (a wave; it waits up to `gather` for a wave to fill while chunks keep
// coming) and puts them with `concurrency` worker threads. Each chunk is
// read from the spill only when its worker sends it. After the wave's puts,
// one store Sync() makes them durable; only then are the queue entries
// completed (one batch) and the spill files removed (a spill file never
// goes before the store has the chunk durably). Failed puts are
// retried with exponential backoff; a failure that persists becomes the
// sticky error shown by stats() until a later put succeeds. One log line per
// wave: chunks, bytes, rate.
//
// Memory: at most `concurrency` scratch buffers of one chunk each, and none
// when the store moves spill files in by rename.
// Thread safety: all public methods are thread-safe. Lifecycle: Start once,
// Drain any number of times, Stop once (the destructor stops).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "util/status.h"

namespace wavefs {

class Uploader {
 public:
  struct Options {
    size_t wave_size = 64;
    int concurrency = 2;
    int max_attempts = 5;  // per chunk inside one wave, then the wave ends
    std::chrono::milliseconds gather{200};
    std::chrono::milliseconds initial_backoff{100};
    std::chrono::milliseconds max_backoff{5000};
  };
  struct Stats {
    uint64_t pending_chunks = 0;
    uint64_t pending_bytes = 0;
    uint64_t uploaded_chunks = 0;
    uint64_t uploaded_bytes = 0;
    uint64_t waves = 0;
    double last_rate_mib_s = 0;  // of the last completed wave
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
  // Wakes the background thread (new chunks were queued).
  void Notify();
  // Blocks until the queue is empty, calling progress about once a second.
  // Gives up with the sticky error when no chunk could be uploaded for
  // `give_up_after` (the queue stays persisted and resumes next mount).
  Status Drain(std::chrono::seconds give_up_after,
               const std::function<void(const Stats&)>& progress);
  void Stop();
  Stats stats() const;
  // Called whenever chunks leave the spill (writers waiting for space).
  void SetSpaceFreedCallback(std::function<void()> fn);

 private:
  void Run();
  // Puts one chunk with retries; ok when the store has it (not yet synced).
  Status UploadOne(const Address& address, uint64_t length,
                   std::vector<uint8_t>* scratch);
  // Checks that the store holds intact bytes for address (recovery path).
  bool StoreHoldsIntact(const Address& address, std::vector<uint8_t>* scratch);
  // Syncs the store and completes the given uploads.
  Status Complete(const std::vector<std::pair<Address, uint64_t>>& done);

  Index* index_;
  Spill* spill_;
  ChunkStore* store_;
  const Options options_;

  mutable std::mutex mu_;            // guards everything below
  std::condition_variable cv_;       // wakes Run
  std::condition_variable done_cv_;  // wakes Drain
  bool stop_ = false;
  bool notified_ = false;
  int draining_ = 0;  // Drain calls waiting: no gathering delay
  uint64_t uploaded_chunks_ = 0;
  uint64_t uploaded_bytes_ = 0;
  uint64_t waves_ = 0;
  double last_rate_ = 0;
  std::string sticky_error_;
  uint64_t lost_chunks_ = 0;
  std::string lost_error_;
  std::chrono::steady_clock::time_point last_progress_;
  std::mutex callback_mu_;  // guards space_freed_ and serialises its calls
  std::function<void()> space_freed_;
  std::thread thread_;
};

}  // namespace wavefs
