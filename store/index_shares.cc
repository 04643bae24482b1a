// Index: pins and share records (the keys 'P' and 'S', see store/index.h).
//
// Share record value, version 1:
//   u8 version (1), u64le n, n * 32-byte addresses, payload (rest)
// The addresses are what RemoveShare unpins, so they are kept apart from
// the payload, which the index treats as opaque bytes.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <memory>
#include <set>

#include "store/index.h"

namespace wavefs {
namespace {

constexpr char kPinTag = 'P';
constexpr char kShareTag = 'S';
constexpr uint8_t kShareRecordVersion = 1;

std::string PinKey(const Address& a) {
  std::string k(1, kPinTag);
  k.append(reinterpret_cast<const char*>(a.data()), a.size());
  return k;
}

std::string ShareKey(const ShareId& id) {
  std::string k(1, kShareTag);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string EncodeCount(uint64_t n) {
  std::string v;
  for (int i = 0; i < 8; ++i) v.push_back(static_cast<char>(n >> (8 * i)));
  return v;
}

Result<uint64_t> DecodeCount(std::string_view v, const Address& a) {
  if (v.size() != 8)
    return Status::Error(Code::kCorrupt, "pin count of " + ToHex(a) + ": " +
                                             std::to_string(v.size()) +
                                             " bytes, expected 8");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(v[i]);
  return n;
}

Status Rocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return Status::Error(Code::kNotFound, what);
  if (s.IsCorruption())
    return Status::Error(Code::kCorrupt, what + ": " + s.ToString());
  return Status::Error(Code::kIo, what + ": " + s.ToString());
}

std::vector<Address> Distinct(const std::vector<Address>& in) {
  std::set<Address> seen;
  std::vector<Address> out;
  for (const Address& a : in)
    if (seen.insert(a).second) out.push_back(a);
  return out;
}

struct ShareRecord {
  std::vector<Address> addresses;
  std::string payload;
};

std::string EncodeShareRecord(const std::vector<Address>& addresses,
                              std::string_view payload) {
  std::string v(1, static_cast<char>(kShareRecordVersion));
  v += EncodeCount(addresses.size());
  for (const Address& a : addresses)
    v.append(reinterpret_cast<const char*>(a.data()), a.size());
  v.append(payload);
  return v;
}

Result<ShareRecord> DecodeShareRecord(std::string_view v, const ShareId& id) {
  auto bad = [&](const std::string& what) {
    return Status::Error(Code::kCorrupt,
                         "share record " + IdToHex(id) + ": " + what);
  };
  if (v.size() < 9) return bad("truncated");
  if (static_cast<uint8_t>(v[0]) != kShareRecordVersion)
    return bad("unknown version " + std::to_string(static_cast<uint8_t>(v[0])));
  uint64_t n = 0;
  for (int i = 8; i >= 1; --i) n = (n << 8) | static_cast<uint8_t>(v[i]);
  v.remove_prefix(9);
  if (n > v.size() / 32) return bad("truncated address list");
  ShareRecord r;
  r.addresses.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::memcpy(r.addresses[i].data(), v.data() + 32 * i, 32);
  }
  r.payload.assign(v.substr(32 * n));
  return r;
}

}  // namespace

Status Index::AdjustPins(const std::vector<Address>& addresses, int delta,
                         IndexBatch* b) {
  for (const Address& a : Distinct(addresses)) {
    auto n = PinCount(a);
    if (!n.ok()) return n.status();
    if (delta < 0 && *n == 0)
      return Status::Error(Code::kInvalid,
                           "unpin of " + ToHex(a) + ", which is not pinned");
    const uint64_t next = delta < 0 ? *n - 1 : *n + 1;
    if (next == 0) {
      b->batch_->Delete(PinKey(a));
    } else {
      b->batch_->Put(PinKey(a), EncodeCount(next));
    }
  }
  return Status::Ok();
}

Result<uint64_t> Index::PinCount(const Address& address) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), PinKey(address), &v);
  if (s.IsNotFound()) return uint64_t{0};
  WAVEFS_RETURN_IF_ERROR(Rocks(s, "read pin count"));
  return DecodeCount(v, address);
}

Status Index::PinChunks(const std::vector<Address>& addresses) {
  std::lock_guard<std::mutex> lock(pins_mu_);
  IndexBatch b;
  WAVEFS_RETURN_IF_ERROR(AdjustPins(addresses, +1, &b));
  return Commit(&b, true);
}

Status Index::UnpinChunks(const std::vector<Address>& addresses) {
  std::lock_guard<std::mutex> lock(pins_mu_);
  IndexBatch b;
  WAVEFS_RETURN_IF_ERROR(AdjustPins(addresses, -1, &b));
  return Commit(&b, true);
}

Status Index::ListPinned(
    const std::function<bool(const Address&, uint64_t)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  const std::string prefix(1, kPinTag);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (it->key().size() != 33) continue;
    Address a;
    std::memcpy(a.data(), it->key().data() + 1, a.size());
    auto n = DecodeCount({it->value().data(), it->value().size()}, a);
    if (!n.ok()) return n.status();
    if (!fn(a, *n)) return Status::Ok();
  }
  return Rocks(it->status(), "list pins");
}

Status Index::AddShare(const ShareId& id, const std::vector<Address>& addresses,
                       std::string_view payload) {
  std::lock_guard<std::mutex> lock(pins_mu_);
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ShareKey(id), &v);
  if (s.ok())
    return Status::Error(Code::kExists, "share " + IdToHex(id) + " exists");
  if (!s.IsNotFound()) return Rocks(s, "read share record");
  const std::vector<Address> distinct = Distinct(addresses);
  IndexBatch b;
  WAVEFS_RETURN_IF_ERROR(AdjustPins(distinct, +1, &b));
  b.batch_->Put(ShareKey(id), EncodeShareRecord(distinct, payload));
  return Commit(&b, true);
}

namespace {

// The decoded record of share id; kNotFound when there is none.
Result<ShareRecord> ReadShareRecord(rocksdb::DB* db, const ShareId& id) {
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ShareKey(id), &v);
  if (s.IsNotFound())
    return Status::Error(Code::kNotFound, "no share " + IdToHex(id));
  WAVEFS_RETURN_IF_ERROR(Rocks(s, "read share record"));
  return DecodeShareRecord(v, id);
}

}  // namespace

Result<std::string> Index::GetSharePayload(const ShareId& id) {
  auto r = ReadShareRecord(db_.get(), id);
  if (!r.ok()) return r.status();
  return std::move(r->payload);
}

Result<std::vector<Address>> Index::GetShareAddresses(const ShareId& id) {
  auto r = ReadShareRecord(db_.get(), id);
  if (!r.ok()) return r.status();
  return std::move(r->addresses);
}

Status Index::RemoveShare(const ShareId& id) {
  std::lock_guard<std::mutex> lock(pins_mu_);
  auto addresses = GetShareAddresses(id);
  if (!addresses.ok()) return addresses.status();
  IndexBatch b;
  WAVEFS_RETURN_IF_ERROR(AdjustPins(*addresses, -1, &b));
  b.batch_->Delete(ShareKey(id));
  return Commit(&b, true);
}

Status Index::ListShares(
    const std::function<bool(const ShareId&, uint64_t)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  const std::string prefix(1, kShareTag);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (it->key().size() != 17) continue;
    ShareId id;
    std::memcpy(id.data(), it->key().data() + 1, id.size());
    auto r = DecodeShareRecord({it->value().data(), it->value().size()}, id);
    if (!r.ok()) return r.status();
    if (!fn(id, r->addresses.size())) return Status::Ok();
  }
  return Rocks(it->status(), "list shares");
}

}  // namespace wavefs
