#include "store/chunk_store.h"

#include "store/file_util.h"

namespace wavefs {

Status ChunkStore::PutFile(const Address& address, const std::string& path,
                           std::vector<uint8_t>* scratch) {
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(path, scratch));
  return Put(address, *scratch);
}

void ChunkStore::RemoveMany(std::span<const Address> addresses,
                            std::vector<Status>* results) {
  results->clear();
  for (const Address& a : addresses) results->push_back(Remove(a));
}

Status ChunkStore::GetRange(const Address& address, uint64_t offset, size_t len,
                            std::vector<uint8_t>* out) {
  WAVEFS_RETURN_IF_ERROR(Get(address, out));
  if (out->size() < offset || out->size() - offset < len) {
    out->clear();
    return Status::Error(Code::kCorrupt,
                         "chunk " + ToHex(address) + " ends before byte " +
                             std::to_string(offset + len) + " (short object)");
  }
  out->erase(out->begin(), out->begin() + static_cast<ptrdiff_t>(offset));
  out->resize(len);
  return Status::Ok();
}

Status ChunkStore::ListSized(
    const std::function<void(const Address&, uint64_t)>& fn) {
  return List([&](const Address& a) { fn(a, 0); });
}

namespace {
Status NoNamedObjects(const ChunkStore& store) {
  return Status::Error(Code::kNotSupported,
                       store.Describe() + " keeps no named objects");
}
}  // namespace

bool IsValidObjectPart(const std::string& part) {
  if (part.empty() || part.size() > 200 || part[0] == '.') return false;
  for (char c : part) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool IsValidObjectName(const std::string& name) {
  const size_t slash = name.find('/');
  if (slash == std::string::npos) return false;
  const std::string dir = name.substr(0, slash);
  // "chunks" is the chunk objects' own namespace.
  return dir != "chunks" && IsValidObjectPart(dir) &&
         IsValidObjectPart(name.substr(slash + 1));
}

Status ChunkStore::PutObject(const std::string&, std::span<const uint8_t>) {
  return NoNamedObjects(*this);
}
Status ChunkStore::GetObject(const std::string&, std::vector<uint8_t>*) {
  return NoNamedObjects(*this);
}
Status ChunkStore::PutObjectFile(const std::string& name,
                                 const std::string& path) {
  std::vector<uint8_t> bytes;
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(path, &bytes));
  return PutObject(name, bytes);
}
Status ChunkStore::GetObjectToFile(const std::string& name,
                                   const std::string& path) {
  std::vector<uint8_t> bytes;
  WAVEFS_RETURN_IF_ERROR(GetObject(name, &bytes));
  return WriteFileAtomically(path, bytes, 0600);
}
Status ChunkStore::RemoveObject(const std::string&) {
  return NoNamedObjects(*this);
}
Status ChunkStore::ListObjects(
    const std::string&,
    const std::function<void(const std::string&, uint64_t)>&) {
  return NoNamedObjects(*this);
}

}  // namespace wavefs
