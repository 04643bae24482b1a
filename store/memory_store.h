// MemoryStore: an in-memory ChunkStore for tests. Faults are injected by
// wrapping it in a FaultStore (store/fault_store.h); CorruptObject damages
// an object at rest (bit rot after an intact put).
// Thread-safe (one mutex; tests only).
#pragma once

#include <map>
#include <mutex>
#include <vector>

#include "store/chunk_store.h"

namespace wavefs {

class MemoryStore : public ChunkStore {
 public:
  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Result<bool> Has(const Address& address) override;
  Status Remove(const Address& address) override;
  Status List(const std::function<void(const Address&)>& fn) override;
  Status ListSized(
      const std::function<void(const Address&, uint64_t)>& fn) override;
  std::string Describe() const override { return "memory"; }
  Status PutObject(const std::string& name,
                   std::span<const uint8_t> bytes) override;
  Status GetObject(const std::string& name, std::vector<uint8_t>* out) override;
  Status RemoveObject(const std::string& name) override;
  Status ListObjects(
      const std::string& dir,
      const std::function<void(const std::string&, uint64_t)>& fn) override;
  // Tests: the named object itself, to damage it (nullptr when absent).
  std::vector<uint8_t>* MutableObject(const std::string& name);

  // Flips one bit of a stored object (to test corruption detection).
  bool CorruptObject(const Address& address);
  size_t object_count() const;

 private:
  mutable std::mutex mu_;
  std::map<Address, std::vector<uint8_t>> objects_;
  std::map<std::string, std::vector<uint8_t>> named_;
};

}  // namespace wavefs
