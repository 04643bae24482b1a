#include "store/memory_store.h"

namespace wavefs {

Status MemoryStore::Put(const Address& address,
                        std::span<const uint8_t> ciphertext) {
  std::lock_guard<std::mutex> lock(mu_);
  // Idempotent: a second put of the same address keeps the first object, as
  // a content-addressed store would.
  objects_.try_emplace(address, ciphertext.begin(), ciphertext.end());
  return Status::Ok();
}

Status MemoryStore::Get(const Address& address, std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(address);
  if (it == objects_.end()) {
    return Status::Error(Code::kNotFound,
                         "chunk " + ToHex(address) + " not in memory store");
  }
  out->assign(it->second.begin(), it->second.end());
  return Status::Ok();
}

Result<bool> MemoryStore::Has(const Address& address) {
  std::lock_guard<std::mutex> lock(mu_);
  return objects_.count(address) != 0;
}

Status MemoryStore::Remove(const Address& address) {
  std::lock_guard<std::mutex> lock(mu_);
  objects_.erase(address);
  return Status::Ok();
}

Status MemoryStore::List(const std::function<void(const Address&)>& fn) {
  // Copy the addresses first so fn may call back into the store.
  std::vector<Address> addresses;
  {
    std::lock_guard<std::mutex> lock(mu_);
    addresses.reserve(objects_.size());
    for (const auto& [address, object] : objects_) addresses.push_back(address);
  }
  for (const Address& address : addresses) fn(address);
  return Status::Ok();
}

bool MemoryStore::CorruptObject(const Address& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = objects_.find(address);
  if (it == objects_.end() || it->second.empty()) return false;
  it->second[it->second.size() / 2] ^= 0x01;
  return true;
}

size_t MemoryStore::object_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return objects_.size();
}

Status MemoryStore::ListSized(
    const std::function<void(const Address&, uint64_t)>& fn) {
  std::vector<std::pair<Address, uint64_t>> objects;
  {
    std::lock_guard<std::mutex> lock(mu_);
    objects.reserve(objects_.size());
    for (const auto& [address, object] : objects_)
      objects.emplace_back(address, object.size());
  }
  for (const auto& [address, size] : objects) fn(address, size);
  return Status::Ok();
}

}  // namespace wavefs
