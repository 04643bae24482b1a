#include "store/spill.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "store/file_util.h"

namespace wavefs {
namespace {

// Prefix of the temporary names WriteFileAtomically uses.
constexpr std::string_view kTempPrefix = ".tmp";

}  // namespace

Result<std::unique_ptr<Spill>> Spill::Open(const std::string& dir, Env* env) {
  std::string clean = dir;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  WAVEFS_RETURN_IF_ERROR(MakeDirs(clean, 0700));
  // Temporary files are what a killed Stage left behind: never renamed in,
  // so no one refers to them.
  std::vector<std::string> leftovers;
  WAVEFS_RETURN_IF_ERROR(ListDirNames(clean, &leftovers));
  std::erase_if(leftovers, [](const std::string& name) {
    return !name.starts_with(kTempPrefix);
  });
  for (const std::string& name : leftovers) {
    Status st = env->Unlink(clean + "/" + name);
    if (!st.ok() && st.code() != Code::kNotFound) return st;
  }
  return std::unique_ptr<Spill>(new Spill(std::move(clean), env));
}

std::string Spill::PathOf(const Address& address) const {
  return dir_ + "/" + ToHex(address);
}

Status Spill::Stage(const Address& address,
                    std::span<const uint8_t> ciphertext) {
  // Same address, same bytes: a staged copy is as good as a new one.
  if (Contains(address)) return Status::Ok();
  WAVEFS_RETURN_IF_ERROR(
      WriteFileAtomicallyDirect(PathOf(address), ciphertext, 0600, env_));
  std::lock_guard<std::mutex> lock(mu_);
  unsynced_.insert(address);
  synced_.erase(address);
  changes_ += 1;
  return Status::Ok();
}

Status Spill::Sync(const Address& address) {
  uint64_t changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changes = changes_;
    if (synced_.count(address)) {
      // Still the file this call synced (a Stage or Remove would have
      // dropped it from synced_), if it is still there: a move into the
      // store leaves it in synced_ until its Remove.
      if (Contains(address)) return Status::Ok();
      return Status::Error(Code::kNotFound, "not staged: " + ToHex(address));
    }
  }
  WAVEFS_RETURN_IF_ERROR(env_->SyncPath(PathOf(address)));
  WAVEFS_RETURN_IF_ERROR(env_->SyncPath(dir_));
  std::lock_guard<std::mutex> lock(mu_);
  unsynced_.erase(address);
  if (changes_ == changes) {
    if (synced_.size() >= kMaxSyncedCache) synced_.clear();
    synced_.insert(address);
  }
  return Status::Ok();
}

Status Spill::SyncStaged(bool* moved_out) {
  std::set<Address> todo;
  {
    std::lock_guard<std::mutex> lock(mu_);
    todo.swap(unsynced_);
  }
  if (todo.empty()) return Status::Ok();
  Status result;
  for (auto it = todo.begin(); it != todo.end() && result.ok();) {
    Status st = env_->SyncPath(PathOf(*it));
    if (st.code() == Code::kNotFound) {
      if (moved_out != nullptr) *moved_out = true;
      it = todo.erase(it);
      continue;
    }
    result = st;
    ++it;
  }
  if (result.ok()) result = env_->SyncPath(dir_);
  if (!result.ok()) {
    // Not (all) durable: the next SyncStaged syncs them again.
    std::lock_guard<std::mutex> lock(mu_);
    unsynced_.merge(todo);
  }
  return result;
}

bool Spill::Contains(const Address& address) const {
  struct stat st;
  return ::stat(PathOf(address).c_str(), &st) == 0;
}

Status Spill::Read(const Address& address, std::vector<uint8_t>* out) const {
  return ReadWholeFileDirect(PathOf(address), out);
}

Status Spill::ReadRange(const Address& address, uint64_t offset, size_t len,
                        std::vector<uint8_t>* out) const {
  return ReadFileRange(PathOf(address), offset, len, out);
}

Result<bool> Spill::Holds(const Address& address,
                          std::span<const uint8_t> bytes) const {
  return FileHolds(PathOf(address), bytes);
}

Status Spill::Remove(const Address& address) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    synced_.erase(address);
    changes_ += 1;
  }
  Status st = env_->Unlink(PathOf(address));
  if (!st.ok() && st.code() != Code::kNotFound) return st;
  return Status::Ok();
}

Status Spill::List(const std::function<void(const Address&)>& fn) const {
  std::vector<std::string> names;
  WAVEFS_RETURN_IF_ERROR(ListDirNames(dir_, &names));
  // Called after the directory is closed so fn may stage or remove.
  for (const std::string& name : names) {
    if (!IsAddressName(name)) continue;
    Result<Address> address = AddressFromHex(name);
    if (address.ok()) fn(*address);
  }
  return Status::Ok();
}

Result<uint64_t> Spill::FreeBytes() const { return wavefs::FreeBytes(dir_); }

}  // namespace wavefs
