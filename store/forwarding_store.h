// ForwardingStore: the base of ChunkStore decorators (counting, fault
// injection, ...). Every call goes to an inner store unchanged; a decorator
// overrides only the calls it changes.
//
// Ownership: either owns the inner store (the unique_ptr constructor) or
// borrows it (the pointer constructor; the inner store must then outlive
// this one). Thread safety: as safe as the inner store (every ChunkStore is
// safe for concurrent calls); a subclass that keeps state guards it itself.
#pragma once

#include <memory>

#include "store/chunk_store.h"

namespace wavefs {

class ForwardingStore : public ChunkStore {
 public:
  explicit ForwardingStore(std::unique_ptr<ChunkStore> inner);
  explicit ForwardingStore(ChunkStore* inner);

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override;
  Status Sync() override;
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Status GetRange(const Address& address, uint64_t offset, size_t len,
                  std::vector<uint8_t>* out) override;
  Result<bool> Has(const Address& address) override;
  Status Remove(const Address& address) override;
  void RemoveMany(std::span<const Address> addresses,
                  std::vector<Status>* results) override;
  Status List(const std::function<void(const Address&)>& fn) override;
  Status ListSized(
      const std::function<void(const Address&, uint64_t)>& fn) override;
  std::string Describe() const override;
  Status PutObject(const std::string& name,
                   std::span<const uint8_t> bytes) override;
  Status GetObject(const std::string& name, std::vector<uint8_t>* out) override;
  Status PutObjectFile(const std::string& name,
                       const std::string& path) override;
  Status GetObjectToFile(const std::string& name,
                         const std::string& path) override;
  Status RemoveObject(const std::string& name) override;
  Status ListObjects(
      const std::string& dir,
      const std::function<void(const std::string&, uint64_t)>& fn) override;

  ChunkStore* inner() const { return inner_; }

 private:
  std::unique_ptr<ChunkStore> owned_;  // null when borrowed
  ChunkStore* inner_;
};

}  // namespace wavefs
