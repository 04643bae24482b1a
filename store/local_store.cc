#include "store/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string_view>
#include <vector>

#include "store/file_util.h"

namespace wavefs {
namespace {

bool IsHexPair(std::string_view name) {
  auto is_hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  };
  return name.size() == 2 && is_hex(name[0]) && is_hex(name[1]);
}

// Creates a shard directory when absent (made durable by the next Sync).
Status EnsureShard(Env* env, const std::string& shard) {
  struct stat st;
  if (::stat(shard.c_str(), &st) == 0) return Status::Ok();
  Status made = env->MakeDir(shard, 0755);
  return made.code() == Code::kExists ? Status::Ok() : made;
}

std::string ShardOf(const std::string& object_path) {
  return object_path.substr(0, object_path.find_last_of('/'));
}

}  // namespace

Result<std::unique_ptr<LocalStore>> LocalStore::Open(
    const std::string& chunks_dir, Env* env) {
  std::string dir = chunks_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  WAVEFS_RETURN_IF_ERROR(MakeDirs(dir, 0755));
  Result<uint64_t> dev = DeviceOf(dir);
  if (!dev.ok()) return dev.status();
  return std::unique_ptr<LocalStore>(new LocalStore(std::move(dir), *dev, env));
}

std::string LocalStore::PathOf(const Address& address) const {
  std::string hex = ToHex(address);
  return dir_ + "/" + hex.substr(0, 2) + "/" + hex;
}

Status LocalStore::Put(const Address& address,
                       std::span<const uint8_t> ciphertext) {
  const std::string path = PathOf(address);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 &&
      static_cast<uint64_t>(st.st_size) == ciphertext.size()) {
    // Same address, same size: stored already, unless a power cut left the
    // object the right length with other bytes (zeros). Compare them: this
    // path is rare (the index dedups known addresses before any put).
    std::vector<uint8_t> have;
    if (ReadWholeFile(path, &have).ok() && have.size() == ciphertext.size() &&
        std::equal(have.begin(), have.end(), ciphertext.begin()))
      return Status::Ok();
  }
  WAVEFS_RETURN_IF_ERROR(EnsureShard(env_, ShardOf(path)));
  return WriteFileAtomically(path, ciphertext, 0644, env_);
}

Status LocalStore::PutFile(const Address& address, const std::string& path,
                           std::vector<uint8_t>* scratch) {
  Result<uint64_t> source_dev = DeviceOf(path);
  if (!source_dev.ok()) return source_dev.status();
  if (*source_dev != dev_) {
    return ChunkStore::PutFile(address, path, scratch);
  }

  const std::string target = PathOf(address);
  const std::string shard = ShardOf(target);
  WAVEFS_RETURN_IF_ERROR(EnsureShard(env_, shard));
  Status moved = env_->Rename(path, target);
  // One st_dev can still span two mounts (bind mounts): copy instead.
  if (moved.sys_errno() == EXDEV) {
    return ChunkStore::PutFile(address, path, scratch);
  }
  return moved;
}

Status LocalStore::Sync() { return env_->SyncFs(dir_); }

Status LocalStore::Get(const Address& address, std::vector<uint8_t>* out) {
  return ReadWholeFileDirect(PathOf(address), out);
}

Status LocalStore::GetRange(const Address& address, uint64_t offset, size_t len,
                            std::vector<uint8_t>* out) {
  return ReadFileRange(PathOf(address), offset, len, out);
}

Result<bool> LocalStore::Has(const Address& address) {
  const std::string path = PathOf(address);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return Status::FromErrno(errno, "stat " + path);
}

Status LocalStore::Remove(const Address& address) {
  const std::string path = PathOf(address);
  Status st = env_->Unlink(path);
  if (st.code() == Code::kNotFound) return Status::Ok();
  WAVEFS_RETURN_IF_ERROR(st);
  return env_->SyncPath(ShardOf(path));
}

Status LocalStore::List(const std::function<void(const Address&)>& fn) {
  return ListSized([&](const Address& a, uint64_t) { fn(a); });
}

Status LocalStore::ListSized(
    const std::function<void(const Address&, uint64_t)>& fn) {
  std::vector<std::string> shards;
  WAVEFS_RETURN_IF_ERROR(ListDirNames(dir_, &shards));
  std::vector<std::string> names;
  for (const std::string& shard : shards) {
    if (!IsHexPair(shard)) continue;
    Status st = ListDirNames(dir_ + "/" + shard, &names);
    if (st.code() == Code::kNotDir) continue;    // a stray file named like one
    if (st.code() == Code::kNotFound) continue;  // removed meanwhile
    WAVEFS_RETURN_IF_ERROR(st);
    for (const std::string& name : names) {
      // Temporary files (".tmp.*") and anything else that is not an object
      // of this shard are skipped.
      if (!IsAddressName(name) || name.compare(0, 2, shard) != 0) {
        continue;
      }
      Result<Address> address = AddressFromHex(name);
      if (!address.ok()) continue;
      struct stat st;
      if (::stat((dir_ + "/" + shard + "/" + name).c_str(), &st) != 0)
        continue;  // removed meanwhile
      fn(*address, static_cast<uint64_t>(st.st_size));
    }
  }
  return Status::Ok();
}

std::string LocalStore::Describe() const { return "local:" + dir_; }

std::string LocalStore::Root() const {
  const size_t slash = dir_.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : dir_.substr(0, slash);
}

Result<std::string> LocalStore::ObjectPath(const std::string& name) const {
  if (!IsValidObjectName(name))
    return Status::Error(Code::kInvalid, "bad object name " + name);
  return Root() + "/" + name;
}

Status LocalStore::PutObject(const std::string& name,
                             std::span<const uint8_t> bytes) {
  auto path = ObjectPath(name);
  if (!path.ok()) return path.status();
  WAVEFS_RETURN_IF_ERROR(MakeDirs(ShardOf(*path), 0755));
  return WriteFileDurably(*path, bytes, 0644, env_);
}

Status LocalStore::GetObject(const std::string& name,
                             std::vector<uint8_t>* out) {
  auto path = ObjectPath(name);
  if (!path.ok()) return path.status();
  return ReadWholeFile(*path, out);
}

Status LocalStore::PutObjectFile(const std::string& name,
                                 const std::string& path) {
  auto to = ObjectPath(name);
  if (!to.ok()) return to.status();
  WAVEFS_RETURN_IF_ERROR(MakeDirs(ShardOf(*to), 0755));
  return CopyFileDurably(path, *to, 0644, env_);
}

Status LocalStore::GetObjectToFile(const std::string& name,
                                   const std::string& path) {
  auto from = ObjectPath(name);
  if (!from.ok()) return from.status();
  return CopyFilePlain(*from, path);
}

Status LocalStore::RemoveObject(const std::string& name) {
  auto path = ObjectPath(name);
  if (!path.ok()) return path.status();
  Status st = env_->Unlink(*path);
  if (st.code() == Code::kNotFound) return Status::Ok();
  WAVEFS_RETURN_IF_ERROR(st);
  return env_->SyncPath(ShardOf(*path));
}

Status LocalStore::ListObjects(
    const std::string& dir,
    const std::function<void(const std::string&, uint64_t)>& fn) {
  if (!IsValidObjectPart(dir) || dir == "chunks")
    return Status::Error(Code::kInvalid, "bad object directory " + dir);
  const std::string path = Root() + "/" + dir;
  std::vector<std::string> names;
  Status st = ListDirNames(path, &names);
  if (st.code() == Code::kNotFound) return Status::Ok();  // none yet
  WAVEFS_RETURN_IF_ERROR(st);
  for (const std::string& leaf : names) {
    if (!IsValidObjectPart(leaf)) continue;  // temporary files (".tmp.*")
    struct stat st_leaf;
    if (::stat((path + "/" + leaf).c_str(), &st_leaf) != 0 ||
        !S_ISREG(st_leaf.st_mode))
      continue;
    fn(leaf, static_cast<uint64_t>(st_leaf.st_size));
  }
  return Status::Ok();
}

}  // namespace wavefs
