// ChunkCache: decrypted chunks, least recently used out, with single-flight
// loading (two readers of one missing chunk fetch it once).
//
// Entries are shared_ptr so a reader can copy out of a chunk after the
// cache has dropped it. Capacity is in entries; 0 disables caching (loads
// still work). A byte budget, when given, bounds the entries' bytes too
// (each counts at least 4 KiB): many small chunks (the files
// SiblingPrefetch fetches ahead) or a few whole ones. Thread-safe; the
// loader runs without the cache lock held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;

// A copy of n plaintext bytes as ChunkData whose bytes are wiped
// (sodium_memzero) when the last reference goes.
ChunkData CopyWiped(const uint8_t* data, size_t n);

class ChunkCache {
 public:
  explicit ChunkCache(size_t capacity, uint64_t budget_bytes = 0)
      : capacity_(capacity), budget_(budget_bytes) {}
  using Loader = std::function<Result<ChunkData>()>;
  Result<ChunkData> GetOrLoad(const Address& address, const Loader& load);
  bool Contains(const Address& address);
  size_t size();
  // Drops the entries no reader holds and none has used since before
  // cutoff (store/chunk_slots.h: writers need the memory). Their deleters
  // run after the cache's lock is released.
  void DropIdle(std::chrono::steady_clock::time_point cutoff);

 private:
  struct Loading {
    bool done = false;
    Status status;
    ChunkData data;
  };
  void InsertLocked(const Address& address, ChunkData data);
  static uint64_t Weight(const ChunkData& data);

  const size_t capacity_;
  const uint64_t budget_;
  uint64_t bytes_ = 0;  // Weight of the entries
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Address> lru_;  // front = most recent
  struct Entry {
    ChunkData data;
    std::list<Address>::iterator pos;  // in lru_
    std::chrono::steady_clock::time_point used;
  };
  std::map<Address, Entry> map_;
  std::map<Address, std::shared_ptr<Loading>> loading_;
};

}  // namespace wavefs
