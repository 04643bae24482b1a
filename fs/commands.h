// The wavefs commands. Each returns the process exit code and prints at
// most one line on failure ("wavefs: ..."), never a stack dump.
#pragma once

#include <string>

#include "fs/options.h"

namespace wavefs {

// format 0: the store kind's default (4 local, 3 on S3; docs/format.md).
int RunInit(const std::string& store, const std::string& key_file, int format);
int RunMount(MountOptions options);
int RunUnmount(const std::string& mountpoint);
int RunStatus(const std::string& mountpoint, bool watch);
// True when mountpoint is a FUSE mount whose daemon is gone.
bool IsDeadMount(const std::string& mountpoint);
// Lazily unmounts a FUSE mount whose daemon is gone; true on success.
bool DetachStaleMount(const std::string& mountpoint);

}  // namespace wavefs
