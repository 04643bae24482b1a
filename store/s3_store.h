// S3Store: chunks as objects of an S3-compatible bucket (AWS S3, Ceph RGW,
// MinIO, R2, ...), under `PREFIX/chunks/ab/<64 hex address>`.
//
// Put and PutFile send `If-None-Match: *`: an address already in the bucket
// is not uploaded again (with `Expect: 100-continue` the body is not even
// sent), so dedup saves bandwidth as well as space. A PUT is durable when
// it returns 200, so Sync() has nothing to do. What arrived is checked
// against what was sent: in a format-3 store a chunk's address is the
// SHA-256 of its object, so the PUT signs it as x-amz-content-sha256 and the
// server refuses a body that does not hash to it (no extra pass over the
// bytes here); other objects compute an MD5 on the way and compare it with
// the ETag. PutFile streams the staged file; nothing is copied
// into memory. GetRange is an HTTP Range request.
// Thread safety: thread-safe (S3Client is).
#pragma once

#include <memory>
#include <string>

#include "store/chunk_store.h"
#include "store/s3_client.h"

namespace wavefs {

class S3Store : public ChunkStore {
 public:
  S3Store(std::shared_ptr<S3Client> client, ChunkFormat format);

  ChunkFormat format() const { return format_; }
  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override;
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Status GetRange(const Address& address, uint64_t offset, size_t len,
                  std::vector<uint8_t>* out) override;
  Result<bool> Has(const Address& address) override;
  Status Remove(const Address& address) override;
  // DeleteObjects, 1000 keys a request.
  void RemoveMany(std::span<const Address> addresses,
                  std::vector<Status>* results) override;
  Status List(const std::function<void(const Address&)>& fn) override;
  Status ListSized(
      const std::function<void(const Address&, uint64_t)>& fn) override;
  std::string Describe() const override;
  // Named objects: PREFIX/DIR/LEAF (ChunkStore::PutObject).
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

  // The object key of a chunk.
  std::string KeyOf(const Address& address) const;

 private:
  // The signed payload hash of a chunk's PUT: its address in format 3,
  // empty (MD5 and ETag instead) in the BLAKE2b formats.
  std::string PayloadHashOf(const Address& address) const;

  std::shared_ptr<S3Client> client_;
  const ChunkFormat format_;
  std::string chunks_prefix_;  // "PREFIX/chunks/"
};

// The key of an object wavefs keeps beside the chunks (the store config):
// PREFIX/name.
std::string S3KeyOf(const S3Config& config, const std::string& name);

}  // namespace wavefs
