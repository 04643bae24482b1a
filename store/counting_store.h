// CountingStore: a decorator that counts calls and bytes of another store.
// The daemon wraps its store in one so `user.wavefs.stats` can show how many
// chunks reads fetched (the lazy-read tests rely on it). Owns the inner
// store. Thread-safe (atomic counters). Counts only successful gets and puts;
// a PutFile counts as one put of the file's size.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "store/chunk_store.h"

namespace wavefs {

class CountingStore : public ChunkStore {
 public:
  explicit CountingStore(std::unique_ptr<ChunkStore> inner)
      : inner_(std::move(inner)) {}

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override;
  Status Sync() override { return inner_->Sync(); }
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Status GetRange(const Address& address, uint64_t offset, size_t len,
                  std::vector<uint8_t>* out) override;
  Result<bool> Has(const Address& address) override;
  Status Remove(const Address& address) override;
  Status List(const std::function<void(const Address&)>& fn) override;
  std::string Describe() const override { return inner_->Describe(); }

  uint64_t gets() const { return gets_.load(); }
  uint64_t puts() const { return puts_.load(); }
  uint64_t bytes_got() const { return bytes_got_.load(); }
  uint64_t bytes_put() const { return bytes_put_.load(); }

 private:
  std::unique_ptr<ChunkStore> inner_;
  std::atomic<uint64_t> gets_{0}, puts_{0}, bytes_got_{0}, bytes_put_{0};
};

}  // namespace wavefs
