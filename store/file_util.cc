#include "store/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>

namespace wavefs {
namespace {

// Distinguishes temporary names of concurrent writers within one process; the
// pid distinguishes processes.
std::atomic<uint64_t> temp_counter{0};

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string TempPathFor(const std::string& path) {
  std::string dir = DirOf(path);
  std::string name = ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(temp_counter.fetch_add(1)) + "." +
                     BaseOf(path);
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// Linux releases the descriptor even when close fails (EINTR included), so
// close is never retried; the error is still worth reporting after writes.
int CloseFd(int fd) { return ::close(fd); }

}  // namespace

Status WriteAll(int fd, std::span<const uint8_t> data,
                const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write " + path);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

namespace {

// Direct I/O needs the buffer, the length and the file offset aligned to the
// logical block size; 4 KiB covers every disk Linux drives today.
constexpr size_t kDirectAlign = 4096;
// Below this a chunk file is written and read whole through the page cache.
// O_DIRECT saves the page cache's kernel time on big chunks (~2 s per GiB
// here), but it makes every write wait for the device: an append to a
// small file (restaged on every close) or a small file of a `tar -x` paid
// a disk round trip for a few KiB.
constexpr size_t kDirectMinBytes = 1 << 20;

// Off only in tests, to run the buffered fallback paths on a filesystem that
// has O_DIRECT.
std::atomic<bool> direct_io_enabled{true};

// Writes data with O_DIRECT where it can: the aligned prefix goes straight
// from the caller's buffer to the disk, the unaligned tail (at most 4 KiB)
// through the page cache. Filesystems without O_DIRECT (some tmpfs, FUSE),
// unaligned buffers and data under kDirectMinBytes take a buffered write.
Status WriteAllDirect(int fd, std::span<const uint8_t> data,
                      const std::string& path) {
  const bool aligned =
      reinterpret_cast<uintptr_t>(data.data()) % kDirectAlign == 0;
  const size_t direct_len = aligned && data.size() >= kDirectMinBytes
                                ? data.size() / kDirectAlign * kDirectAlign
                                : 0;
  if (direct_len > 0 && direct_io_enabled.load(std::memory_order_relaxed)) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_DIRECT) == 0) {
      Status st = WriteAll(fd, data.first(direct_len), path);
      ::fcntl(fd, F_SETFL, flags);
      if (st.ok()) return WriteAll(fd, data.subspan(direct_len), path);
      // EINVAL: this filesystem refuses direct writes after all. Anything
      // else (ENOSPC, EIO) is the answer.
      if (st.sys_errno() != EINVAL) return st;
      if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
        return Status::FromErrno(errno, "rewind " + path);
      }
    }
  }
  return WriteAll(fd, data, path);
}

Status WriteViaTemp(const std::string& path, std::span<const uint8_t> data,
                    unsigned mode, bool durable, bool direct, Env* env) {
  const std::string temp = TempPathFor(path);
  WAVEFS_RETURN_IF_ERROR(env->CreateFile(temp, data, mode, direct));
  auto fail = [&](Status st) {
    (void)env->Unlink(temp);
    return st;
  };
  if (durable) {
    if (Status st = env->SyncPath(temp); !st.ok()) return fail(st);
  }
  if (Status st = env->Rename(temp, path); !st.ok()) return fail(st);
  // The rename is only durable once the directory entry is.
  if (durable) WAVEFS_RETURN_IF_ERROR(env->SyncPath(DirOf(path)));
  return Status::Ok();
}

// Copies every byte of in_fd to out_fd in 1 MiB blocks.
Status CopyFd(int in_fd, int out_fd, const std::string& from,
              const std::string& to) {
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(in_fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read " + from);
    if (n == 0) return Status::Ok();
    WAVEFS_RETURN_IF_ERROR(
        WriteAll(out_fd, {buf.data(), static_cast<size_t>(n)}, to));
  }
}

// Copies the file `from` into `to`, opened O_CREAT with `create_flags`
// (O_EXCL: must be new, removed again on failure; O_TRUNC: replaced).
Status CopyInto(const std::string& from, const std::string& to,
                int create_flags, mode_t mode) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::FromErrno(errno, "open " + from);
  int out =
      ::open(to.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | create_flags, mode);
  if (out < 0) {
    const int err = errno;
    CloseFd(in);
    return Status::FromErrno(err, "create " + to);
  }
  Status st = CopyFd(in, out, from, to);
  CloseFd(in);
  const int rc = CloseFd(out);
  if (st.ok() && rc != 0) st = Status::FromErrno(errno, "close " + to);
  if (!st.ok() && (create_flags & O_EXCL)) ::unlink(to.c_str());
  return st;
}

class PosixEnv : public Env {
 public:
  Status CreateFile(const std::string& path, std::span<const uint8_t> data,
                    unsigned mode, bool direct) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    static_cast<mode_t>(mode));
    if (fd < 0) return Status::FromErrno(errno, "create " + path);
    Status st =
        direct ? WriteAllDirect(fd, data, path) : WriteAll(fd, data, path);
    const int rc = CloseFd(fd);
    if (st.ok() && rc != 0) st = Status::FromErrno(errno, "close " + path);
    if (!st.ok()) ::unlink(path.c_str());
    return st;
  }
  Status CopyFile(const std::string& from, const std::string& to,
                  unsigned mode) override {
    return CopyInto(from, to, O_EXCL, static_cast<mode_t>(mode));
  }
  Status SyncPath(const std::string& path) override { return FsyncPath(path); }
  Status SyncFs(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open " + path);
    const int rc = ::syncfs(fd);
    const int err = errno;
    CloseFd(fd);
    if (rc != 0) return Status::FromErrno(err, "syncfs " + path);
    return Status::Ok();
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Status::FromErrno(errno, "rename " + from + " to " + to);
    }
    return Status::Ok();
  }
  Status Unlink(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) {
      return Status::FromErrno(errno, "unlink " + path);
    }
    return Status::Ok();
  }
  Status MakeDir(const std::string& path, unsigned mode) override {
    if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0) {
      return Status::FromErrno(errno, "mkdir " + path);
    }
    return Status::Ok();
  }
};

}  // namespace

Status Env::CopyFile(const std::string& from, const std::string& to,
                     unsigned mode) {
  std::vector<uint8_t> bytes;
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(from, &bytes));
  return CreateFile(to, bytes, mode, false);
}

Env* Env::Default() {
  static PosixEnv* env = new PosixEnv();
  return env;
}

Status WriteFileDurably(const std::string& path, std::span<const uint8_t> data,
                        unsigned mode, Env* env) {
  Status st = WriteViaTemp(path, data, mode, /*durable=*/true,
                           /*direct=*/false, env);
  return st.ok() ? st : st.Annotate("writing " + path);
}

Status WriteFileAtomically(const std::string& path,
                           std::span<const uint8_t> data, unsigned mode,
                           Env* env) {
  Status st = WriteViaTemp(path, data, mode, /*durable=*/false,
                           /*direct=*/false, env);
  return st.ok() ? st : st.Annotate("writing " + path);
}

Status WriteFileAtomicallyDirect(const std::string& path,
                                 std::span<const uint8_t> data, unsigned mode,
                                 Env* env) {
  Status st = WriteViaTemp(path, data, mode, /*durable=*/false,
                           /*direct=*/true, env);
  return st.ok() ? st : st.Annotate("writing " + path);
}

Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  if (::fsync(fd) != 0) {
    int err = errno;
    CloseFd(fd);
    return Status::FromErrno(err, "fsync " + path);
  }
  if (CloseFd(fd) != 0) return Status::FromErrno(errno, "close " + path);
  return Status::Ok();
}

namespace {

// Reads up to len bytes of fd at offset into buf; fewer only at the end of
// the file (a short read of a regular file means its end, for direct I/O
// too, where reading on from an unaligned offset would fail).
Result<size_t> PreadUpTo(int fd, uint8_t* buf, size_t len, uint64_t offset,
                         const std::string& path) {
  size_t done = 0;
  while (done < len) {
    const size_t want = len - done;
    ssize_t n =
        ::pread(fd, buf + done, want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + path);
    }
    done += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < want) break;
  }
  return done;
}

// Size of an open regular file; EISDIR for a directory.
Result<uint64_t> SizeOfFd(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (S_ISDIR(st.st_mode)) return Status::FromErrno(EISDIR, "read " + path);
  return static_cast<uint64_t>(st.st_size);
}

Status ShortObject(const std::string& path, uint64_t end,
                   std::vector<uint8_t>* out) {
  out->clear();
  return Status::Error(
      Code::kCorrupt,
      path + " ends before byte " + std::to_string(end) + " (short object)");
}

// [offset, offset + len) into out through the page cache.
Status ReadRangeBuffered(int fd, const std::string& path, uint64_t offset,
                         size_t len, std::vector<uint8_t>* out) {
  out->resize(len);
  Result<size_t> got = PreadUpTo(fd, out->data(), len, offset, path);
  if (!got.ok()) return got.status();
  if (*got != len) return ShortObject(path, offset + len, out);
  return Status::Ok();
}

// [offset, offset + len) into out with O_DIRECT: the aligned span around the
// range goes straight from the disk into out, at an aligned position inside
// it, then the range is moved to the front.
Status ReadRangeDirect(int fd, const std::string& path, uint64_t offset,
                       size_t len, std::vector<uint8_t>* out) {
  const uint64_t a_off = offset / kDirectAlign * kDirectAlign;
  const uint64_t a_end =
      (offset + len + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  const size_t a_len = static_cast<size_t>(a_end - a_off);
  // resize keeps the capacity, so a reused buffer does not reallocate.
  out->resize(a_len + kDirectAlign);
  const uintptr_t base = reinterpret_cast<uintptr_t>(out->data());
  uint8_t* p =
      out->data() + (kDirectAlign - base % kDirectAlign) % kDirectAlign;
  Result<size_t> got = PreadUpTo(fd, p, a_len, a_off, path);
  if (!got.ok()) return got.status();
  const size_t skip = static_cast<size_t>(offset - a_off);
  if (*got < skip + len) return ShortObject(path, offset + len, out);
  std::memmove(out->data(), p + skip, len);
  out->resize(len);
  return Status::Ok();
}

// Takes O_DIRECT off fd; true when it is off.
bool ClearDirect(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0;
}

// Bytes [offset, offset + len) of a chunk file (len empty: to its end), with
// O_DIRECT where the filesystem allows it, else through the page cache
// (tmpfs before Linux 6.6, some FUSE filesystems).
Status ReadChunkBytes(const std::string& path, uint64_t offset,
                      std::optional<size_t> len, std::vector<uint8_t>* out) {
  bool direct = direct_io_enabled.load(std::memory_order_relaxed);
  int fd = -1;
  if (direct) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0 && errno != EINVAL)
      return Status::FromErrno(errno, "open " + path);
    direct = fd >= 0;
  }
  if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  if (!len) {
    Result<uint64_t> size = SizeOfFd(fd, path);
    if (!size.ok()) {
      CloseFd(fd);
      return size.status();
    }
    len = *size > offset ? static_cast<size_t>(*size - offset) : 0;
    // A whole small file was written through the page cache: read it so.
    if (direct && *size < kDirectMinBytes) direct = !ClearDirect(fd);
  }
  Status st = direct ? ReadRangeDirect(fd, path, offset, *len, out)
                     : ReadRangeBuffered(fd, path, offset, *len, out);
  // The filesystem opened with O_DIRECT but refuses to read that way.
  if (direct && st.sys_errno() == EINVAL && ClearDirect(fd))
    st = ReadRangeBuffered(fd, path, offset, *len, out);
  CloseFd(fd);
  return st;
}

}  // namespace

Status ReadWholeFile(const std::string& path, std::vector<uint8_t>* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  Result<uint64_t> size = SizeOfFd(fd, path);
  if (!size.ok()) {
    CloseFd(fd);
    return size.status();
  }
  // resize keeps the buffer's capacity, so a reused buffer does not
  // reallocate for every chunk.
  out->resize(static_cast<size_t>(*size));
  Result<size_t> got = PreadUpTo(fd, out->data(), out->size(), 0, path);
  CloseFd(fd);
  if (!got.ok()) return got.status();
  out->resize(*got);  // the file shrank since fstat
  return Status::Ok();
}

Status CopyFileDurably(const std::string& from, const std::string& path,
                       unsigned mode, Env* env) {
  const std::string temp = TempPathFor(path);
  WAVEFS_RETURN_IF_ERROR(env->CopyFile(from, temp, mode));
  Status st = env->SyncPath(temp);
  if (st.ok()) st = env->Rename(temp, path);
  if (!st.ok()) {
    (void)env->Unlink(temp);
    return st.Annotate("writing " + path);
  }
  Status synced = env->SyncPath(DirOf(path));
  return synced.ok() ? synced : synced.Annotate("writing " + path);
}

Status CopyFilePlain(const std::string& from, const std::string& to) {
  return CopyInto(from, to, O_TRUNC, 0600);
}

void SetDirectIoForTesting(bool enabled) { direct_io_enabled.store(enabled); }

Status ReadFileRange(const std::string& path, uint64_t offset, size_t len,
                     std::vector<uint8_t>* out) {
  return ReadChunkBytes(path, offset, len, out);
}

Result<bool> FileHolds(const std::string& path,
                       std::span<const uint8_t> bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  std::vector<uint8_t> piece(64 << 10);
  uint64_t at = 0;
  bool same = true;
  for (;;) {
    Result<size_t> got = PreadUpTo(fd, piece.data(), piece.size(), at, path);
    if (!got.ok()) {
      CloseFd(fd);
      return got.status();
    }
    same = at + *got <= bytes.size() &&
           std::memcmp(piece.data(), bytes.data() + at, *got) == 0;
    at += *got;
    if (!same || *got < piece.size()) break;
  }
  CloseFd(fd);
  return same && at == bytes.size();
}

Status ReadWholeFileDirect(const std::string& path, std::vector<uint8_t>* out) {
  return ReadChunkBytes(path, 0, std::nullopt, out);
}

Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty())
    return Status::Error(Code::kInvalid, "empty directory path");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/" || prefix.back() == '/') continue;
    if (::mkdir(prefix.c_str(), static_cast<mode_t>(mode)) != 0 &&
        errno != EEXIST) {
      return Status::FromErrno(errno, "mkdir " + prefix);
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(errno, "stat " + path);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::FromErrno(ENOTDIR, "mkdir " + path);
  }
  return Status::Ok();
}

Result<uint64_t> FreeBytes(const std::string& path) {
  struct statvfs vfs;
  if (::statvfs(path.c_str(), &vfs) != 0) {
    return Status::FromErrno(errno, "statvfs " + path);
  }
  return static_cast<uint64_t>(vfs.f_bavail) *
         static_cast<uint64_t>(vfs.f_frsize);
}

Result<uint64_t> DeviceOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(errno, "stat " + path);
  }
  return static_cast<uint64_t>(st.st_dev);
}

Status ListDirNames(const std::string& dir, std::vector<std::string>* names) {
  names->clear();
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir " + dir);
  while (true) {
    errno = 0;
    struct dirent* entry = ::readdir(d);
    if (entry == nullptr) {
      const int err = errno;
      ::closedir(d);
      if (err != 0) return Status::FromErrno(err, "readdir " + dir);
      return Status::Ok();
    }
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names->emplace_back(name);
  }
}

}  // namespace wavefs
