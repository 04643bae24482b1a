#include "store/counting_store.h"

#include <sys/stat.h>

#include <cerrno>

namespace wavefs {

Status CountingStore::Put(const Address& address,
                          std::span<const uint8_t> ciphertext) {
  Status st = ForwardingStore::Put(address, ciphertext);
  if (st.ok()) {
    puts_.fetch_add(1);
    bytes_put_.fetch_add(ciphertext.size());
  }
  return st;
}

Status CountingStore::PutFile(const Address& address, const std::string& path,
                              std::vector<uint8_t>* scratch) {
  // The size is taken first: the inner store may move the file away.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(errno, "stat " + path);
  }
  Status status = ForwardingStore::PutFile(address, path, scratch);
  if (status.ok()) {
    puts_.fetch_add(1);
    bytes_put_.fetch_add(static_cast<uint64_t>(st.st_size));
  }
  return status;
}

Status CountingStore::Get(const Address& address, std::vector<uint8_t>* out) {
  Status st = ForwardingStore::Get(address, out);
  if (st.ok()) {
    gets_.fetch_add(1);
    bytes_got_.fetch_add(out->size());
  }
  return st;
}

Status CountingStore::GetRange(const Address& address, uint64_t offset,
                               size_t len, std::vector<uint8_t>* out) {
  Status st = ForwardingStore::GetRange(address, offset, len, out);
  if (st.ok()) {
    gets_.fetch_add(1);
    bytes_got_.fetch_add(out->size());
  }
  return st;
}

}  // namespace wavefs
