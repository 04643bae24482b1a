#include "store/forwarding_store.h"

namespace wavefs {

ForwardingStore::ForwardingStore(std::unique_ptr<ChunkStore> inner)
    : owned_(std::move(inner)), inner_(owned_.get()) {}

ForwardingStore::ForwardingStore(ChunkStore* inner) : inner_(inner) {}

Status ForwardingStore::Put(const Address& address,
                            std::span<const uint8_t> ciphertext) {
  return inner_->Put(address, ciphertext);
}

// Forwarded rather than left to ChunkStore's default: the inner store may
// move the file in by rename or stream it (S3).
Status ForwardingStore::PutFile(const Address& address, const std::string& path,
                                std::vector<uint8_t>* scratch) {
  return inner_->PutFile(address, path, scratch);
}

Status ForwardingStore::Sync() { return inner_->Sync(); }

Status ForwardingStore::Get(const Address& address, std::vector<uint8_t>* out) {
  return inner_->Get(address, out);
}

// Forwarded: the inner store may read just the range (pread, HTTP Range).
Status ForwardingStore::GetRange(const Address& address, uint64_t offset,
                                 size_t len, std::vector<uint8_t>* out) {
  return inner_->GetRange(address, offset, len, out);
}

Result<bool> ForwardingStore::Has(const Address& address) {
  return inner_->Has(address);
}

Status ForwardingStore::Remove(const Address& address) {
  return inner_->Remove(address);
}

void ForwardingStore::RemoveMany(std::span<const Address> addresses,
                                 std::vector<Status>* results) {
  inner_->RemoveMany(addresses, results);
}

Status ForwardingStore::List(const std::function<void(const Address&)>& fn) {
  return inner_->List(fn);
}

Status ForwardingStore::ListSized(
    const std::function<void(const Address&, uint64_t)>& fn) {
  return inner_->ListSized(fn);
}

std::string ForwardingStore::Describe() const { return inner_->Describe(); }

Status ForwardingStore::PutObject(const std::string& name,
                                  std::span<const uint8_t> bytes) {
  return inner_->PutObject(name, bytes);
}

Status ForwardingStore::GetObject(const std::string& name,
                                  std::vector<uint8_t>* out) {
  return inner_->GetObject(name, out);
}

Status ForwardingStore::PutObjectFile(const std::string& name,
                                      const std::string& path) {
  return inner_->PutObjectFile(name, path);
}

Status ForwardingStore::GetObjectToFile(const std::string& name,
                                        const std::string& path) {
  return inner_->GetObjectToFile(name, path);
}

Status ForwardingStore::RemoveObject(const std::string& name) {
  return inner_->RemoveObject(name);
}

Status ForwardingStore::ListObjects(
    const std::string& dir,
    const std::function<void(const std::string&, uint64_t)>& fn) {
  return inner_->ListObjects(dir, fn);
}

}  // namespace wavefs
