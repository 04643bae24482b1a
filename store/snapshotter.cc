#include "store/snapshotter.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "store/file_util.h"
#include "store/thread_name.h"

namespace wavefs {

Snapshotter::Snapshotter(Index* index, ChunkStore* store,
                         const SnapshotKey& key, const StoreIdBytes& store_id,
                         SnapshotterOptions options)
    : index_(index),
      store_(store),
      key_(key),
      store_id_(store_id),
      o_(std::move(options)) {
  commits_at_snapshot_ = index_->commit_count();
  if (!o_.marker.empty()) {
    // Gone until this session ends with a snapshot of its final state.
    dirty_ = access(o_.marker.c_str(), F_OK) != 0;
    if (!dirty_ && unlink(o_.marker.c_str()) != 0) dirty_ = true;
  }
}

Snapshotter::~Snapshotter() { Stop(); }

void Snapshotter::Start() {
  if (o_.interval.count() == 0) return;
  thread_ = std::thread([this] {
    NameThisThread("wfs-snapshot");
    Loop();
  });
}

void Snapshotter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Snapshotter::Changed() const {
  return dirty_ || index_->commit_count() != commits_at_snapshot_;
}

Result<TakenSnapshot> Snapshotter::SnapshotNow() {
  std::lock_guard<std::mutex> take(take_mu_);
  const uint64_t commits = index_->commit_count();
  auto t = TakeSnapshot(index_, store_, key_, store_id_, o_.keep, o_.work_dir);
  if (!t.ok()) return t.status();
  {
    std::lock_guard<std::mutex> lock(mu_);
    commits_at_snapshot_ = commits;
    dirty_ = false;
  }
  spdlog::info(
      "index snapshot {}: {} records, {} chunks still queued, {} bytes", t->id,
      t->records, t->pending, t->bytes);
  return t;
}

Status Snapshotter::Final() {
  Stop();
  if (o_.interval.count() == 0) return Status::Ok();
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed = Changed();
  }
  if (!changed) {
    auto all = ListSnapshots(store_);
    changed = !all.ok() || all->empty();
  }
  if (changed) {
    auto t = SnapshotNow();
    if (!t.ok()) return t.status();
  }
  if (!o_.marker.empty()) {
    static constexpr uint8_t kText[] = "clean\n";
    WAVEFS_RETURN_IF_ERROR(
        WriteFileDurably(o_.marker, {kText, sizeof kText - 1}, 0600));
  }
  return Status::Ok();
}

void Snapshotter::Loop() {
  using Clock = std::chrono::steady_clock;
  const auto min_gap =
      std::min<std::chrono::seconds>(o_.interval, std::chrono::seconds(60));
  auto last_snapshot = Clock::now();
  auto last_change = Clock::now();
  auto retry_after = Clock::time_point{};
  uint64_t seen = index_->commit_count();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    const auto now = Clock::now();
    const uint64_t commits = index_->commit_count();
    if (commits != seen) {
      seen = commits;
      last_change = now;
    }
    if (!Changed() || now < retry_after) continue;
    const uint64_t changes = commits - commits_at_snapshot_;
    const bool burst = changes >= o_.burst_changes &&
                       now - last_change >= o_.quiet &&
                       now - last_snapshot >= min_gap;
    const bool overdue = now - last_snapshot >= o_.interval;
    if (!burst && !overdue) continue;
    lock.unlock();
    auto t = SnapshotNow();
    lock.lock();
    if (t.ok()) {
      last_snapshot = Clock::now();
    } else {
      spdlog::warn("index snapshot failed (trying again in a minute): {}",
                   t.status().ToString());
      retry_after = Clock::now() + std::chrono::seconds(60);
    }
  }
}

}  // namespace wavefs
