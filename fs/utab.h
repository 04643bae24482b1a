// The userspace mount table (/run/mount/utab) entry that makes umount(8)
// run umount.fuse.wavefs.
//
// Why: for a mount without a utab entry, umount(8) of util-linux 2.38 skips
// /proc/self/mountinfo and takes the type from statfs(2), which says "fuse"
// without the subtype; it then looks for /sbin/umount.fuse, finds none,
// and unmounts directly, so `umount DIR` returned before the daemon had
// flushed. mount(8) writes a utab entry only when the options hold
// userspace ones (x-*, _netdev, nofail, user, ...), so the mount helper
// records one of its own (OPTS=x-wavefs) and the umount helper removes the
// entries of its mount point. Through libmount, which locks the file.
#pragma once

#include <string>

namespace wavefs {

// Records `target` (absolute) as mounted from `source`; replaces entries
// left for `target` by a mount that was not unmounted through umount(8).
// False (and nothing but a warning to give) when utab cannot be written.
bool AddUtabEntry(const std::string& source, const std::string& target);

// Removes every utab entry for `target`.
void RemoveUtabEntries(const std::string& target);

}  // namespace wavefs
