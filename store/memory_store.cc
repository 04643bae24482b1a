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

Status MemoryStore::PutObject(const std::string& name,
                              std::span<const uint8_t> bytes) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  std::lock_guard<std::mutex> lock(mu_);
  named_[name].assign(bytes.begin(), bytes.end());
  return Status::Ok();
}

Status MemoryStore::GetObject(const std::string& name,
                              std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = named_.find(name);
  if (it == named_.end())
    return Status::Error(Code::kNotFound, name + " not in memory store");
  out->assign(it->second.begin(), it->second.end());
  return Status::Ok();
}

Status MemoryStore::RemoveObject(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  named_.erase(name);
  return Status::Ok();
}

Status MemoryStore::ListObjects(
    const std::string& dir,
    const std::function<void(const std::string&, uint64_t)>& fn) {
  std::vector<std::pair<std::string, uint64_t>> found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string prefix = dir + "/";
    for (const auto& [name, bytes] : named_)
      if (name.compare(0, prefix.size(), prefix) == 0)
        found.emplace_back(name.substr(prefix.size()), bytes.size());
  }
  for (const auto& [leaf, size] : found) fn(leaf, size);
  return Status::Ok();
}

std::vector<uint8_t>* MemoryStore::MutableObject(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = named_.find(name);
  return it == named_.end() ? nullptr : &it->second;
}

}  // namespace wavefs
