#include "store/spill.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "store/file_util.h"

namespace wavefs {
namespace {

constexpr size_t kHexAddressLength = 64;

// Object names are exactly what ToHex produces: 64 lower-case hex chars.
bool IsObjectName(std::string_view name) {
  if (name.size() != kHexAddressLength) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Prefix of the temporary names WriteFileAtomically uses.
constexpr std::string_view kTempPrefix = ".tmp";

// Calls fn with the name of every entry of dir except "." and "..".
template <typename Fn>
Status ForEachName(const std::string& dir, Fn fn) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir " + dir);
  while (true) {
    errno = 0;
    struct dirent* entry = ::readdir(d);
    if (entry == nullptr) {
      int err = errno;
      ::closedir(d);
      if (err != 0) return Status::FromErrno(err, "readdir " + dir);
      return Status::Ok();
    }
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    fn(name);
  }
}

}  // namespace

Result<std::unique_ptr<Spill>> Spill::Open(const std::string& dir) {
  std::string clean = dir;
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  WAVEFS_RETURN_IF_ERROR(MakeDirs(clean, 0700));
  // Temporary files are what a killed Stage left behind: never renamed in,
  // so no one refers to them.
  std::vector<std::string> leftovers;
  WAVEFS_RETURN_IF_ERROR(ForEachName(clean, [&](std::string_view name) {
    if (name.starts_with(kTempPrefix)) leftovers.emplace_back(name);
  }));
  for (const std::string& name : leftovers) {
    const std::string path = clean + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "unlink leftover " + path);
    }
  }
  return std::unique_ptr<Spill>(new Spill(std::move(clean)));
}

std::string Spill::PathOf(const Address& address) const {
  return dir_ + "/" + ToHex(address);
}

Status Spill::Stage(const Address& address,
                    std::span<const uint8_t> ciphertext) {
  // Same address, same bytes: a staged copy is as good as a new one.
  if (Contains(address)) return Status::Ok();
  return WriteFileAtomically(PathOf(address), ciphertext, 0600);
}

Status Spill::Sync(const Address& address) {
  WAVEFS_RETURN_IF_ERROR(FsyncPath(PathOf(address)));
  return FsyncPath(dir_);
}

bool Spill::Contains(const Address& address) const {
  struct stat st;
  return ::stat(PathOf(address).c_str(), &st) == 0;
}

Status Spill::Read(const Address& address, std::vector<uint8_t>* out) const {
  return ReadWholeFile(PathOf(address), out);
}

Status Spill::Remove(const Address& address) {
  const std::string path = PathOf(address);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "unlink " + path);
  }
  return Status::Ok();
}

Status Spill::List(const std::function<void(const Address&)>& fn) const {
  std::vector<Address> addresses;
  WAVEFS_RETURN_IF_ERROR(ForEachName(dir_, [&](std::string_view name) {
    if (!IsObjectName(name)) return;
    Result<Address> address = AddressFromHex(name);
    if (address.ok()) addresses.push_back(*address);
  }));
  // Called after the directory is closed so fn may stage or remove.
  for (const Address& address : addresses) fn(address);
  return Status::Ok();
}

Result<uint64_t> Spill::FreeBytes() const { return wavefs::FreeBytes(dir_); }

}  // namespace wavefs
