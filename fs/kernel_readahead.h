// The kernel's settings for a FUSE mount's backing device (bdi): its
// readahead, and with the writeback cache its dirty-page limit.
//
// The kernel caps a FUSE mount's readahead at its block-device default
// (128 KiB), whatever max_readahead the daemon asks for in FUSE_INIT. Every
// cold read then reaches the daemon in 128 KiB pieces: a 1 MiB read is eight
// requests, and against S3 eight GETs or one shared window. Raising the
// mount's backing-device readahead (/sys/class/bdi/MAJ:MIN/read_ahead_kb,
// root only) makes a 1 MiB read one 1 MiB request, and gives a sequential
// reader 1 MiB requests instead of 128 KiB ones.
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace wavefs {

// The backing-device id ("MAJ:MIN") of the mount at `mountpoint`, from
// /proc/self/mountinfo (no FUSE request: safe before the session loop runs).
Result<std::string> MountDeviceId(const std::string& mountpoint);

// Sets the readahead of the mount at `mountpoint` to `kib` KiB; returns the
// value now in effect. `sysfs_root` is "/sys" except in tests.
Result<uint32_t> SetKernelReadahead(const std::string& mountpoint, uint32_t kib,
                                    const std::string& sysfs_root = "/sys");

// With the writeback cache: lets the kernel hold as many dirty pages of
// the mount as of a local disk's. The kernel gives a FUSE mount a strict
// limit of 1 % of the dirty threshold (~48 MiB here) and writes back
// whatever exceeds it at once, in whatever order its sweep finds: a chunk
// the daemon had sealed is then fetched, merged and sealed again. fio's
// random writes over 128 MiB were sealed 3.4 times over (441 MB put for
// 128 MiB). Turning the strict limit off (strict_limit 0, Linux >= 6.2) and
// capping the share at `max_ratio` % lets the pages wait for close or
// fsync, which sends them in order: 1.0 time over, fio 0.8 s instead of
// 1.5 s. Dirty pages are the kernel's page cache, not the daemon's memory.
// Writes MAJ:MIN/strict_limit and max_ratio under sysfs_root/class/bdi.
Status RelaxDirtyLimit(const std::string& mountpoint, uint32_t max_ratio,
                       const std::string& sysfs_root = "/sys");

}  // namespace wavefs
