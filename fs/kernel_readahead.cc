#include "fs/kernel_readahead.h"

#include <libmount.h>
#include <sys/sysmacros.h>

#include <fstream>

namespace wavefs {

Result<std::string> MountDeviceId(const std::string& mountpoint) {
  libmnt_table* tb = mnt_new_table_from_file("/proc/self/mountinfo");
  if (tb == nullptr)
    return Status::Error(Code::kIo, "cannot read /proc/self/mountinfo");
  // The newest mount on that path is ours.
  libmnt_fs* fs =
      mnt_table_find_target(tb, mountpoint.c_str(), MNT_ITER_BACKWARD);
  std::string id;
  if (fs != nullptr) {
    const dev_t dev = mnt_fs_get_devno(fs);
    id = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  }
  mnt_unref_table(tb);
  if (id.empty())
    return Status::Error(Code::kNotFound, mountpoint + " is not a mount point");
  return id;
}

namespace {

// Writes value to a sysfs file and reads back what is in effect.
Result<uint32_t> WriteBdiValue(const std::string& path, uint32_t value) {
  {
    std::ofstream out(path);
    if (!out) return Status::FromErrno(errno, "open " + path);
    out << value << "\n";
    out.flush();
    if (!out) return Status::FromErrno(errno, "write " + path);
  }
  std::ifstream in(path);
  uint32_t now = 0;
  if (!(in >> now)) return Status::Error(Code::kIo, "cannot read " + path);
  return now;
}

Result<std::string> BdiDir(const std::string& mountpoint,
                           const std::string& sysfs_root) {
  auto id = MountDeviceId(mountpoint);
  if (!id.ok()) return id.status();
  return sysfs_root + "/class/bdi/" + *id;
}

}  // namespace

Result<uint32_t> SetKernelReadahead(const std::string& mountpoint, uint32_t kib,
                                    const std::string& sysfs_root) {
  auto dir = BdiDir(mountpoint, sysfs_root);
  if (!dir.ok()) return dir.status();
  return WriteBdiValue(*dir + "/read_ahead_kb", kib);
}

Status RelaxDirtyLimit(const std::string& mountpoint, uint32_t max_ratio,
                       const std::string& sysfs_root) {
  auto dir = BdiDir(mountpoint, sysfs_root);
  if (!dir.ok()) return dir.status();
  // The ratio first: the moment the strict limit goes, the share is capped.
  auto ratio = WriteBdiValue(*dir + "/max_ratio", max_ratio);
  if (!ratio.ok()) return ratio.status();
  auto strict = WriteBdiValue(*dir + "/strict_limit", 0);
  if (!strict.ok()) return strict.status();
  if (*ratio != max_ratio || *strict != 0)
    return Status::Error(Code::kIo,
                         "the kernel kept max_ratio " + std::to_string(*ratio) +
                             ", strict_limit " + std::to_string(*strict));
  return Status::Ok();
}

}  // namespace wavefs
