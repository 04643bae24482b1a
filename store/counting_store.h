// CountingStore: a decorator that counts calls and bytes of another store.
// The daemon wraps its store in one so `user.wavefs.stats` can show how many
// chunks reads fetched (the lazy-read tests rely on it). Owns or borrows the
// inner store (ForwardingStore). Thread-safe (atomic counters). Counts only
// successful gets and puts; a PutFile counts as one put of the file's size.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "store/forwarding_store.h"

namespace wavefs {

class CountingStore : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override;
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Status GetRange(const Address& address, uint64_t offset, size_t len,
                  std::vector<uint8_t>* out) override;

  uint64_t gets() const { return gets_.load(); }
  uint64_t puts() const { return puts_.load(); }
  uint64_t bytes_got() const { return bytes_got_.load(); }
  uint64_t bytes_put() const { return bytes_put_.load(); }

 private:
  std::atomic<uint64_t> gets_{0}, puts_{0}, bytes_got_{0}, bytes_put_{0};
};

}  // namespace wavefs
