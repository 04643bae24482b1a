#include "store/s3_store.h"

namespace wavefs {

std::string S3KeyOf(const S3Config& config, const std::string& name) {
  return config.prefix.empty() ? name : config.prefix + "/" + name;
}

S3Store::S3Store(std::shared_ptr<S3Client> client, ChunkFormat format)
    : client_(std::move(client)),
      format_(format),
      chunks_prefix_(S3KeyOf(client_->config(), "chunks/")) {}

std::string S3Store::PayloadHashOf(const Address& address) const {
  return format_ == ChunkFormat::kSegmentedAes ? ToHex(address) : "";
}

std::string S3Store::KeyOf(const Address& address) const {
  const std::string hex = ToHex(address);
  return chunks_prefix_ + hex.substr(0, 2) + "/" + hex;
}

Status S3Store::Put(const Address& address,
                    std::span<const uint8_t> ciphertext) {
  Status st =
      client_->Put(KeyOf(address), ciphertext, true, PayloadHashOf(address));
  return st.code() == Code::kExists ? Status::Ok() : st;  // stored already
}

Status S3Store::PutFile(const Address& address, const std::string& path,
                        std::vector<uint8_t>*) {
  Status st =
      client_->PutFile(KeyOf(address), path, true, PayloadHashOf(address));
  return st.code() == Code::kExists ? Status::Ok() : st;  // stored already
}

Status S3Store::Get(const Address& address, std::vector<uint8_t>* out) {
  return client_->Get(KeyOf(address), std::nullopt, out);
}

Status S3Store::GetRange(const Address& address, uint64_t offset, size_t len,
                         std::vector<uint8_t>* out) {
  return client_->Get(KeyOf(address), std::make_pair(offset, uint64_t{len}),
                      out);
}

Result<bool> S3Store::Has(const Address& address) {
  auto size = client_->Head(KeyOf(address));
  if (!size.ok()) return size.status();
  return size->has_value();
}

Status S3Store::Remove(const Address& address) {
  return client_->Delete(KeyOf(address));
}

void S3Store::RemoveMany(std::span<const Address> addresses,
                         std::vector<Status>* results) {
  std::vector<std::string> keys;
  keys.reserve(addresses.size());
  for (const Address& a : addresses) keys.push_back(KeyOf(a));
  client_->DeleteMany(keys, results);
}

Status S3Store::List(const std::function<void(const Address&)>& fn) {
  return ListSized([&](const Address& a, uint64_t) { fn(a); });
}

Status S3Store::ListSized(
    const std::function<void(const Address&, uint64_t)>& fn) {
  return client_->ListSized(
      chunks_prefix_, [&](const std::string& key, uint64_t size) {
        const size_t slash = key.rfind('/');
        const std::string name =
            slash == std::string::npos ? key : key.substr(slash + 1);
        if (!IsAddressName(name)) return;  // not ours (a stray object)
        auto a = AddressFromHex(name);
        if (a.ok()) fn(*a, size);
      });
}

std::string S3Store::Describe() const { return client_->config().Describe(); }

Status S3Store::PutObject(const std::string& name,
                          std::span<const uint8_t> bytes) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return client_->Put(S3KeyOf(client_->config(), name), bytes, false);
}

Status S3Store::GetObject(const std::string& name, std::vector<uint8_t>* out) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return client_->Get(S3KeyOf(client_->config(), name), std::nullopt, out);
}

Status S3Store::PutObjectFile(const std::string& name,
                              const std::string& path) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return client_->PutFile(S3KeyOf(client_->config(), name), path, false);
}

Status S3Store::GetObjectToFile(const std::string& name,
                                const std::string& path) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return client_->GetToFile(S3KeyOf(client_->config(), name), path);
}

Status S3Store::RemoveObject(const std::string& name) {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return client_->Delete(S3KeyOf(client_->config(), name));
}

Status S3Store::ListObjects(
    const std::string& dir,
    const std::function<void(const std::string&, uint64_t)>& fn) {
  if (!IsValidObjectPart(dir) || dir == "chunks")
    return Status::Error(Code::kInvalid, "bad object directory " + dir);
  const std::string prefix = S3KeyOf(client_->config(), dir + "/");
  return client_->ListSized(prefix, [&](const std::string& key, uint64_t size) {
    const std::string leaf = key.substr(prefix.size());
    if (IsValidObjectPart(leaf)) fn(leaf, size);  // not deeper keys
  });
}

}  // namespace wavefs
