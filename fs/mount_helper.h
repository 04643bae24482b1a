// wavefs as mount(8)'s and umount(8)'s helper for the type `fuse.wavefs`.
//
// Why a helper of our own instead of the mount.fuse3 convention: mount.fuse3
// would run `wavefs STORE MOUNTPOINT -o OPTS`, which clashes with wavefs's
// subcommands, and would hand every wavefs option to libfuse as an unknown
// FUSE option. Being the helper ourselves, each `-o name=value` becomes
// `--name value` of `wavefs mount` (looked up among the options the `mount`
// subcommand declares, so a new long option is expressible at once), the
// options mount(8) and systemd consume are dropped, and a typo is a one-line
// error. The same binary installed (as a link) under these names:
//
//   /sbin/mount.fuse.wavefs  SPEC DIR [-sfnvrw] [-N NS] [-t TYPE] [-o OPTS]
//   /sbin/umount.fuse.wavefs DIR [-nlfvr] [-t TYPE]
//
// libmount looks helpers up in /sbin, /sbin/fs.d and /sbin/fs only (not
// $PATH). The umount helper makes `umount DIR` wait, like `wavefs unmount`,
// until the daemon has put every pending wave in the store.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "util/status.h"

namespace wavefs {

enum class HelperKind { kNone, kMount, kUmount };

// From the name the binary was started under (argv[0]'s last component).
HelperKind HelperKindOf(const char* argv0);

// A mount(8) call translated into a `wavefs mount` command line.
struct MountHelperCall {
  std::vector<std::string> args;  // "wavefs", "mount", STORE, DIR, ...
  bool fake = false;              // -f: check everything, mount nothing
  bool verbose = false;           // -v: show the wavefs command line
  std::string wavefs_home;        // -o wavefs-home=DIR ($WAVEFS_HOME)
  std::string source;             // as mountinfo shows it (fsname)
  std::string target;             // the mount point as given
};

// Translates mount(8)'s helper arguments (argv[0] included). mount_cmd is
// the `wavefs mount` subcommand, whose long options are the accepted
// `-o name=value` options (`name_with_underscores` works too). kInvalid
// with a one-line message for an unknown option or a bad invocation;
// under -s (sloppy) unknown options are warned about and dropped.
// Sets $WAVEFS_HOME for -o wavefs-home=DIR; silences stdout unless -v.
Result<MountHelperCall> TranslateMountHelperArgs(
    const CLI::App& mount_cmd, const std::vector<std::string>& argv);

// Runs as umount.fuse.wavefs (argv[0] included); returns the exit code.
int RunUmountHelper(const std::vector<std::string>& argv);

// After `wavefs mount` returned wavefs_exit_code: records the mount in
// utab (fs/utab.h) so that umount(8) runs umount.fuse.wavefs, and returns
// the exit code mount(8) documents: 0 success, 1 bad invocation (wavefs's
// 2), 32 mount failure (wavefs's 1).
int FinishMountHelper(const MountHelperCall& call, int wavefs_exit_code);

}  // namespace wavefs
