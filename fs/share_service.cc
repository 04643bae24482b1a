#include "fs/share_service.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <ctime>

namespace wavefs {
namespace {

Status NoAttr(const std::string& name) {
  return Status::Error(Code::kNotFound, "no attribute " + name, ENODATA);
}

}  // namespace

ShareService::ShareService(Filesystem* fs, Index* index, ChunkFormat format,
                           const StoreId& store_id)
    : fs_(fs), index_(index), format_(format), store_id_(store_id) {}

bool ShareService::Handles(const std::string& name) {
  return name == kXattrShare || name == kXattrUnshare ||
         name.rfind(kXattrSharePrefix, 0) == 0;
}

Result<std::string> ShareService::Share(uint64_t ino, const ShareId& id) {
  auto attr = fs_->GetAttr(ino);
  if (!attr.ok()) return attr.status();
  if (!S_ISREG(attr->mode))
    return Status::Error(Code::kInvalid, "only regular files can be shared");
  // Commits what is written so far, so the share names every byte that
  // close() would have kept.
  auto map = fs_->GetDataMap(ino);
  if (!map.ok()) return map.status();
  WfMap w;
  w.chunk_format = format_;
  w.store_id = store_id_;
  w.share_id = id;
  w.created_unix = static_cast<uint64_t>(std::time(nullptr));
  w.map = std::move(*map);
  std::string bytes = EncodeWfmap(w);
  const std::vector<Address> addresses = DataAddresses(w.map);
  WAVEFS_RETURN_IF_ERROR(index_->AddShare(id, addresses, bytes));
  spdlog::info("share {}: inode {} ({} bytes, {} chunks pinned)", IdToHex(id),
               ino, w.map.size, addresses.size());
  return bytes;
}

Status ShareService::Unshare(const ShareId& id) {
  auto addresses = index_->GetShareAddresses(id);
  if (!addresses.ok()) return addresses.status();
  WAVEFS_RETURN_IF_ERROR(index_->RemoveShare(id));
  spdlog::info("unshare {}: {} chunks unpinned", IdToHex(id),
               addresses->size());
  return Status::Ok();
}

Result<uint64_t> ShareService::Pending(const ShareId& id) {
  auto addresses = index_->GetShareAddresses(id);
  if (!addresses.ok()) return addresses.status();
  uint64_t n = 0;
  for (const Address& a : *addresses) {
    auto q = index_->IsQueued(a);
    if (!q.ok()) return q.status();
    n += *q ? 1 : 0;
  }
  return n;
}

Result<std::string> ShareService::Get(const std::string& name) {
  // user.wavefs.share.<32 hex>.<page | "pending">
  const std::string rest = name.substr(std::string(kXattrSharePrefix).size());
  const auto dot = rest.find('.');
  if (dot != 32) return NoAttr(name);
  auto id = IdFromHex(rest.substr(0, 32));
  if (!id.ok()) return NoAttr(name);
  const std::string what = rest.substr(33);
  // An unknown share reads as a missing attribute (ENODATA).
  auto unknown = [&](const Status& s) {
    return s.code() == Code::kNotFound ? NoAttr(name) : s;
  };
  if (what == "pending") {
    auto n = Pending(*id);
    if (!n.ok()) return unknown(n.status());
    return std::to_string(*n);
  }
  if (what.empty() || what.size() > 9 ||
      what.find_first_not_of("0123456789") != std::string::npos)
    return NoAttr(name);
  const uint64_t page = std::stoull(what);
  auto payload = index_->GetSharePayload(*id);
  if (!payload.ok()) return unknown(payload.status());
  const uint64_t start = page * kPageSize;
  if (start >= payload->size()) return std::string();
  return payload->substr(start, kPageSize);
}

Status ShareService::Set(uint64_t ino, const std::string& name,
                         const std::string& value) {
  if (name != kXattrShare && name != kXattrUnshare)
    return Status::Error(Code::kPermission,
                         name + " is computed by wavefs and read-only", EPERM);
  auto id = IdFromHex(value);
  if (!id.ok()) return id.status();
  if (name == kXattrUnshare) {
    Status s = Unshare(*id);
    if (s.code() == Code::kNotFound)
      return Status::Error(Code::kNotFound, s.message(), ENODATA);
    return s;
  }
  auto bytes = Share(ino, *id);
  return bytes.ok() ? Status::Ok() : bytes.status();
}

}  // namespace wavefs
