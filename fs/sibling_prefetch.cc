#include "fs/sibling_prefetch.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

#include "fs/chunk_reader.h"
#include "store/index.h"
#include "store/thread_name.h"

namespace wavefs {

SiblingPrefetch::SiblingPrefetch(Index* index, ChunkReader* reader,
                                 Options options, ListDir list_dir)
    : index_(index),
      reader_(reader),
      options_(options),
      list_dir_(std::move(list_dir)) {
  if (!enabled()) return;
  for (int i = 0; i < std::max(1, options_.threads); ++i)
    threads_.emplace_back([this] {
      NameThisThread("wfs-siblings");
      Loop();
    });
}

SiblingPrefetch::~SiblingPrefetch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void SiblingPrefetch::ForgetLocked(uint64_t dir) {
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) return;
  for (uint64_t ino : it->second.files) {
    auto w = where_.find(ino);
    if (w != where_.end() && w->second.first == dir) where_.erase(w);
  }
  ages_.erase(it->second.age);
  dirs_.erase(it);
}

void SiblingPrefetch::NoteListing(uint64_t dir, bool from_start,
                                  const std::vector<uint64_t>& files) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = dirs_.find(dir);
  if (from_start && it != dirs_.end()) {
    ForgetLocked(dir);
    it = dirs_.end();
  }
  if (it == dirs_.end()) {
    if (!from_start) return;  // the start of this listing was forgotten
    while (dirs_.size() >= options_.dirs && !ages_.empty())
      ForgetLocked(ages_.back());
    ages_.push_front(dir);
    it = dirs_.emplace(dir, Dir{}).first;
    it->second.age = ages_.begin();
  } else {
    ages_.splice(ages_.begin(), ages_, it->second.age);
  }
  Dir& d = it->second;
  for (uint64_t ino : files) {
    while (where_.size() >= options_.max_files && ages_.back() != dir)
      ForgetLocked(ages_.back());
    if (where_.size() >= options_.max_files) break;
    // (A file listed twice, as a listing resumed after a full reply may
    // show it, keeps its first place.)
    if (!where_.try_emplace(ino, dir, static_cast<uint32_t>(d.files.size()))
             .second)
      continue;
    d.files.push_back(ino);
    d.queued.push_back(false);
  }
  d.by_ino.clear();  // built again at the next open
}

template <typename At>
void SiblingPrefetch::QueueAfter(Dir& d, size_t from, size_t n, At at) {
  const size_t to = std::min(n, from + 1 + options_.files_ahead);
  for (size_t i = from + 1; i < to; ++i) {
    const size_t p = at(i);
    if (d.queued[p]) continue;
    d.queued[p] = true;
    queue_.push_back({d.files[p], 0});
    queued_.fetch_add(1);
  }
}

void SiblingPrefetch::NoteLookup(uint64_t dir, uint64_t ino) {
  if (!enabled() || !list_dir_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (parent_.size() >= options_.max_files) parent_.clear();
  parent_[ino] = dir;
}

void SiblingPrefetch::NoteOpen(uint64_t ino) {
  if (!enabled()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto w = where_.find(ino);
    if (w == where_.end()) {
      // A file of a directory nobody listed: list it (once) on a prefetch
      // thread, and take this open as the reader's place there.
      auto p = parent_.find(ino);
      if (p == parent_.end() || dirs_.count(p->second)) return;
      queue_.push_back({ino, p->second});
      parent_.erase(p);
      cv_.notify_all();
      return;
    }
    Dir& d = dirs_.at(w->second.first);
    ages_.splice(ages_.begin(), ages_, d.age);
    const size_t n = d.files.size();
    if (d.by_ino.size() != n) {
      d.by_ino.resize(n);
      for (size_t i = 0; i < n; ++i) d.by_ino[i] = static_cast<uint32_t>(i);
      std::sort(d.by_ino.begin(), d.by_ino.end(), [&](uint32_t a, uint32_t b) {
        return d.files[a] < d.files[b];
      });
      d.rank.resize(n);
      for (size_t i = 0; i < n; ++i)
        d.rank[d.by_ino[i]] = static_cast<uint32_t>(i);
    }
    const size_t pos = w->second.second;
    const int64_t last = d.last_open;
    d.last_open = static_cast<int64_t>(pos);
    // A reader going through the listing in one of the two orders: this
    // open is of the file right after the previous one. The first open of
    // a listing only marks where the reader is. (Steps of more than one
    // place let a reader in another order, e.g. a list of paths in the
    // source disk's order, start fetches of files it does not read next:
    // 45 wasted GETs for 131 files in it_tree_read.)
    if (last < 0) return;
    const auto step_ok = [](size_t was, size_t now) { return now == was + 1; };
    if (step_ok(static_cast<size_t>(last), pos)) {
      QueueAfter(d, pos, n, [](size_t i) { return i; });
    } else if (step_ok(d.rank[static_cast<size_t>(last)], d.rank[pos])) {
      QueueAfter(d, d.rank[pos], n, [&](size_t i) { return d.by_ino[i]; });
    } else {
      return;
    }
  }
  cv_.notify_all();
}

void SiblingPrefetch::Loop() {
  while (true) {
    Work w;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      w = queue_.front();
      queue_.pop_front();
    }
    if (w.dir != 0)
      List(w.dir, w.ino);
    else
      Fetch(w.ino);
  }
}

void SiblingPrefetch::List(uint64_t dir, uint64_t opened) {
  const std::vector<uint64_t> files = list_dir_(dir);
  listings_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dirs_.count(dir)) return;  // listed meanwhile
  }
  NoteListing(dir, true, files);
  // The open that asked for the listing is the reader's place in it.
  std::lock_guard<std::mutex> lock(mu_);
  auto w = where_.find(opened);
  if (w != where_.end() && w->second.first == dir)
    dirs_.at(dir).last_open = static_cast<int64_t>(w->second.second);
}

void SiblingPrefetch::Fetch(uint64_t ino) {
  auto attr = index_->GetInode(ino);
  if (!attr.ok() || !S_ISREG(attr->mode) || attr->size == 0 ||
      attr->size > options_.max_file)
    return;
  auto ref = index_->GetChunk(ino, 0);
  if (!ref.ok() || !ref->has_value() || (*ref)->hole) return;
  Status st = reader_->PrefetchSmall(**ref);
  if (!st.ok()) {
    spdlog::debug("prefetch of inode {} failed: {}", ino, st.ToString());
    return;
  }
  prefetched_.fetch_add(1);
}

}  // namespace wavefs
