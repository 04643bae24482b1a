// Namespace: names and everything stored beside them — directory entries,
// links, renames, inode records of closed files, extended attributes.
//
// Every change is one Edit: the index batch plus, per inode, the attribute
// changes it makes. Commit builds each inode's new record from what the
// index holds for it (for an open inode: OpenFile::committed, under its
// lock, so a concurrent close cannot be overwritten with a stale size),
// writes the batch, and only when that succeeded applies the changes to
// the open files' in-memory state (a failed commit changes nothing).
//
// Extended attributes live in the index ('X' ino name). Names need a known
// namespace (user., trusted., security.); names under user.wavefs. are
// wavefs's own (computed, read-only, not listed) and fs/ answers them.
// Limits: names up to 255 bytes, values up to kMaxXattrValue bytes, and the
// names of one inode together up to kMaxXattrList bytes (what listxattr can
// return).
//
// Thread safety: thread-safe; changes are serialised by mu_ (the outermost
// lock of fs/, see fs/open_file.h for the order).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fs/open_file.h"
#include "fs/write_pipeline.h"
#include "store/index.h"

namespace wavefs {

inline constexpr size_t kMaxXattrValue = 64 << 10;
inline constexpr size_t kMaxXattrList = 64 << 10;
inline constexpr const char* kReservedXattrPrefix = "user.wavefs.";
// Refused (EOPNOTSUPP): see Namespace::CheckXattrName.
inline constexpr std::string_view kSelinuxXattr = "security.selinux";

// setxattr flags (as <sys/xattr.h> defines them).
inline constexpr int kXattrCreate = 1;
inline constexpr int kXattrReplace = 2;
// renameat2 flags (as <linux/fs.h> defines them).
inline constexpr unsigned kRenameNoReplace = 1;
inline constexpr unsigned kRenameExchange = 2;

class Namespace {
 public:
  Namespace(Index* index, OpenFileTable* files, const FsHooks* hooks)
      : index_(index), files_(files), hooks_(hooks) {}

  Result<DirEntry> Lookup(uint64_t parent, const std::string& name);
  // Creates a file, directory (S_IFDIR), symlink (S_IFLNK, with target) or
  // special node. kExists when the name is taken. In a set-group-ID
  // directory the new node takes the directory's group (and a new
  // directory its set-group-ID bit), as on ext4.
  Result<InodeAttr> MakeNode(uint64_t parent, const std::string& name,
                             uint32_t mode, uint64_t rdev, uint32_t uid,
                             uint32_t gid, const std::string& symlink);
  Status Unlink(uint64_t parent, const std::string& name);
  Status Link(uint64_t ino, uint64_t new_parent, const std::string& new_name);
  Status Rmdir(uint64_t parent, const std::string& name);
  // flags: 0, kRenameNoReplace or kRenameExchange.
  Status Rename(uint64_t parent, const std::string& name, uint64_t new_parent,
                const std::string& new_name, unsigned flags);
  Result<std::string> ReadLink(uint64_t ino);
  Status ReadDir(uint64_t ino, const std::string& after,
                 const std::function<bool(const DirEntry&)>& fn);
  // Makes every namespace change so far durable (fsyncdir).
  Status Sync();

  // Stored extended attributes (not the user.wavefs. ones).
  Result<std::string> GetXattr(uint64_t ino, const std::string& name);
  // Names, each followed by a NUL, as listxattr returns them.
  Result<std::string> ListXattr(uint64_t ino);
  Status SetXattr(uint64_t ino, const std::string& name,
                  const std::string& value, int flags);
  Status RemoveXattr(uint64_t ino, const std::string& name);

  // The records of an unlinked inode whose last pin went.
  Status DeleteOrphan(uint64_t ino);
  // Runs for each pinned file whose last link a namespace change removed,
  // right after the change, with the table lock and f->mu held (it must
  // only take leaf locks). Set before any change.
  void SetOrphanListener(
      std::function<void(const std::shared_ptr<OpenFile>&)> listener) {
    orphan_listener_ = std::move(listener);
  }

 private:
  using AttrFn = std::function<void(InodeAttr&)>;
  struct Edit {
    IndexBatch batch;
    std::map<uint64_t, std::vector<AttrFn>> changes;
    std::set<uint64_t> lose_link;  // went down by one link: delete at 0
    void Change(uint64_t ino, AttrFn fn) {
      changes[ino].push_back(std::move(fn));
    }
  };
  Status Commit(Edit* edit);
  // Adds the removal of one link of ino to edit.
  void DropLink(Edit* edit, uint64_t ino, const timespec& now);
  Result<InodeAttr> CurrentAttr(uint64_t ino);
  Status CheckXattrName(const std::string& name);

  Index* index_;
  OpenFileTable* files_;
  const FsHooks* hooks_;
  std::function<void(const std::shared_ptr<OpenFile>&)> orphan_listener_;
  std::mutex mu_;  // serialises namespace changes
};

}  // namespace wavefs
