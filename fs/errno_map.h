// The one mapping from a Status to the errno a FUSE reply carries.
//
// The code decides; the errno a failed system call saved is kept where it
// says more than the code (EROFS, EMFILE, ENOMEM, EDQUOT are not EIO, and a
// missing extended attribute is ENODATA, not ENOENT). Unknown: EIO.
#pragma once

#include <cerrno>

#include "util/status.h"

namespace wavefs {

inline int ErrnoOf(const Status& s) {
  const int saved = s.sys_errno();
  switch (s.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return saved == ENODATA ? ENODATA : ENOENT;
    case Code::kExists:
      return EEXIST;
    case Code::kInvalid:
      return EINVAL;
    case Code::kNoSpace:
      return saved == EDQUOT ? EDQUOT : ENOSPC;
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
      return saved == EPERM ? EPERM : EACCES;
    case Code::kNameTooLong:
      return ENAMETOOLONG;
    case Code::kTooBig:
      return saved == E2BIG ? E2BIG : EFBIG;
    case Code::kIo:
    case Code::kUnavailable:
      switch (saved) {
        case EROFS:
        case EMFILE:
        case ENFILE:
        case ENOMEM:
        case EDQUOT:
        case ENOSPC:
        case EAGAIN:
        case ENXIO:
        case EOPNOTSUPP:
        case EBADF:
        case EFBIG:
          return saved;
        default:
          return EIO;
      }
    case Code::kCorrupt:
      return EIO;
  }
  return EIO;
}

}  // namespace wavefs
