// `wavefs gc` and `wavefs fsck` (fs/gc_command.cc). Each returns the exit
// code: gc 0 ok, 1 failed; fsck as fsck(8): 0 clean, 1 errors corrected,
// 4 errors left uncorrected, 8 operational error (16, usage, is main's).
#pragma once

#include <string>

namespace wavefs {

struct MaintOptions {
  std::string command;    // "gc" or "fsck", for messages
  std::string target;     // a mount point, or STORE when not mounted
  std::string meta_dir;   // offline: default $WAVEFS_HOME/<id>/meta
  std::string spill_dir;  // offline: default $WAVEFS_HOME/<id>/spill
  bool dry_run = false;   // gc
  bool verify = false;    // fsck
  bool repair = false;    // fsck
};

int RunGc(const MaintOptions& options);
int RunFsck(const MaintOptions& options);

}  // namespace wavefs
