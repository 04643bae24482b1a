// TailCache: the plaintext of file tails just sealed, by address.
//
// A file's last chunk is usually partial, and the next append (or `cp`
// over the file, or a small rewrite) has to bring that chunk back into a
// dirty buffer: without this cache, every `echo line >> log` fetched the
// tail it had sealed a moment before from the spill or the store (a GET
// per append on S3) and decrypted it again. The seal copies a partial
// chunk's plaintext here first; AcquireDirty looks here before it fetches.
//
// Entries are keyed by the chunk's address, which names one ciphertext and
// so exactly one plaintext: an entry can never be stale, only gone. Only
// chunks of at most max_entry bytes are kept (a tail rewritten per append
// costs a re-seal of the whole tail anyway), within budget bytes in all,
// least recently used out. Callers make entries with CopyWiped
// (store/chunk_cache.h): plaintext is wiped when its entry goes.
//
// Thread safety: thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <mutex>

#include "chunker/types.h"
#include "store/chunk_cache.h"

namespace wavefs {

class TailCache {
 public:
  TailCache(size_t budget_bytes, size_t max_entry)
      : budget_(budget_bytes), max_entry_(max_entry) {}

  // Whether a chunk of len bytes would be kept (callers copy only then).
  bool Wants(size_t len) const {
    return len > 0 && len <= max_entry_ && len <= budget_;
  }
  // Keeps data as the plaintext of address (ignored when !Wants).
  void Put(const Address& address, ChunkData data);
  // The plaintext of address, or null.
  ChunkData Get(const Address& address);
  uint64_t hits() const;
  size_t bytes() const;

 private:
  struct Entry {
    ChunkData data;
    std::list<Address>::iterator lru;
  };
  void DropLocked(std::map<Address, Entry>::iterator it);

  const size_t budget_;
  const size_t max_entry_;
  mutable std::mutex mu_;
  std::list<Address> lru_;  // front = most recent; under mu_
  std::map<Address, Entry> map_;
  size_t bytes_ = 0;   // under mu_
  uint64_t hits_ = 0;  // under mu_
};

}  // namespace wavefs
