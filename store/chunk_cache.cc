#include "store/chunk_cache.h"

#include <sodium.h>

#include <algorithm>

namespace wavefs {

ChunkData CopyWiped(const uint8_t* data, size_t n) {
  return ChunkData(new std::vector<uint8_t>(data, data + n),
                   [](const std::vector<uint8_t>* v) {
                     sodium_memzero(const_cast<uint8_t*>(v->data()), v->size());
                     delete v;
                   });
}

bool ChunkCache::Contains(const Address& address) {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.count(address) > 0 || loading_.count(address) > 0;
}

size_t ChunkCache::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

void ChunkCache::DropIdle(std::chrono::steady_clock::time_point cutoff) {
  std::vector<ChunkData> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = map_.begin(); it != map_.end();) {
      Entry& e = it->second;
      if (e.data.use_count() > 1 || e.used >= cutoff) {
        ++it;
        continue;
      }
      bytes_ -= Weight(e.data);
      lru_.erase(e.pos);
      dropped.push_back(std::move(e.data));
      it = map_.erase(it);
    }
  }
}

uint64_t ChunkCache::Weight(const ChunkData& data) {
  return std::max<uint64_t>(4096, data ? data->size() : 0);
}

void ChunkCache::InsertLocked(const Address& address, ChunkData data) {
  if (capacity_ == 0 || map_.count(address)) return;
  lru_.push_front(address);
  bytes_ += Weight(data);
  map_[address] = {std::move(data), lru_.begin(),
                   std::chrono::steady_clock::now()};
  // The entry just added stays, even alone over the budget.
  while (map_.size() > capacity_ ||
         (budget_ > 0 && bytes_ > budget_ && map_.size() > 1)) {
    auto it = map_.find(lru_.back());
    bytes_ -= Weight(it->second.data);
    map_.erase(it);
    lru_.pop_back();
  }
}

Result<ChunkData> ChunkCache::GetOrLoad(const Address& address,
                                        const Loader& load) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    auto it = map_.find(address);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      it->second.used = std::chrono::steady_clock::now();
      return it->second.data;
    }
    auto l = loading_.find(address);
    if (l == loading_.end()) break;
    std::shared_ptr<Loading> other = l->second;
    cv_.wait(lock, [&] { return other->done; });
    if (!other->status.ok()) return other->status;
    if (other->data) return other->data;
  }
  auto mine = std::make_shared<Loading>();
  loading_[address] = mine;
  lock.unlock();
  Result<ChunkData> r = load();
  lock.lock();
  mine->done = true;
  if (r.ok()) {
    mine->data = *r;
    InsertLocked(address, *r);
  } else {
    mine->status = r.status();
  }
  loading_.erase(address);
  cv_.notify_all();
  return r;
}

}  // namespace wavefs
