// The one mapping from a Status to the errno a FUSE reply carries.
#pragma once

#include <cerrno>

#include "util/status.h"

namespace wavefs {

inline int ErrnoOf(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kExists:
      return EEXIST;
    case Code::kInvalid:
      return EINVAL;
    case Code::kNoSpace:
      return ENOSPC;
    case Code::kBusy:
      return EBUSY;
    case Code::kNotSupported:
      return EOPNOTSUPP;
    case Code::kNotEmpty:
      return ENOTEMPTY;
    case Code::kNotDir:
      return ENOTDIR;
    case Code::kIsDir:
      return EISDIR;
    case Code::kPermission:
      return s.sys_errno() == EPERM ? EPERM : EACCES;
    case Code::kNameTooLong:
      return ENAMETOOLONG;
    case Code::kTooBig:
      return EFBIG;
    case Code::kCorrupt:
    case Code::kIo:
    case Code::kUnavailable:
      return EIO;
  }
  return EIO;
}

}  // namespace wavefs
