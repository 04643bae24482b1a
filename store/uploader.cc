#include "store/uploader.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "chunker/crypto.h"

namespace wavefs {

Uploader::Uploader(Index* index, Spill* spill, ChunkStore* store,
                   Options options)
    : index_(index), spill_(spill), store_(store), options_(options) {
  last_progress_ = std::chrono::steady_clock::now();
}

Uploader::~Uploader() { Stop(); }

void Uploader::Start() {
  thread_ = std::thread([this] { Run(); });
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
  }
  if (thread_.joinable()) thread_.join();
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
  last_progress_ = std::chrono::steady_clock::now();
  Status result;
  while (index_->pending_chunks() > 0) {
    done_cv_.wait_for(lock, std::chrono::seconds(1));
    if (progress) {
      lock.unlock();
      progress(stats());
      lock.lock();
    }
    if (!sticky_error_.empty() &&
        std::chrono::steady_clock::now() - last_progress_ > give_up_after) {
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

bool Uploader::StoreHoldsIntact(const Address& address,
                                std::vector<uint8_t>* scratch) {
  // After a power loss a renamed-in object may exist without its bytes;
  // only a hash check tells an intact chunk from a damaged one.
  return store_->Get(address, scratch).ok() && AddressOf(*scratch) == address;
}

Status Uploader::UploadOne(const Address& address, uint64_t length,
                           std::vector<uint8_t>* scratch) {
  const std::string path = spill_->PathOf(address);
  auto backoff = options_.initial_backoff;
  Status st;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    st = store_->PutFile(address, path, scratch);
    if (st.ok()) return st;
    if (st.code() == Code::kNotFound && !spill_->Contains(address)) {
      // The staged file is gone: fine when the store already has the chunk
      // (an earlier run moved it in and stopped before completing).
      if (StoreHoldsIntact(address, scratch)) return Status::Ok();
      spdlog::error(
          "chunk {} is queued but missing from the spill and the "
          "store; dropping its queue entry",
          ToHex(address));
      index_->DropQueued(address, length).IgnoreError();
      Status lost = Status::Error(Code::kCorrupt,
                                  "staged chunk " + ToHex(address) +
                                      " was lost (in neither the spill nor "
                                      "the store); files naming it read EIO "
                                      "there");
      std::lock_guard<std::mutex> lock(mu_);
      lost_chunks_ += 1;
      lost_error_ = lost.message();
      return lost;
    }
    spdlog::warn("upload of chunk {} failed (attempt {}/{}): {}",
                 ToHex(address), attempt, options_.max_attempts, st.ToString());
    if (!st.retryable() && attempt >= 2) break;
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, backoff, [&] { return stop_; })) return st;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  return st;
}

Status Uploader::Complete(
    const std::vector<std::pair<Address, uint64_t>>& done) {
  if (done.empty()) return Status::Ok();
  WAVEFS_RETURN_IF_ERROR(store_->Sync());
  WAVEFS_RETURN_IF_ERROR(index_->CompleteUploads(done));
  // Only now may the staged copies go (a rename into the store already
  // moved them; then this is a no-op).
  for (const auto& [address, length] : done) {
    Status rm = spill_->Remove(address);
    if (!rm.ok()) spdlog::warn("cannot remove staged chunk: {}", rm.ToString());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    uploaded_chunks_ += done.size();
    for (const auto& d : done) uploaded_bytes_ += d.second;
    last_progress_ = std::chrono::steady_clock::now();
    sticky_error_.clear();  // a put went through: the store works again
  }
  done_cv_.notify_all();
  std::lock_guard<std::mutex> lock(callback_mu_);
  if (space_freed_) space_freed_();
  return Status::Ok();
}

void Uploader::Run() {
  std::vector<std::pair<Address, uint64_t>> wave;
  auto backoff = options_.initial_backoff;
  bool failing = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto wait = failing ? backoff : std::chrono::milliseconds(1000);
      cv_.wait_for(lock, wait, [&] { return stop_ || notified_; });
      if (stop_) return;
      notified_ = false;
      // While a writer keeps staging, let a wave fill: one store sync per
      // wave instead of one per chunk.
      if (draining_ == 0 && !failing) {
        cv_.wait_for(lock, options_.gather, [&] {
          return stop_ || draining_ > 0 ||
                 index_->pending_chunks() >= options_.wave_size;
        });
        if (stop_) return;
      }
    }
    while (true) {
      Status st = index_->PeekQueue(options_.wave_size, &wave);
      if (!st.ok()) {
        spdlog::error("cannot read the upload queue: {}", st.ToString());
        failing = true;
        break;
      }
      if (wave.empty()) break;
      const auto start = std::chrono::steady_clock::now();
      std::atomic<size_t> next{0};
      std::mutex done_mu;
      std::vector<std::pair<Address, uint64_t>> done;
      std::string first_error;
      auto worker = [&] {
        std::vector<uint8_t> scratch;
        for (size_t i = next++; i < wave.size(); i = next++) {
          Status s = UploadOne(wave[i].first, wave[i].second, &scratch);
          std::lock_guard<std::mutex> lock(done_mu);
          if (s.ok()) {
            done.push_back(wave[i]);
          } else if (first_error.empty()) {
            first_error = s.ToString();
          }
        }
      };
      const int n = std::max<int>(
          1,
          std::min<int>(options_.concurrency, static_cast<int>(wave.size())));
      std::vector<std::thread> workers;
      for (int i = 1; i < n; ++i) workers.emplace_back(worker);
      worker();
      for (auto& t : workers) t.join();
      Status completed = Complete(done);
      if (!completed.ok()) {
        if (first_error.empty()) first_error = completed.ToString();
        done.clear();
      }
      const double secs = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
      uint64_t bytes = 0;
      for (const auto& d : done) bytes += d.second;
      const double mib = bytes / 1048576.0;
      const double rate = secs > 0 ? mib / secs : 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        waves_ += 1;
        last_rate_ = rate;
        if (!first_error.empty()) sticky_error_ = first_error;
        spdlog::info(
            "wave {}: {}/{} chunks, {:.1f} MiB in {:.2f} s ({:.1f} MiB/s), "
            "{} chunks pending",
            waves_, done.size(), wave.size(), mib, secs, rate,
            index_->pending_chunks());
      }
      done_cv_.notify_all();
      if (!first_error.empty()) {
        spdlog::error("upload wave failed: {}", first_error);
        failing = true;
        backoff = std::min(backoff * 2, options_.max_backoff);
        break;
      }
      failing = false;
      backoff = options_.initial_backoff;
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      // Less than a wave left: go back and let it fill (unless draining).
      if (draining_ == 0 && index_->pending_chunks() < options_.wave_size) {
        notified_ = index_->pending_chunks() > 0;
        break;
      }
    }
  }
}

}  // namespace wavefs
