#include "store/chunk_store.h"

#include "store/file_util.h"

namespace wavefs {

Status ChunkStore::PutFile(const Address& address, const std::string& path,
                           std::vector<uint8_t>* scratch) {
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(path, scratch));
  return Put(address, *scratch);
}

}  // namespace wavefs
