// MemoryStore: an in-memory ChunkStore for tests, with fault injection.
// Thread-safe (one mutex; tests only).
#pragma once

#include <atomic>
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
  std::string Describe() const override { return "memory"; }

  // The next `n` calls of Put (or Get) fail with `status`.
  void FailNextPuts(int n, Status status);
  void FailNextGets(int n, Status status);
  // Flips one bit of a stored object (to test corruption detection).
  bool CorruptObject(const Address& address);
  size_t object_count() const;

 private:
  mutable std::mutex mu_;
  std::map<Address, std::vector<uint8_t>> objects_;
  int fail_puts_ = 0;
  int fail_gets_ = 0;
  Status put_error_;
  Status get_error_;
};

}  // namespace wavefs
