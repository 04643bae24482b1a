#include "fs/tail_cache.h"

namespace wavefs {

void TailCache::Put(const Address& address, ChunkData data) {
  if (!data || !Wants(data->size())) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(address);
  if (it != map_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return;
  }
  while (bytes_ + data->size() > budget_ && !lru_.empty())
    DropLocked(map_.find(lru_.back()));
  bytes_ += data->size();
  lru_.push_front(address);
  map_.emplace(address, Entry{std::move(data), lru_.begin()});
}

ChunkData TailCache::Get(const Address& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(address);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  hits_ += 1;
  return it->second.data;
}

uint64_t TailCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

size_t TailCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

void TailCache::DropLocked(std::map<Address, Entry>::iterator it) {
  bytes_ -= it->second.data->size();
  lru_.erase(it->second.lru);
  map_.erase(it);
}

}  // namespace wavefs
