// The FUSE low-level adapter: one function per operation, each doing its
// work through Filesystem and replying exactly once (errors through
// ErrnoOf, with one log line).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <string>

#include "fs/filesystem.h"

namespace wavefs {

struct FuseContext {
  Filesystem* fs = nullptr;
  // Appended to user.wavefs.stats (pid, directories, store).
  std::string stats_extra;
};

// The operation table; userdata of the session must be a FuseContext*.
fuse_lowlevel_ops MakeFuseOps();

}  // namespace wavefs
