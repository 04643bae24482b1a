// LocalStore: chunks as files in a directory (the embedded default store).
//
// Layout under `chunks_dir`: `ab/abcdef...` (64 hex chars, sharded by the
// first byte). Put writes a temporary file and renames it in. PutFile moves
// a spill file in with rename(2) when both are on one filesystem, and falls
// back to copy otherwise. Neither fsyncs: Sync() makes everything put so far
// durable with one syncfs(2) of the store's filesystem. Named objects
// (ChunkStore::PutObject) live beside `chunks_dir`, in its parent (the
// store directory): `DIR/LEAF`, each written durably on its own.
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "store/chunk_store.h"
#include "store/env.h"

namespace wavefs {

class LocalStore : public ChunkStore {
 public:
  // Creates chunks_dir when absent.
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& chunks_dir,
                                                  Env* env = Env::Default());

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

  std::string PathOf(const Address& address) const;

 private:
  LocalStore(std::string dir, uint64_t dev, Env* env)
      : dir_(std::move(dir)), dev_(dev), env_(env) {}
  // The store directory (chunks_dir's parent), where named objects live.
  std::string Root() const;
  // STORE/DIR/LEAF of a named object; kInvalid for a bad name.
  Result<std::string> ObjectPath(const std::string& name) const;
  std::string dir_;
  uint64_t dev_;  // st_dev of dir_: PutFile renames when the source shares it
  Env* env_;      // every mutating call (store/env.h)
};

}  // namespace wavefs
