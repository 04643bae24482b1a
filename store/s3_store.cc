#include "store/s3_store.h"

namespace wavefs {

std::string S3KeyOf(const S3Config& config, const std::string& name) {
  return config.prefix.empty() ? name : config.prefix + "/" + name;
}

S3Store::S3Store(std::shared_ptr<S3Client> client)
    : client_(std::move(client)),
      chunks_prefix_(S3KeyOf(client_->config(), "chunks/")) {}

std::string S3Store::KeyOf(const Address& address) const {
  const std::string hex = ToHex(address);
  return chunks_prefix_ + hex.substr(0, 2) + "/" + hex;
}

Status S3Store::Put(const Address& address,
                    std::span<const uint8_t> ciphertext) {
  Status st = client_->Put(KeyOf(address), ciphertext, true);
  return st.code() == Code::kExists ? Status::Ok() : st;  // stored already
}

Status S3Store::PutFile(const Address& address, const std::string& path,
                        std::vector<uint8_t>*) {
  Status st = client_->PutFile(KeyOf(address), path, true);
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

}  // namespace wavefs
