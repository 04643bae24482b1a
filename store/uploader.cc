#include "store/uploader.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "chunker/crypto.h"
#include "store/thread_name.h"
#include "util/background_work.h"

namespace wavefs {

namespace {

// A Sync() faster than this counts as free (S3, memory): then a batch is
// completed as soon as nothing else is in flight or queued.
constexpr double kCheapSyncSeconds = 0.002;

// stats().last_rate_mib_s covers the batches completed this long before the
// last one (and at least the last one).
constexpr std::chrono::seconds kRateWindow{3};

// While uploads keep failing, the error is logged again this often.
constexpr std::chrono::seconds kErrorLogInterval{60};

}  // namespace

Uploader::Uploader(Index* index, Spill* spill, ChunkStore* store,
                   Options options)
    : index_(index), spill_(spill), store_(store), options_(options) {
  last_progress_ = Clock::now();
}

Uploader::~Uploader() { Stop(); }

void Uploader::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_ || dispatcher_.joinable()) return;
  for (int i = 0; i < Workers(); ++i)
    workers_.emplace_back([this, i] {
      NameThisThread("wfs-upload");
      WorkerLoop(i);
    });
  completer_ = std::thread([this] {
    NameThisThread("wfs-complete");
    CompleteLoop();
  });
  dispatcher_ = std::thread([this] {
    NameThisThread("wfs-dispatch");
    DispatchLoop();
  });
}

void Uploader::Notify() {
  std::lock_guard<std::mutex> lock(mu_);
  notified_ = true;
  cv_.notify_all();
}

void Uploader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
    stop_cv_.notify_all();
    work_cv_.notify_all();
    complete_cv_.notify_all();
    done_cv_.notify_all();
  }
  // Workers finish the put they are in (no new one starts); the completer
  // then completes what they finished and exits.
  if (dispatcher_.joinable()) dispatcher_.join();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers_joined_ = true;
    complete_cv_.notify_all();
  }
  if (completer_.joinable()) completer_.join();
}

void Uploader::SetSpaceFreedCallback(std::function<void()> fn) {
  // Taking callback_mu_ waits for a running call to end, so once this
  // returns the old callback's owner may go away.
  std::lock_guard<std::mutex> lock(callback_mu_);
  space_freed_ = std::move(fn);
}

Uploader::Stats Uploader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s;
  s.pending_chunks = index_->pending_chunks();
  s.pending_bytes = index_->pending_bytes();
  s.uploaded_chunks = uploaded_chunks_;
  s.uploaded_bytes = uploaded_bytes_;
  s.waves = waves_;
  s.last_rate_mib_s = last_rate_;
  s.sticky_error = sticky_error_.empty() ? lost_error_ : sticky_error_;
  s.lost_chunks = lost_chunks_;
  s.lost_error = lost_error_;
  return s;
}

Status Uploader::Drain(std::chrono::seconds give_up_after,
                       const std::function<void(const Stats&)>& progress) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ += 1;
  notified_ = true;
  cv_.notify_all();
  complete_cv_.notify_all();  // a waiting batch may complete at once now
  last_progress_ = Clock::now();
  Status result;
  Clock::time_point next_report = Clock::now() + std::chrono::seconds(1);
  // Also waits for the bookkeeping of the last batch (spill files removed,
  // stats) and of a chunk just dropped as lost.
  while (index_->pending_chunks() > 0 || completing_ > 0 || in_flight_ > 0) {
    done_cv_.wait_until(lock, next_report);
    if (progress && Clock::now() >= next_report) {
      next_report = Clock::now() + std::chrono::seconds(1);
      lock.unlock();
      progress(stats());
      lock.lock();
    }
    if (stop_) {
      if (index_->pending_chunks() == 0) break;
      result = Status::Error(Code::kUnavailable,
                             std::to_string(index_->pending_chunks()) +
                                 " chunks still pending: the uploader stopped",
                             0, true);
      break;
    }
    if (!sticky_error_.empty() &&
        Clock::now() - last_progress_ > give_up_after) {
      result = Status::Error(
          Code::kUnavailable,
          std::to_string(index_->pending_chunks()) +
              " chunks still pending after uploads kept failing: " +
              sticky_error_,
          0, true);
      break;
    }
  }
  draining_ -= 1;
  return result;
}

Status Uploader::VerifyPut(const Address& address,
                           std::vector<uint8_t>* scratch) {
  Status got = store_->Get(address, scratch);
  std::string differs;
  if (got.ok() && AddressOf(options_.format, *scratch) == address) {
    // Format 4's address covers the size, tags and trailer only
    // (docs/format.md, 2d): a byte changed inside a segment is found by
    // comparing with the staged copy, where it is still there (a store
    // that moved the staged file in holds those very bytes).
    if (options_.format != ChunkFormat::kTagAddressed) return Status::Ok();
    Result<bool> same = false;
    std::vector<uint8_t> body;
    if (index_->ReadStagedBody(address, &body).ok())
      same = body == *scratch;
    else
      same = spill_->Holds(address, *scratch);
    if (!same.ok() && same.status().code() == Code::kNotFound)
      return Status::Ok();
    if (!same.ok())
      return same.status().Annotate("compare chunk " + ToHex(address));
    if (*same) return Status::Ok();
    differs = std::to_string(scratch->size()) +
              " bytes that differ from the staged copy";
  }
  if (!got.ok() && got.code() != Code::kNotFound &&
      got.code() != Code::kCorrupt) {
    // Cannot tell (the store did not answer): the put is tried again.
    return got.Annotate("read back chunk " + ToHex(address));
  }
  const std::string what = !differs.empty() ? differs
                           : got.ok()       ? std::to_string(scratch->size()) +
                                            " bytes that do not hash "
                                            "to its address"
                                      : got.ToString();
  auto in_index = index_->HasStagedBody(address);
  if (!in_index.ok()) return in_index.status();
  if (!spill_->Contains(address) && !*in_index) {
    // The store moved the staged file in: that was the only copy. The next
    // attempt finds it in neither place and reports the chunk lost.
    return Status::Error(
        Code::kCorrupt,
        "store acknowledged chunk " + ToHex(address) + " but holds " + what,
        EIO);
  }
  // The bad object goes first: a put that skips addresses already present
  // (S3's If-None-Match) would otherwise keep it.
  WAVEFS_RETURN_IF_ERROR(store_->Remove(address).Annotate(
      "remove damaged chunk " + ToHex(address)));
  return Status::Error(Code::kCorrupt,
                       "store acknowledged chunk " + ToHex(address) +
                           " but holds " + what + "; putting it again",
                       EIO, /*retryable=*/true);
}

bool Uploader::StoreHoldsIntact(const Address& address,
                                std::vector<uint8_t>* scratch) {
  // After a power loss a renamed-in object may exist without its bytes;
  // only a hash check tells an intact chunk from a damaged one.
  return store_->Get(address, scratch).ok() &&
         AddressOf(options_.format, *scratch) == address;
}

Status Uploader::UploadOne(const Address& address, uint64_t length,
                           std::vector<uint8_t>* scratch, bool* dropped) {
  *dropped = false;
  const std::string path = spill_->PathOf(address);
  auto backoff = options_.initial_backoff;
  Status st;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    // A small chunk may be staged in the index instead of the spill (its
    // body goes only with its queue entry, after the upload).
    Status body = index_->ReadStagedBody(address, scratch);
    const bool in_index = body.ok();
    if (in_index) {
      st = store_->Put(address, *scratch);
    } else if (body.code() == Code::kNotFound) {
      st = store_->PutFile(address, path, scratch);
    } else {
      st = body;
    }
    if (st.ok() && options_.verify_puts) st = VerifyPut(address, scratch);
    if (st.ok()) return st;
    if (st.code() == Code::kNotFound && !in_index &&
        !spill_->Contains(address)) {
      // The staged file is gone: fine when the store already has the chunk
      // (an earlier run moved it in and stopped before completing, or a
      // batch whose completion failed is being put again).
      if (StoreHoldsIntact(address, scratch)) return Status::Ok();
      spdlog::error(
          "chunk {} is queued but missing from the spill and the "
          "store; dropping its queue entry",
          ToHex(address));
      Status drop = index_->DropQueued(address, length);
      if (!drop.ok()) return drop;  // still queued: tried again later
      *dropped = true;
      return Status::Error(Code::kCorrupt,
                           "staged chunk " + ToHex(address) +
                               " was lost (in neither the spill nor "
                               "the store); files naming it read EIO "
                               "there");
    }
    // Per attempt only at debug level: a failing store fails every chunk,
    // and TripLocked logs the spell once.
    spdlog::debug("upload of chunk {} failed (attempt {}/{}): {}",
                  ToHex(address), attempt, options_.max_attempts,
                  st.ToString());
    if (!st.retryable() && attempt >= 2) break;
    if (attempt == options_.max_attempts) break;
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_cv_.wait_for(lock, backoff, [&] { return stop_; })) return st;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  return st;
}

void Uploader::TripLocked(Clock::time_point now, const std::string& error) {
  sticky_error_ = error;
  trip_delay_ = trip_delay_.count() == 0
                    ? options_.initial_backoff
                    : std::min(trip_delay_ * 2, options_.max_backoff);
  tripped_ = true;
  tripped_until_ = now + trip_delay_;
  // Chunks handed out but not started go back: the store is failing, so
  // every worker should not try its own chunk now.
  for (auto it = ready_.rbegin(); it != ready_.rend(); ++it) {
    claimed_.erase(it->address);
    candidates_.push_front(*it);
  }
  ready_.clear();
  big_ready_ = 0;
  notified_ = true;  // look at the queue again once the pause is over
  cv_.notify_all();
  // One line when uploads start failing (and a reminder a minute), not one
  // per chunk: a store that refuses everything would flood the log.
  if (!failing_ || now - last_error_log_ >= kErrorLogInterval) {
    if (unlogged_failures_ > 0) {
      spdlog::error(
          "upload failed ({} more failures since the last report); pausing "
          "uploads for {} ms: {}",
          unlogged_failures_, trip_delay_.count(), error);
    } else {
      spdlog::error("upload failed; pausing uploads for {} ms: {}",
                    trip_delay_.count(), error);
    }
    last_error_log_ = now;
    unlogged_failures_ = 0;
  } else {
    unlogged_failures_ += 1;
    spdlog::debug("upload failed; pausing uploads for {} ms: {}",
                  trip_delay_.count(), error);
  }
  failing_ = true;
}

size_t Uploader::RoomLocked(Clock::time_point now,
                            Clock::time_point* wake) const {
  if (stop_) return 0;
  // Finished puts waiting for completion are bounded (one batch being
  // completed, one filling); the completer wakes the dispatcher.
  if (done_.size() + completing_ >= 2 * options_.wave_size) return 0;
  if (tripped_) {
    if (now < tripped_until_) {
      *wake = std::min(*wake, tripped_until_);
      return 0;
    }
    // One chunk at a time until a put succeeds again.
    return ready_.empty() && in_flight_ == 0 ? 1 : 0;
  }
  // One chunk waiting per worker, so a worker never waits for the
  // dispatcher.
  const size_t target = static_cast<size_t>(Workers());
  return ready_.size() >= target ? 0 : target - ready_.size();
}

void Uploader::DispatchLoop() {
  std::vector<std::pair<Address, uint64_t>> peek;
  std::unique_lock<std::mutex> lock(mu_);
  bool exhausted = false;  // the last look found nothing to hand out
  Clock::time_point poll_at = Clock::now();
  Clock::time_point next_peek = Clock::now();
  while (!stop_) {
    const auto now = Clock::now();
    Clock::time_point wake = now + std::chrono::seconds(1);
    const size_t room = RoomLocked(now, &wake);
    if (room > 0 && !candidates_.empty()) {
      size_t handed = 0;
      bool lanes_full = false;  // only big candidates, their lanes taken
      while (handed < room && !candidates_.empty()) {
        BackgroundWork::Scope background;
        // In queue order, except that once 2 * concurrency big chunks are
        // handed out (never the case without small lanes: the ready list
        // then holds at most `concurrency`) the first small candidate
        // goes ahead.
        auto next = candidates_.begin();
        if (big_ready_ + big_in_flight_ >= 2 * BigLanes()) {
          next = FirstSmall(candidates_);
          if (next == candidates_.end()) {
            lanes_full = true;
            break;
          }
        }
        const Chunk c = *next;
        candidates_.erase(next);
        if (!claimed_.insert(c.address).second) continue;
        // Ends its hold; a held chunk dropped since it was listed (its
        // file's next commit superseded it) is not put.
        auto queued = index_->ClaimForUpload(c.address);
        if (queued.ok() && !*queued) {
          claimed_.erase(c.address);
          continue;
        }
        if (!IsSmall(c)) big_ready_ += 1;
        ready_.push_back(c);
        ++handed;
      }
      if (handed > 0) work_cv_.notify_all();
      // A worker that finishes a big put wakes the dispatcher.
      if (handed == 0 && lanes_full) cv_.wait_until(lock, wake);
      continue;
    }
    // Look at the queue when there is room and it may hold something new:
    // chunks were queued or came back, a backoff ended, the last look
    // found some, or once a second anyway.
    const bool look = room > 0 && (notified_ || !exhausted || now >= poll_at);
    if (!look || now < next_peek) {
      if (room > 0) wake = std::min(wake, look ? next_peek : poll_at);
      cv_.wait_until(lock, wake);
      continue;
    }
    notified_ = false;
    // Claimed entries and those backing off may come first in the queue's
    // order: look past them. Take a wave's worth at once (PeekQueue gets
    // slower as completed entries leave tombstones behind).
    const size_t want = std::max(room, options_.wave_size);
    size_t skip = claimed_.size();
    for (const auto& [address, b] : backoff_) {
      if (b.not_before > now) ++skip;
    }
    const uint64_t generation = queue_generation_;
    // Held chunks (store/index.h) wait for their hold to end, except for
    // a Drain (unmount) or Stop.
    const bool include_held = draining_ > 0 || stop_;
    Clock::time_point next_release = now + std::chrono::seconds(1);
    lock.unlock();
    const auto peek_start = Clock::now();
    Status st;
    {
      BackgroundWork::Scope background;
      st = index_->PeekQueue(skip + want, &peek, include_held, &next_release);
    }
    const auto peek_end = Clock::now();
    lock.lock();
    // Spend at most ~5% of the time looking at the queue.
    next_peek = peek_end + std::min<Clock::duration>(
                               (peek_end - peek_start) * 20, options_.gather);
    if (stop_) break;
    if (!st.ok()) {
      TripLocked(peek_end, "cannot read the upload queue: " + st.ToString());
      continue;
    }
    // Entries that left the queue meanwhile may be listed and no longer
    // claimed: look again. (The uploader removes only claimed entries; the
    // one other removal, of a held chunk its file superseded, is caught by
    // ClaimForUpload at hand-out.)
    if (generation != queue_generation_) continue;
    Clock::time_point next_backoff = peek_end + std::chrono::seconds(1);
    for (const auto& [address, length] : peek) {
      if (candidates_.size() >= want) break;
      if (claimed_.count(address) > 0) continue;
      auto b = backoff_.find(address);
      if (b != backoff_.end() && b->second.not_before > peek_end) {
        next_backoff = std::min(next_backoff, b->second.not_before);
        continue;
      }
      candidates_.push_back(Chunk{address, length});
    }
    exhausted = candidates_.empty();
    poll_at = std::min(next_backoff, next_release);
  }
}

void Uploader::WorkerLoop(int lane) {
  std::vector<uint8_t> scratch;  // this worker's one buffer
  const bool small_lane = lane >= BigLanes();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock,
                  [&] { return stop_ || TakeableLocked() != ready_.end(); });
    if (stop_) return;
    const auto take = TakeableLocked();
    const Chunk chunk = *take;
    ready_.erase(take);
    in_flight_ += 1;
    if (!IsSmall(chunk)) {
      big_ready_ -= 1;
      big_in_flight_ += 1;
    }
    cv_.notify_all();  // room for the dispatcher
    lock.unlock();

    const auto start = Clock::now();
    bool dropped = false;
    Status st;
    {
      BackgroundWork::Scope background;
      st = UploadOne(chunk.address, chunk.length, &scratch, &dropped);
    }
    const auto end = Clock::now();

    // A small lane that read a big chunk (verify_puts, a store that does
    // not stream files) gives the buffer back: memory stays what the
    // `concurrency` lanes take.
    if (small_lane && scratch.capacity() > options_.small_max_bytes)
      std::vector<uint8_t>().swap(scratch);

    lock.lock();
    in_flight_ -= 1;
    if (!IsSmall(chunk)) {
      big_in_flight_ -= 1;
      // A worker may be waiting for a big put's lane.
      if (options_.small_lanes > 0) work_cv_.notify_all();
    }
    if (st.ok()) {
      backoff_.erase(chunk.address);
      tripped_ = false;  // the store answers again
      if (start < invalid_before_) {
        // A completion failed after this put began: its bytes may not
        // have reached the disk. Put it again.
        claimed_.erase(chunk.address);
        notified_ = true;
      } else {
        done_.push_back(Finished{chunk, start, end});
      }
    } else if (dropped) {
      // Its queue entry is gone: a PeekQueue that overlapped the drop must
      // not hand it out again.
      queue_generation_ += 1;
      claimed_.erase(chunk.address);
      backoff_.erase(chunk.address);
      lost_chunks_ += 1;
      lost_error_ = st.message();
      sticky_error_ = st.ToString();
      done_cv_.notify_all();
    } else {
      claimed_.erase(chunk.address);
      if (!stop_) {
        Backoff& b = backoff_[chunk.address];
        b.delay = b.delay.count() == 0
                      ? options_.initial_backoff
                      : std::min(b.delay * 2, options_.max_backoff);
        b.not_before = end + b.delay;
        TripLocked(end, st.ToString());
      }
    }
    complete_cv_.notify_all();
    cv_.notify_all();
  }
}

bool Uploader::BatchDueLocked(Clock::time_point now,
                              Clock::time_point* wake) const {
  if (done_.empty()) return false;
  if (done_.size() >= options_.wave_size || stop_) return true;
  // Nothing in flight and nothing else queued: waiting cannot fill the
  // batch. Complete at once when someone waits for it or it is cheap;
  // otherwise (syncfs) let the batch gather while a writer keeps staging.
  const bool idle = in_flight_ == 0 && ready_.empty() &&
                    index_->pending_chunks() <= done_.size();
  if (idle && (draining_ > 0 || cheap_sync_)) return true;
  const auto due = done_.front().put_end + options_.gather;
  if (now >= due) return true;
  *wake = std::min(*wake, due);
  return false;
}

Status Uploader::CompleteBatch(const std::vector<Finished>& batch,
                               double* sync_seconds) {
  const auto t0 = Clock::now();
  Status synced = store_->Sync();
  *sync_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  WAVEFS_RETURN_IF_ERROR(synced);
  std::vector<std::pair<Address, uint64_t>> entries;
  entries.reserve(batch.size());
  for (const Finished& f : batch) {
    entries.emplace_back(f.chunk.address, f.chunk.length);
  }
  WAVEFS_RETURN_IF_ERROR(index_->CompleteUploads(entries));
  // Only now may the staged copies go (a rename into the store already
  // moved them; then this is a no-op).
  for (const Finished& f : batch) {
    Status rm = spill_->Remove(f.chunk.address);
    if (!rm.ok()) spdlog::warn("cannot remove staged chunk: {}", rm.ToString());
  }
  return Status::Ok();
}

void Uploader::CompleteLoop() {
  std::vector<Finished> batch;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const auto now = Clock::now();
    const bool final = stop_ && workers_joined_;
    if (final && done_.empty()) return;
    Clock::time_point wake = now + std::chrono::seconds(1);
    if (!final && !BatchDueLocked(now, &wake)) {
      complete_cv_.wait_until(lock, wake);
      continue;
    }
    const size_t n = std::min(done_.size(), options_.wave_size);
    batch.assign(done_.begin(), done_.begin() + static_cast<ptrdiff_t>(n));
    done_.erase(done_.begin(), done_.begin() + static_cast<ptrdiff_t>(n));
    completing_ = n;
    lock.unlock();

    double sync_seconds = 0;
    Status st;
    {
      BackgroundWork::Scope background;
      st = CompleteBatch(batch, &sync_seconds);
    }
    const auto end = Clock::now();

    lock.lock();
    completing_ = 0;
    cheap_sync_ = sync_seconds < kCheapSyncSeconds;
    if (!st.ok()) {
      // Not durable, or not recorded: every put that returned so far is put
      // again (after a failed syncfs a later one may return ok although the
      // bytes never reached the disk), and so is every put in flight.
      for (const Finished& f : batch) claimed_.erase(f.chunk.address);
      for (const Finished& f : done_) claimed_.erase(f.chunk.address);
      done_.clear();
      invalid_before_ = end;
      if (final) {
        spdlog::error("cannot complete {} uploaded chunks at stop: {}",
                      batch.size(), st.ToString());
        sticky_error_ = st.ToString();
        return;
      }
      TripLocked(end, "completing uploads failed: " + st.ToString());
      done_cv_.notify_all();
      continue;
    }
    // Their queue entries are gone: a PeekQueue that overlapped may still
    // list them.
    queue_generation_ += 1;
    uint64_t bytes = 0;
    Clock::time_point first_start = batch.front().put_start;
    for (const Finished& f : batch) {
      claimed_.erase(f.chunk.address);
      backoff_.erase(f.chunk.address);
      bytes += f.chunk.length;
      first_start = std::min(first_start, f.put_start);
    }
    // Batches overlap (the next one's puts run while this one completes):
    // time it from its first put's start, or from the previous batch's
    // completion when that is later, so back-to-back batches add up to the
    // wall-clock time and their rates to the pipeline's throughput.
    const Clock::time_point since = std::max(first_start, last_completed_);
    last_completed_ = end;
    const double secs = std::chrono::duration<double>(end - since).count();
    const double mib = bytes / 1048576.0;
    const double rate = secs > 0 ? mib / secs : 0;
    // stats() reports a sliding rate: small batches (a trickle, a local
    // store renaming chunks in) make any one batch's rate noisy, and
    // `wavefs status` computes its ETA from it.
    recent_.push_back(RecentBatch{since, end, bytes});
    while (recent_.size() > 1 && end - recent_.front().end > kRateWindow) {
      recent_.pop_front();
    }
    uint64_t window_bytes = 0;
    for (const RecentBatch& r : recent_) window_bytes += r.bytes;
    const double window_secs =
        std::chrono::duration<double>(end - recent_.front().since).count();
    uploaded_chunks_ += batch.size();
    uploaded_bytes_ += bytes;
    waves_ += 1;
    last_rate_ =
        window_secs > 0 ? window_bytes / 1048576.0 / window_secs : rate;
    last_progress_ = end;
    sticky_error_.clear();  // a batch went through: the store works again
    trip_delay_ = std::chrono::milliseconds(0);
    if (failing_) {
      spdlog::info("uploads work again ({} failures not logged)",
                   unlogged_failures_);
      failing_ = false;
      unlogged_failures_ = 0;
    }
    spdlog::info(
        "wave {}: {} chunks, {:.1f} MiB in {:.2f} s ({:.1f} MiB/s), {} "
        "chunks pending",
        waves_, batch.size(), mib, secs, rate, index_->pending_chunks());
    done_cv_.notify_all();
    cv_.notify_all();  // room for more finished puts
    lock.unlock();
    {
      std::lock_guard<std::mutex> cb(callback_mu_);
      if (space_freed_) space_freed_();
    }
    lock.lock();
  }
}

}  // namespace wavefs
