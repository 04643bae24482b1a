// Status and Result<T>: how every layer below fs/ reports failure.
//
// A Status carries a code, a human-readable message, the original errno (0 when
// the failure did not come from a system call) and whether retrying the same
// operation could succeed (a timeout, a full disk that uploads may free, an
// unreachable store). fs/ maps a Status to an errno in exactly one place
// (fs/errno_map.h). No exceptions cross a layer boundary.
//
// Thread safety: values; copy freely.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace wavefs {

enum class Code {
  kOk = 0,
  kNotFound,      // ENOENT
  kExists,        // EEXIST
  kInvalid,       // EINVAL: bad argument or bad input
  kCorrupt,       // EIO: data failed verification (AEAD tag, address, format)
  kIo,            // EIO: an I/O call failed
  kNoSpace,       // ENOSPC
  kUnavailable,   // EIO at the FUSE edge; a store that cannot be reached
  kBusy,          // EBUSY: a lock held by someone else
  kNotSupported,  // EOPNOTSUPP
  kNotEmpty,      // ENOTEMPTY
  kNotDir,        // ENOTDIR
  kIsDir,         // EISDIR
  kPermission,    // EACCES / EPERM
  kNameTooLong,   // ENAMETOOLONG
  kTooBig,        // EFBIG
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(Code code, std::string message, int sys_errno = 0,
                      bool retryable = false) {
    Status s;
    s.code_ = code;
    s.message_ = std::move(message);
    s.sys_errno_ = sys_errno;
    s.retryable_ = retryable;
    return s;
  }
  // Wraps a failed system call: `context` says what was being done
  // ("open /x/y"), `err` is the errno it returned. Maps the errno to a Code.
  static Status FromErrno(int err, const std::string& context);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return sys_errno_; }
  bool retryable() const { return retryable_; }
  // "Code: message (errno text)".
  std::string ToString() const;
  // Same status with `context + ": "` put before the message.
  Status Annotate(const std::string& context) const {
    Status s = *this;
    s.message_ = context + ": " + message_;
    return s;
  }
  // Ignores a status on purpose (best-effort clean-up paths).
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int sys_errno_ = 0;
  bool retryable_ = false;
};

// A value or the Status that says why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

inline const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not found";
    case Code::kExists:
      return "exists";
    case Code::kInvalid:
      return "invalid";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kIo:
      return "io error";
    case Code::kNoSpace:
      return "no space";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kBusy:
      return "busy";
    case Code::kNotSupported:
      return "not supported";
    case Code::kNotEmpty:
      return "not empty";
    case Code::kNotDir:
      return "not a directory";
    case Code::kIsDir:
      return "is a directory";
    case Code::kPermission:
      return "permission denied";
    case Code::kNameTooLong:
      return "name too long";
    case Code::kTooBig:
      return "too big";
  }
  return "unknown";
}

inline Status Status::FromErrno(int err, const std::string& context) {
  Code code = Code::kIo;
  bool retryable = false;
  switch (err) {
    case ENOENT:
      code = Code::kNotFound;
      break;
    case EEXIST:
      code = Code::kExists;
      break;
    case EINVAL:
      code = Code::kInvalid;
      break;
    case ENOSPC:
    case EDQUOT:
      code = Code::kNoSpace;
      retryable = true;
      break;
    case EACCES:
    case EPERM:
      code = Code::kPermission;
      break;
    case ENOTEMPTY:
      code = Code::kNotEmpty;
      break;
    case ENOTDIR:
      code = Code::kNotDir;
      break;
    case EISDIR:
      code = Code::kIsDir;
      break;
    case ENAMETOOLONG:
      code = Code::kNameTooLong;
      break;
    case EBUSY:
    case EWOULDBLOCK:
      code = Code::kBusy;
      break;
    case EINTR:
    case ETIMEDOUT:
      code = Code::kIo;
      retryable = true;
      break;
    default:
      break;
  }
  return Error(code, context + ": " + std::strerror(err), err, retryable);
}

inline std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

// Returns early from the enclosing function when `expr` is not ok.
#define WAVEFS_RETURN_IF_ERROR(expr) \
  do {                               \
    ::wavefs::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)

}  // namespace wavefs
