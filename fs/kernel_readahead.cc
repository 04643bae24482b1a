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

Result<uint32_t> SetKernelReadahead(const std::string& mountpoint, uint32_t kib,
                                    const std::string& sysfs_root) {
  auto id = MountDeviceId(mountpoint);
  if (!id.ok()) return id.status();
  const std::string path = sysfs_root + "/class/bdi/" + *id + "/read_ahead_kb";
  {
    std::ofstream out(path);
    if (!out) return Status::FromErrno(errno, "open " + path);
    out << kib << "\n";
    out.flush();
    if (!out) return Status::FromErrno(errno, "write " + path);
  }
  std::ifstream in(path);
  uint32_t now = 0;
  if (!(in >> now)) return Status::Error(Code::kIo, "cannot read " + path);
  return now;
}

}  // namespace wavefs
