#include "store/uploader.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace wavefs {

Uploader::Uploader(Index* index, Spill* spill, ChunkStore* store,
                   Options options)
    : index_(index), spill_(spill), store_(store), options_(options) {
  last_progress_ = std::chrono::steady_clock::now();
}

Uploader::~Uploader() { Stop(); }

void Uploader::Start() { thread_ = std::thread([this] { Run(); }); }

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
  std::lock_guard<std::mutex> lock(mu_);
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
  s.sticky_error = sticky_error_;
  return s;
}

Status Uploader::Drain(std::chrono::seconds give_up_after,
                       const std::function<void(const Stats&)>& progress) {
  Notify();
  std::unique_lock<std::mutex> lock(mu_);
  last_progress_ = std::chrono::steady_clock::now();
  while (index_->pending_chunks() > 0) {
    done_cv_.wait_for(lock, std::chrono::seconds(1));
    if (progress) {
      lock.unlock();
      progress(stats());
      lock.lock();
    }
    if (!sticky_error_.empty() &&
        std::chrono::steady_clock::now() - last_progress_ > give_up_after) {
      return Status::Error(
          Code::kUnavailable,
          std::to_string(index_->pending_chunks()) +
              " chunks still pending after uploads kept failing: " +
              sticky_error_,
          0, true);
    }
  }
  return Status::Ok();
}

Status Uploader::UploadOne(const Address& address, uint64_t length,
                           std::vector<uint8_t>* scratch) {
  const std::string path = spill_->PathOf(address);
  auto backoff = options_.initial_backoff;
  Status st;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    st = store_->PutFile(address, path, scratch);
    if (st.ok()) break;
    if (st.code() == Code::kNotFound && !spill_->Contains(address)) {
      // The staged file is gone: fine when the store already has the chunk
      // (an earlier run uploaded it and died before completing the entry).
      auto has = store_->Has(address);
      if (has.ok() && *has) {
        st = Status::Ok();
        break;
      }
      spdlog::error("chunk {} is queued but missing from the spill and the "
                    "store; dropping its queue entry",
                    ToHex(address));
      index_->DropQueued(address, length).IgnoreError();
      return Status::Error(Code::kCorrupt,
                           "staged chunk " + ToHex(address) + " was lost");
    }
    spdlog::warn("upload of chunk {} failed (attempt {}/{}): {}",
                 ToHex(address), attempt, options_.max_attempts, st.ToString());
    if (!st.retryable() && attempt >= 2) break;
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, backoff, [&] { return stop_; })) return st;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  if (!st.ok()) return st;
  WAVEFS_RETURN_IF_ERROR(index_->CompleteUpload(address, length));
  // Only now may the staged copy go (a rename into the store already moved
  // it; then this is a no-op).
  Status rm = spill_->Remove(address);
  if (!rm.ok()) spdlog::warn("cannot remove staged chunk: {}", rm.ToString());
  std::function<void()> freed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    uploaded_chunks_ += 1;
    uploaded_bytes_ += length;
    last_progress_ = std::chrono::steady_clock::now();
    freed = space_freed_;
  }
  done_cv_.notify_all();
  if (freed) freed();
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
      std::atomic<uint64_t> done_chunks{0}, done_bytes{0};
      std::mutex err_mu;
      std::string first_error;
      auto worker = [&] {
        std::vector<uint8_t> scratch;
        for (size_t i = next++; i < wave.size(); i = next++) {
          Status s = UploadOne(wave[i].first, wave[i].second, &scratch);
          if (s.ok()) {
            done_chunks += 1;
            done_bytes += wave[i].second;
          } else {
            std::lock_guard<std::mutex> lock(err_mu);
            if (first_error.empty()) first_error = s.ToString();
          }
        }
      };
      const int n = std::max<int>(
          1, std::min<int>(options_.concurrency, static_cast<int>(wave.size())));
      std::vector<std::thread> workers;
      for (int i = 1; i < n; ++i) workers.emplace_back(worker);
      worker();
      for (auto& t : workers) t.join();
      const double secs = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
      const double mib = done_bytes.load() / 1048576.0;
      const double rate = secs > 0 ? mib / secs : 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        waves_ += 1;
        last_rate_ = rate;
        sticky_error_ = first_error;
        spdlog::info(
            "wave {}: {}/{} chunks, {:.1f} MiB in {:.2f} s ({:.1f} MiB/s), "
            "{} chunks pending",
            waves_, done_chunks.load(), wave.size(), mib, secs, rate,
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
    }
  }
}

}  // namespace wavefs
