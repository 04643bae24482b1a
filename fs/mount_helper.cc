#include "fs/mount_helper.h"

#include <fcntl.h>
#include <libmount.h>
#include <limits.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>

#include "fs/commands.h"
#include "fs/utab.h"

namespace wavefs {
namespace {

constexpr const char* kMountName = "mount.fuse.wavefs";
constexpr const char* kUmountName = "umount.fuse.wavefs";

// Consumed by mount(8), fstab conventions or systemd: they mean nothing to
// the daemon, and mount(8) passes some of them on (`_netdev`, `nofail`,
// `user`, the `noexec,nosuid,nodev` that `user` implies are kernel flags
// below). `rw` is the default.
constexpr std::array<std::string_view, 11> kIgnored = {
    "defaults", "auto",   "noauto", "_netdev", "nofail", "user",
    "users",    "nouser", "owner",  "group",   "rw"};
constexpr std::array<std::string_view, 6> kIgnoredPrefixes = {
    "x-", "X-", "user=", "comment=", "uhelper=", "helper="};

// Mount flags and FUSE mount options libfuse (3.14, lib/mount.c) accepts;
// they reach it as `-o` of `wavefs mount`.
constexpr std::array<std::string_view, 25> kFuseFlags = {"ro",
                                                         "suid",
                                                         "nosuid",
                                                         "dev",
                                                         "nodev",
                                                         "exec",
                                                         "noexec",
                                                         "sync",
                                                         "async",
                                                         "dirsync",
                                                         "atime",
                                                         "noatime",
                                                         "diratime",
                                                         "nodiratime",
                                                         "relatime",
                                                         "norelatime",
                                                         "strictatime",
                                                         "nostrictatime",
                                                         "lazytime",
                                                         "nolazytime",
                                                         "symfollow",
                                                         "nosymfollow",
                                                         "allow_other",
                                                         "auto_unmount",
                                                         "default_permissions"};
constexpr std::array<std::string_view, 8> kFusePrefixes = {
    "fsname=",  "subtype=",   "max_read=",   "blksize=",
    "context=", "fscontext=", "defcontext=", "rootcontext="};

// Only for the helper: sets $WAVEFS_HOME (mounts at boot have no $HOME).
constexpr std::string_view kHomeOption = "wavefs-home";

template <size_t N>
bool OneOf(const std::array<std::string_view, N>& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

template <size_t N>
bool StartsWithOneOf(const std::array<std::string_view, N>& list,
                     std::string_view s) {
  return std::any_of(list.begin(), list.end(),
                     [&](std::string_view p) { return s.starts_with(p); });
}

// Splits mount(8)'s option string at commas outside double quotes
// (libmount allows `name="a,b"`) and drops the quotes.
std::vector<std::string> SplitOptions(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : text) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// libfuse splits its -o values at commas unless escaped with a backslash.
std::string EscapeFuseValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// The source as mountinfo should show it: an existing local path
// canonicalised (what libmount compares fstab's first field with, so
// `mount -a` sees the mount as done), anything else (s3://...) as given.
std::string SourceName(const std::string& spec) {
  std::string path = spec;
  if (path.starts_with("file://")) path = path.substr(7);
  char buf[PATH_MAX];
  if (path.starts_with("/") && ::realpath(path.c_str(), buf) != nullptr)
    return buf;
  return spec;
}

Status Invalid(const std::string& message) {
  return Status::Error(Code::kInvalid, message);
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ' ';
    out += s.find_first_of(" \t'\"") == std::string::npos ? s : "'" + s + "'";
  }
  return out;
}

// Sends stdout to /dev/null: mount(8) and umount(8) are silent on success.
void SilenceStdout() {
  std::fflush(stdout);
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 1);
    close(null);
  }
}

// Whether /proc/self/mountinfo lists `target` as a mount point.
bool IsMountPoint(const std::string& target) {
  libmnt_table* tb = mnt_new_table_from_file("/proc/self/mountinfo");
  if (tb == nullptr) return false;
  const bool found =
      mnt_table_find_target(tb, target.c_str(), MNT_ITER_BACKWARD) != nullptr;
  mnt_unref_table(tb);
  return found;
}

}  // namespace

HelperKind HelperKindOf(const char* argv0) {
  if (argv0 == nullptr) return HelperKind::kNone;
  std::string_view name(argv0);
  if (auto slash = name.rfind('/'); slash != std::string_view::npos)
    name = name.substr(slash + 1);
  if (name == kMountName) return HelperKind::kMount;
  if (name == kUmountName) return HelperKind::kUmount;
  return HelperKind::kNone;
}

Result<MountHelperCall> TranslateMountHelperArgs(
    const CLI::App& mount_cmd, const std::vector<std::string>& argv) {
  // The long options of `wavefs mount`, and whether each takes a value.
  std::map<std::string, bool> takes_value;
  for (const CLI::Option* opt : mount_cmd.get_options()) {
    for (const std::string& name : opt->get_lnames()) {
      if (name == "help") continue;
      takes_value[name] = opt->get_expected_max() != 0;  // flags: 0
    }
  }

  std::vector<std::string> positional, option_strings;
  bool sloppy = false;
  MountHelperCall call;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 2 || a[0] != '-') {
      positional.push_back(a);
      continue;
    }
    for (size_t j = 1; j < a.size(); ++j) {
      const char f = a[j];
      if (f == 'o' || f == 't' || f == 'N') {
        // The value is the rest of this argument or the next argument.
        std::string value = a.substr(j + 1);
        if (value.empty()) {
          if (i + 1 >= argv.size())
            return Invalid(std::string("-") + f + " needs a value");
          value = argv[++i];
        }
        if (f == 'o') option_strings.push_back(value);
        if (f == 't' && value != "fuse.wavefs" && value != "wavefs")
          return Invalid("called for type '" + value +
                         "'; this helper mounts fuse.wavefs");
        if (f == 'N')
          return Invalid("-N (mount in another namespace) is not supported");
        break;
      }
      switch (f) {
        case 's':
          sloppy = true;
          break;
        case 'f':
          call.fake = true;
          break;
        case 'v':
          call.verbose = true;
          break;
        case 'n':
          break;  // no mtab: there is none to write
        case 'r':
          option_strings.push_back("ro");
          break;
        case 'w':
          break;
        default:
          return Invalid(std::string("unknown flag -") + f +
                         " (usage: " + kMountName +
                         " STORE MOUNTPOINT [-sfnvrw] [-o OPTIONS])");
      }
    }
  }
  if (positional.size() != 2)
    return Invalid(std::string("usage: ") + kMountName +
                   " STORE MOUNTPOINT [-sfnvrw] [-o OPTIONS]");

  const std::string& spec = positional[0];
  call.source = SourceName(spec);
  call.target = positional[1];
  call.args = {"wavefs", "mount",
               spec,     positional[1],
               "-o",     "fsname=" + EscapeFuseValue(call.source)};
  for (const std::string& group : option_strings) {
    for (const std::string& opt : SplitOptions(group)) {
      if (OneOf(kIgnored, opt) || StartsWithOneOf(kIgnoredPrefixes, opt))
        continue;
      if (OneOf(kFuseFlags, opt) || StartsWithOneOf(kFusePrefixes, opt)) {
        call.args.push_back("-o");
        call.args.push_back(opt);
        continue;
      }
      const size_t eq = opt.find('=');
      std::string name = opt.substr(0, eq);
      std::replace(name.begin(), name.end(), '_', '-');
      const bool has_value = eq != std::string::npos;
      const std::string value = has_value ? opt.substr(eq + 1) : "";
      if (name == kHomeOption) {
        if (value.empty()) return Invalid("option wavefs-home needs =DIR");
        call.wavefs_home = value;
        setenv("WAVEFS_HOME", value.c_str(), 1);
        continue;
      }
      auto it = takes_value.find(name);
      if (it == takes_value.end()) {
        if (sloppy) {
          std::fprintf(stderr, "%s: ignoring unknown option '%s' (-s)\n",
                       kMountName, opt.c_str());
          continue;
        }
        return Invalid("unknown mount option '" + opt +
                       "' (wavefs options: spill-dir=, meta-dir=, "
                       "key-file=, ... as 'wavefs mount --help' lists them; "
                       "see mount.fuse.wavefs(8))");
      }
      if (it->second && (!has_value || value.empty()))
        return Invalid("mount option '" + name + "' needs a value (" + name +
                       "=VALUE)");
      if (!it->second && has_value)
        return Invalid("mount option '" + name + "' takes no value");
      call.args.push_back("--" + name);
      if (it->second) call.args.push_back(value);
    }
  }
  if (call.verbose)
    std::fprintf(stderr, "%s: %s%s\n", kMountName, Join(call.args).c_str(),
                 call.fake ? " (not run: -f)" : "");
  if (!call.verbose) SilenceStdout();
  return call;
}

int FinishMountHelper(const MountHelperCall& call, int wavefs_exit_code) {
  if (wavefs_exit_code != 0) return wavefs_exit_code == 2 ? 1 : 32;
  char buf[PATH_MAX];
  const std::string target =
      ::realpath(call.target.c_str(), buf) != nullptr ? buf : call.target;
  // Only root may write utab; a user's mount is unmounted with
  // fusermount3 -u or `wavefs unmount` anyway.
  if (geteuid() == 0 && !AddUtabEntry(call.source, target))
    std::fprintf(stderr,
                 "%s: warning: cannot record %s in /run/mount/utab; "
                 "`umount` will not wait for the flush (use `wavefs "
                 "unmount`)\n",
                 kMountName, target.c_str());
  return 0;
}

int RunUmountHelper(const std::vector<std::string>& argv) {
  std::string dir;
  bool lazy = false, verbose = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 2 || a[0] != '-') {
      if (!dir.empty()) {
        std::fprintf(stderr, "%s: usage: %s MOUNTPOINT [-nlfvr]\n", kUmountName,
                     kUmountName);
        return 1;
      }
      dir = a;
      continue;
    }
    for (size_t j = 1; j < a.size(); ++j) {
      const char f = a[j];
      if (f == 't' || f == 'N') {  // type / namespace: the value follows
        if (j + 1 == a.size()) ++i;
        break;
      }
      if (f == 'l') lazy = true;
      if (f == 'v') verbose = true;
      // -n (no mtab), -f (force: a FUSE unmount already aborts nothing a
      // drain needs), -r (remount read-only on failure): nothing to do.
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "%s: usage: %s MOUNTPOINT [-nlfvr]\n", kUmountName,
                 kUmountName);
    return 1;
  }
  char buf[PATH_MAX];
  const std::string target =
      ::realpath(dir.c_str(), buf) != nullptr ? buf : dir;
  if (lazy) {
    // Detached now; the daemon drains and exits once the last user of the
    // mount is gone, and nothing here can wait for that.
    if (umount2(dir.c_str(), MNT_DETACH) == 0 || DetachStaleMount(dir)) {
      if (geteuid() == 0) RemoveUtabEntries(target);
      return 0;
    }
    std::fprintf(stderr, "%s: cannot detach %s: %s\n", kUmountName, dir.c_str(),
                 std::strerror(errno));
    return 32;
  }
  if (!verbose) SilenceStdout();
  // Unmounts, then waits until the daemon has put every pending wave in
  // the store and exited (one line and non-zero when it could not).
  const int rc = RunUnmount(dir);
  // The kernel mount is gone unless unmounting itself failed (busy).
  if (geteuid() == 0 && !IsMountPoint(target)) RemoveUtabEntries(target);
  return rc == 0 ? 0 : 32;
}

}  // namespace wavefs
