#include "fs/namespace.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>

namespace wavefs {
namespace {

Status CheckName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != std::string::npos)
    return Status::Error(Code::kInvalid, "bad name '" + name + "'");
  if (name.size() > 255)
    return Status::Error(Code::kNameTooLong, "name too long");
  return Status::Ok();
}

Status ParentDir(Index* index, uint64_t parent) {
  auto dir = index->GetInode(parent);
  if (!dir.ok()) return dir.status();
  if (!S_ISDIR(dir->mode))
    return Status::Error(Code::kNotDir, "parent is not a directory");
  return Status::Ok();
}

// Ok when name is free in parent, kExists when taken.
Status NameFree(Index* index, uint64_t parent, const std::string& name) {
  auto existing = index->Lookup(parent, name);
  if (existing.ok()) return Status::Error(Code::kExists, name + " exists");
  if (existing.status().code() != Code::kNotFound) return existing.status();
  return Status::Ok();
}

}  // namespace

Result<InodeAttr> Namespace::CurrentAttr(uint64_t ino) {
  if (auto f = files_->Find(ino)) {
    std::lock_guard<std::mutex> lock(f->mu);
    return f->attr;
  }
  return index_->GetInode(ino);
}

Status Namespace::Commit(Edit* edit) {
  if (hooks_ != nullptr && hooks_->ns_before_commit) hooks_->ns_before_commit();
  Status result;
  files_->WithLock([&] {
    // Open inodes of this edit, locked in ascending inode order (the map's
    // order): their committed record is the base, and no commit of theirs
    // can slip in between reading it and writing the new one.
    std::map<uint64_t, std::shared_ptr<OpenFile>> open;
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& [ino, fns] : edit->changes) {
      if (auto f = files_->FindLocked(ino)) {
        locks.emplace_back(f->mu);
        open[ino] = f;
      }
    }
    std::map<uint64_t, InodeAttr> records;
    for (auto& [ino, fns] : edit->changes) {
      InodeAttr rec;
      if (auto it = open.find(ino); it != open.end()) {
        rec = it->second->committed;
      } else {
        auto r = index_->GetInode(ino);
        if (!r.ok()) {
          result = r.status();
          return;
        }
        rec = *r;
      }
      for (auto& fn : fns) fn(rec);
      records[ino] = rec;
    }
    std::set<uint64_t> deleted;   // closed inodes whose last link went
    std::set<uint64_t> orphaned;  // open: records go at the last release
    for (uint64_t ino : edit->lose_link) {
      if (records[ino].nlink > 0) continue;
      if (open.count(ino))
        orphaned.insert(ino);
      else
        deleted.insert(ino);
    }
    for (auto& [ino, rec] : records)
      if (!deleted.count(ino)) edit->batch.PutInode(rec);
    // No name and no handle: nothing else can add records of these.
    for (uint64_t ino : deleted) {
      edit->batch.DeleteInode(ino);
      result = index_->DeleteChunksFrom(&edit->batch, ino, 0);
      if (result.ok()) result = index_->DeleteXattrs(&edit->batch, ino);
      if (!result.ok()) return;
    }
    if (hooks_ != nullptr && hooks_->ns_commit_fault) {
      result = hooks_->ns_commit_fault();
      if (!result.ok()) return;
    }
    result = index_->Commit(&edit->batch, false);
    if (!result.ok()) return;
    for (auto& [ino, f] : open) {
      f->committed = records[ino];
      for (auto& fn : edit->changes[ino]) fn(f->attr);
      if (orphaned.count(ino)) {
        f->unlinked = true;
        if (orphan_listener_) orphan_listener_(f);
      }
    }
  });
  return result;
}

void Namespace::DropLink(Edit* edit, uint64_t ino, const timespec& now) {
  edit->Change(ino, [now](InodeAttr& a) {
    if (a.nlink > 0) a.nlink -= 1;
    a.ctime = now;
  });
  edit->lose_link.insert(ino);
}

Result<DirEntry> Namespace::Lookup(uint64_t parent, const std::string& name) {
  if (name.size() > 255)
    return Status::Error(Code::kNameTooLong, "name too long");
  return index_->Lookup(parent, name);
}

Result<InodeAttr> Namespace::MakeNode(uint64_t parent, const std::string& name,
                                      uint32_t mode, uint64_t rdev,
                                      uint32_t uid, uint32_t gid,
                                      const std::string& symlink) {
  WAVEFS_RETURN_IF_ERROR(CheckName(name));
  std::lock_guard<std::mutex> ns(mu_);
  auto dir = index_->GetInode(parent);
  if (!dir.ok()) return dir.status();
  if (!S_ISDIR(dir->mode))
    return Status::Error(Code::kNotDir, "parent is not a directory");
  WAVEFS_RETURN_IF_ERROR(NameFree(index_, parent, name));

  InodeAttr a;
  a.ino = index_->AllocateIno();
  a.mode = mode;
  a.uid = uid;
  a.gid = gid;
  if (dir->mode & S_ISGID) {
    a.gid = dir->gid;
    if (S_ISDIR(mode)) a.mode |= S_ISGID;
  }
  a.rdev = rdev;
  a.nlink = S_ISDIR(mode) ? 2 : 1;
  a.atime = a.mtime = a.ctime = WallNow();
  if (S_ISLNK(mode)) {
    a.symlink = symlink;
    a.size = symlink.size();
  }
  Edit e;
  e.batch.PutInode(a);
  e.batch.PutDirEntry(parent, name, a.ino, a.mode);
  const timespec now = a.mtime;
  e.Change(parent, [now, mode](InodeAttr& p) {
    p.mtime = p.ctime = now;
    if (S_ISDIR(mode)) p.nlink += 1;
  });
  WAVEFS_RETURN_IF_ERROR(Commit(&e));
  return a;
}

Status Namespace::Link(uint64_t ino, uint64_t new_parent,
                       const std::string& new_name) {
  WAVEFS_RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> ns(mu_);
  auto a = CurrentAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISDIR(a->mode))
    return Status::Error(Code::kPermission, "hard links to directories", EPERM);
  WAVEFS_RETURN_IF_ERROR(ParentDir(index_, new_parent));
  WAVEFS_RETURN_IF_ERROR(NameFree(index_, new_parent, new_name));
  Edit e;
  const timespec now = WallNow();
  e.batch.PutDirEntry(new_parent, new_name, ino, a->mode);
  e.Change(ino, [now](InodeAttr& x) {
    x.nlink += 1;
    x.ctime = now;
  });
  e.Change(new_parent, [now](InodeAttr& p) { p.mtime = p.ctime = now; });
  return Commit(&e);
}

Status Namespace::Unlink(uint64_t parent, const std::string& name) {
  std::lock_guard<std::mutex> ns(mu_);
  auto ent = index_->Lookup(parent, name);
  if (!ent.ok()) return ent.status();
  if (S_ISDIR(ent->mode))
    return Status::Error(Code::kIsDir, name + " is a directory");
  Edit e;
  e.batch.DeleteDirEntry(parent, name);
  const timespec now = WallNow();
  e.Change(parent, [now](InodeAttr& p) { p.mtime = p.ctime = now; });
  DropLink(&e, ent->ino, now);
  return Commit(&e);
}

Status Namespace::Rmdir(uint64_t parent, const std::string& name) {
  std::lock_guard<std::mutex> ns(mu_);
  auto ent = index_->Lookup(parent, name);
  if (!ent.ok()) return ent.status();
  if (!S_ISDIR(ent->mode))
    return Status::Error(Code::kNotDir, name + " is not a directory");
  auto empty = index_->DirIsEmpty(ent->ino);
  if (!empty.ok()) return empty.status();
  if (!*empty) return Status::Error(Code::kNotEmpty, name + " is not empty");
  Edit e;
  e.batch.DeleteDirEntry(parent, name);
  const timespec now = WallNow();
  // The record stays, without links, while the kernel may still hold the
  // directory open (fstat of an open, removed directory works on ext4 and
  // shows nlink 0); Index::ReclaimOrphans removes it at the next mount.
  e.Change(ent->ino, [now](InodeAttr& d) {
    d.nlink = 0;
    d.ctime = now;
  });
  e.Change(parent, [now](InodeAttr& p) {
    p.mtime = p.ctime = now;
    if (p.nlink > 2) p.nlink -= 1;
  });
  return Commit(&e);
}

Status Namespace::Rename(uint64_t parent, const std::string& name,
                         uint64_t new_parent, const std::string& new_name,
                         unsigned flags) {
  if ((flags & ~(kRenameNoReplace | kRenameExchange)) != 0 ||
      flags == (kRenameNoReplace | kRenameExchange))
    return Status::Error(Code::kInvalid, "unsupported rename flags");
  WAVEFS_RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> ns(mu_);
  auto src = index_->Lookup(parent, name);
  if (!src.ok()) return src.status();
  WAVEFS_RETURN_IF_ERROR(ParentDir(index_, new_parent));
  auto dst = index_->Lookup(new_parent, new_name);
  if (!dst.ok() && dst.status().code() != Code::kNotFound) return dst.status();
  const bool src_dir = S_ISDIR(src->mode);
  const timespec now = WallNow();
  Edit e;
  auto touch_parents = [&](int parent_links, int new_parent_links) {
    e.Change(parent, [now, parent_links](InodeAttr& p) {
      p.mtime = p.ctime = now;
      p.nlink =
          static_cast<uint32_t>(static_cast<int64_t>(p.nlink) + parent_links);
    });
    if (new_parent != parent) {
      e.Change(new_parent, [now, new_parent_links](InodeAttr& p) {
        p.mtime = p.ctime = now;
        p.nlink = static_cast<uint32_t>(static_cast<int64_t>(p.nlink) +
                                        new_parent_links);
      });
    }
  };
  if (flags & kRenameExchange) {
    if (!dst.ok()) return dst.status();  // both names must exist
    if (dst->ino == src->ino) return Status::Ok();
    const bool dst_dir = S_ISDIR(dst->mode);
    // The kernel refuses to exchange a directory with one of its own
    // descendants before the request reaches us.
    e.batch.PutDirEntry(parent, name, dst->ino, dst->mode);
    e.batch.PutDirEntry(new_parent, new_name, src->ino, src->mode);
    e.Change(src->ino, [now](InodeAttr& a) { a.ctime = now; });
    e.Change(dst->ino, [now](InodeAttr& a) { a.ctime = now; });
    // A directory moving to the other parent moves its ".." link with it.
    const int moved =
        parent == new_parent ? 0 : (dst_dir ? 1 : 0) - (src_dir ? 1 : 0);
    touch_parents(moved, -moved);
    return Commit(&e);
  }
  int parent_links = 0;
  int new_parent_links = 0;
  if (dst.ok()) {
    if (flags & kRenameNoReplace)
      return Status::Error(Code::kExists, new_name + " exists");
    if (dst->ino == src->ino) return Status::Ok();
    const bool dst_dir = S_ISDIR(dst->mode);
    if (dst_dir && !src_dir)
      return Status::Error(Code::kIsDir, new_name + " is a directory");
    if (!dst_dir && src_dir)
      return Status::Error(Code::kNotDir, new_name + " is not a directory");
    if (dst_dir) {
      auto empty = index_->DirIsEmpty(dst->ino);
      if (!empty.ok()) return empty.status();
      if (!*empty)
        return Status::Error(Code::kNotEmpty, new_name + " is not empty");
      // Kept without links until the next mount, as for rmdir.
      e.Change(dst->ino, [now](InodeAttr& d) {
        d.nlink = 0;
        d.ctime = now;
      });
      new_parent_links -= 1;
    } else {
      DropLink(&e, dst->ino, now);
    }
  }
  // Moving a directory into its own subtree is refused by the kernel's
  // rename checks before the request reaches us.
  e.batch.DeleteDirEntry(parent, name);
  e.batch.PutDirEntry(new_parent, new_name, src->ino, src->mode);
  e.Change(src->ino, [now](InodeAttr& a) { a.ctime = now; });
  if (src_dir) {
    parent_links -= 1;
    new_parent_links += 1;
  }
  if (parent == new_parent) {
    parent_links += new_parent_links;
    new_parent_links = 0;
  }
  touch_parents(parent_links, new_parent_links);
  return Commit(&e);
}

Result<std::string> Namespace::ReadLink(uint64_t ino) {
  auto a = index_->GetInode(ino);
  if (!a.ok()) return a.status();
  if (!S_ISLNK(a->mode)) return Status::Error(Code::kInvalid, "not a symlink");
  return a->symlink;
}

Status Namespace::ReadDir(uint64_t ino, const std::string& after,
                          const std::function<bool(const DirEntry&)>& fn) {
  return index_->ListDir(ino, after, fn);
}

Status Namespace::Sync() {
  std::lock_guard<std::mutex> ns(mu_);
  return index_->Sync();
}

Status Namespace::DeleteOrphan(uint64_t ino) {
  std::lock_guard<std::mutex> ns(mu_);
  IndexBatch b;
  b.DeleteInode(ino);
  WAVEFS_RETURN_IF_ERROR(index_->DeleteChunksFrom(&b, ino, 0));
  WAVEFS_RETURN_IF_ERROR(index_->DeleteXattrs(&b, ino));
  WAVEFS_RETURN_IF_ERROR(index_->DeleteJournal(&b, ino));
  return index_->Commit(&b, false);
}

// ------------------------------------------------------ extended attributes

Status Namespace::CheckXattrName(const std::string& name) {
  if (name.empty() || name.size() > 255)
    return Status::Error(Code::kInvalid, "bad attribute name length");
  // No SELinux labels: with SELinux on, the policy labels a FUSE mount
  // itself (genfscon) and these never reach the daemon; without it, they
  // mean nothing. EOPNOTSUPP rather than ENODATA is what tells ls -l
  // (lgetfilecon) that this filesystem has none, so it stops asking: one
  // GETXATTR round trip per file listed before (a third of ls -lR's time
  // over a million files).
  if (name == kSelinuxXattr)
    return Status::Error(Code::kNotSupported,
                         "SELinux labels are not stored here (the policy "
                         "labels a FUSE mount)");
  for (const char* ns : {"user.", "trusted.", "security."})
    if (name.rfind(ns, 0) == 0 &&
        name.size() > std::char_traits<char>::length(ns))
      return Status::Ok();
  // system.* (POSIX ACLs) and unknown namespaces, as on ext4 without ACLs.
  return Status::Error(Code::kNotSupported,
                       "attribute namespace not supported: " + name);
}

Result<std::string> Namespace::GetXattr(uint64_t ino, const std::string& name) {
  WAVEFS_RETURN_IF_ERROR(CheckXattrName(name));
  auto v = index_->GetXattr(ino, name);
  if (!v.ok() && v.status().code() == Code::kNotFound) {
    auto a = index_->GetInode(ino);  // a missing inode is ENOENT, not ENODATA
    if (!a.ok()) return a.status();
    return Status::Error(Code::kNotFound, "no attribute " + name, ENODATA);
  }
  return v;
}

Result<std::string> Namespace::ListXattr(uint64_t ino) {
  std::string names;
  WAVEFS_RETURN_IF_ERROR(
      index_->ListXattrs(ino, [&](const std::string& n, const std::string&) {
        // One stored before labels were refused is not offered either.
        if (n != kSelinuxXattr) names.append(n).push_back('\0');
      }));
  return names;
}

Status Namespace::SetXattr(uint64_t ino, const std::string& name,
                           const std::string& value, int flags) {
  WAVEFS_RETURN_IF_ERROR(CheckXattrName(name));
  if (name.rfind(kReservedXattrPrefix, 0) == 0)
    return Status::Error(Code::kPermission,
                         name + " is wavefs's own and read-only", EPERM);
  if ((flags & ~(kXattrCreate | kXattrReplace)) != 0)
    return Status::Error(Code::kInvalid, "bad setxattr flags");
  if (value.size() > kMaxXattrValue)
    return Status::Error(Code::kTooBig, "attribute value over 64 KiB", E2BIG);
  std::lock_guard<std::mutex> ns(mu_);
  auto a = index_->GetInode(ino);
  if (!a.ok()) return a.status();
  auto old = index_->GetXattr(ino, name);
  if (!old.ok() && old.status().code() != Code::kNotFound) return old.status();
  if (old.ok() && (flags & kXattrCreate))
    return Status::Error(Code::kExists, name + " exists");
  if (!old.ok() && (flags & kXattrReplace))
    return Status::Error(Code::kNotFound, "no attribute " + name, ENODATA);
  if (!old.ok()) {
    auto names = ListXattr(ino);
    if (!names.ok()) return names.status();
    if (names->size() + name.size() + 1 > kMaxXattrList)
      return Status::Error(Code::kNoSpace, "too many attribute names", ENOSPC);
  }
  Edit e;
  e.batch.PutXattr(ino, name, value);
  const timespec now = WallNow();
  e.Change(ino, [now](InodeAttr& x) { x.ctime = now; });
  return Commit(&e);
}

Status Namespace::RemoveXattr(uint64_t ino, const std::string& name) {
  WAVEFS_RETURN_IF_ERROR(CheckXattrName(name));
  if (name.rfind(kReservedXattrPrefix, 0) == 0)
    return Status::Error(Code::kPermission,
                         name + " is wavefs's own and read-only", EPERM);
  std::lock_guard<std::mutex> ns(mu_);
  auto old = index_->GetXattr(ino, name);
  if (!old.ok()) {
    if (old.status().code() != Code::kNotFound) return old.status();
    auto a = index_->GetInode(ino);
    if (!a.ok()) return a.status();
    return Status::Error(Code::kNotFound, "no attribute " + name, ENODATA);
  }
  Edit e;
  e.batch.DeleteXattr(ino, name);
  const timespec now = WallNow();
  e.Change(ino, [now](InodeAttr& x) { x.ctime = now; });
  return Commit(&e);
}

}  // namespace wavefs
