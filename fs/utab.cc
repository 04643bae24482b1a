#include "fs/utab.h"

#include <libmount.h>

namespace wavefs {
namespace {

// libmount removes one entry (the newest) per update; mount(8) may have
// added its own entry after ours, and dead mounts leave theirs.
constexpr int kMaxEntriesPerTarget = 8;

bool RemoveOne(const std::string& target) {
  libmnt_update* upd = mnt_new_update();
  if (upd == nullptr) return false;
  bool ok = mnt_update_set_fs(upd, 0, target.c_str(), nullptr) == 0 &&
            mnt_update_table(upd, nullptr) == 0;
  mnt_free_update(upd);
  return ok;
}

}  // namespace

void RemoveUtabEntries(const std::string& target) {
  for (int i = 0; i < kMaxEntriesPerTarget; ++i)
    if (!RemoveOne(target)) return;
}

bool AddUtabEntry(const std::string& source, const std::string& target) {
  RemoveUtabEntries(target);
  libmnt_fs* fs = mnt_new_fs();
  libmnt_update* upd = mnt_new_update();
  bool ok = fs != nullptr && upd != nullptr &&
            mnt_fs_set_source(fs, source.c_str()) == 0 &&
            mnt_fs_set_target(fs, target.c_str()) == 0 &&
            mnt_fs_set_options(fs, "x-wavefs") == 0 &&
            mnt_update_set_fs(upd, 0, nullptr, fs) == 0 &&
            mnt_update_table(upd, nullptr) == 0;
  if (upd != nullptr) mnt_free_update(upd);
  if (fs != nullptr) mnt_unref_fs(fs);
  return ok;
}

}  // namespace wavefs
