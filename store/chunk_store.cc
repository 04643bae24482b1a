#include "store/chunk_store.h"

#include "store/file_util.h"

namespace wavefs {

Status ChunkStore::PutFile(const Address& address, const std::string& path,
                           std::vector<uint8_t>* scratch) {
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(path, scratch));
  return Put(address, *scratch);
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

}  // namespace wavefs
