#include "fs/share_command.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include "chunker/crypto.h"
#include "chunker/wfmap.h"
#include "fs/options.h"
#include "fs/share_service.h"
#include "store/file_util.h"
#include "store/store_config.h"
#include "store/store_location.h"

namespace wavefs {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "wavefs: %s\n", message.c_str());
  return 1;
}

std::string Mib(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  return b;
}

// Closes a descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// fgetxattr into a string of at most `max` bytes; -1 with errno on failure.
ssize_t GetAttr(int fd, const std::string& name, size_t max, std::string* out) {
  out->assign(max, '\0');
  ssize_t n = fgetxattr(fd, name.c_str(), out->data(), out->size());
  out->resize(n < 0 ? 0 : static_cast<size_t>(n));
  return n;
}

// Reads every page of a share's .wfmap through the daemon.
Result<std::string> ReadSharePages(int fd, const std::string& id_hex) {
  std::string all, page;
  for (uint64_t n = 0;; ++n) {
    const std::string name =
        std::string(kXattrSharePrefix) + id_hex + "." + std::to_string(n);
    if (GetAttr(fd, name, ShareService::kPageSize, &page) < 0)
      return Status::FromErrno(errno, "read " + name);
    all += page;
    if (page.size() < ShareService::kPageSize) return all;
  }
}

bool WriteAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Mount points of every wavefs mount (fstype fuse.wavefs) of this machine.
std::vector<std::string> WavefsMounts() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    if (line.compare(sep + 3, 12, "fuse.wavefs ") != 0) continue;
    // Field 5 is the mount point, with spaces etc. as octal escapes.
    size_t pos = 0;
    for (int f = 0; f < 4 && pos != std::string::npos; ++f)
      pos = line.find(' ', pos + 1);
    if (pos == std::string::npos) continue;
    const auto end = line.find(' ', pos + 1);
    std::string raw = line.substr(pos + 1, end - pos - 1), mnt;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\\' && i + 3 < raw.size()) {
        mnt.push_back(
            static_cast<char>(std::stoi(raw.substr(i + 1, 3), nullptr, 8)));
        i += 3;
      } else {
        mnt.push_back(raw[i]);
      }
    }
    out.push_back(mnt);
  }
  return out;
}

}  // namespace

int RunShare(const ShareArgs& a) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  if (a.output.empty() && isatty(1))
    return Fail(
        "the map is binary: redirect it ('wavefs share FILE > FILE.wfmap') "
        "or use -o FILE.wfmap");
  Fd fd(open(a.file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0)
    return Fail(Status::FromErrno(errno, "open " + a.file).message());
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return Fail(a.file + " is not a regular file");
  std::string state;
  if (GetAttr(fd.get(), "user.wavefs.state", 64, &state) < 0)
    return Fail(a.file + " is not in a wavefs mount");

  ShareId id;
  randombytes_buf(id.data(), id.size());
  const std::string id_hex = IdToHex(id);
  if (fsetxattr(fd.get(), kXattrShare, id_hex.data(), id_hex.size(), 0) != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM)
      return Fail("cannot share " + a.file +
                  ": sharing needs write access to the file");
    return Fail(Status::FromErrno(err, "share " + a.file).message() +
                " (details in the daemon's log)");
  }
  // From here on the chunks are pinned: undo that on any failure.
  auto undo = [&](const std::string& why) {
    if (fsetxattr(fd.get(), kXattrUnshare, id_hex.data(), id_hex.size(), 0) !=
        0)
      return Fail(why + "; the share " + id_hex +
                  " could not be undone: run 'wavefs unshare " + id_hex + "'");
    return Fail(why);
  };
  auto bytes = ReadSharePages(fd.get(), id_hex);
  if (!bytes.ok()) return undo(bytes.status().message());
  auto map = DecodeWfmap(*bytes);
  if (!map.ok())
    return undo("the daemon sent a bad map: " + map.status().message());
  uint64_t data_chunks = 0;
  for (const auto& [i, ref] : map->map.chunks) data_chunks += ref.hole ? 0 : 1;

  // The map is only useful once every chunk it names is in the store.
  if (!a.no_wait) {
    const bool tty = isatty(2);
    auto last = std::chrono::steady_clock::now() - std::chrono::hours(1);
    std::string pending;
    while (true) {
      if (GetAttr(fd.get(),
                  std::string(kXattrSharePrefix) + id_hex + ".pending", 32,
                  &pending) < 0)
        return undo(
            Status::FromErrno(errno, "read the upload state of " + a.file)
                .message());
      if (pending == "0") break;
      const auto now = std::chrono::steady_clock::now();
      if (tty || now - last > std::chrono::seconds(10)) {
        std::fprintf(stderr,
                     "%swavefs: share: waiting for %s of %llu chunks to "
                     "reach the store%s",
                     tty ? "\r" : "", pending.c_str(),
                     static_cast<unsigned long long>(data_chunks),
                     tty ? "   " : "\n");
        last = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
  }

  if (a.output.empty()) {
    if (!WriteAll(1, *bytes) || (fsync(1) != 0 && errno != EINVAL &&
                                 errno != EROFS && errno != ENOTSUP))
      return undo("cannot write the map to stdout: " +
                  std::string(std::strerror(errno)));
  } else {
    Status s = WriteFileDurably(
        a.output,
        {reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()}, 0600);
    if (!s.ok()) return undo(s.message());
  }
  std::fprintf(stderr,
               "wavefs: shared %s (%s, %llu chunks pinned; share id %s); "
               "'wavefs unshare' releases it\n",
               a.file.c_str(), Mib(map->map.size).c_str(),
               static_cast<unsigned long long>(DataAddresses(map->map).size()),
               id_hex.c_str());
  return 0;
}

int RunUnshare(const std::string& target, const std::string& mount) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  std::string id_hex;
  struct stat st;
  if (stat(target.c_str(), &st) == 0) {
    std::vector<uint8_t> bytes;
    if (Status s = ReadWholeFile(target, &bytes); !s.ok())
      return Fail(s.message());
    auto map = DecodeWfmap(
        {reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    if (!map.ok()) return Fail(target + ": " + map.status().message());
    id_hex = IdToHex(map->share_id);
  } else if (IdFromHex(target).ok()) {
    id_hex = target;
  } else {
    return Fail(target + " is neither a .wfmap file nor a share id");
  }
  const std::vector<std::string> mounts =
      mount.empty() ? WavefsMounts() : std::vector<std::string>{mount};
  if (mounts.empty()) return Fail("no wavefs mount is running");
  std::string last_error;
  std::vector<std::string> dead;
  for (const std::string& m : mounts) {
    if (lsetxattr(m.c_str(), kXattrUnshare, id_hex.data(), id_hex.size(), 0) ==
        0) {
      std::printf(
          "wavefs: unshared %s on %s; its chunks are no longer pinned\n",
          id_hex.c_str(), m.c_str());
      return 0;
    }
    const int err = errno;
    // ENODATA: not this mount's share. EPERM: a daemon without sharing
    // (older wavefs), which cannot hold it either; said only when asked.
    // ENOTCONN: a mount whose daemon is gone (killed, crashed) cannot hold a
    // live share; when the mounts were found rather than named, it must not
    // hide the answer of the live ones, so it is only mentioned.
    if (err == ENOTCONN && mount.empty()) {
      dead.push_back(m);
      continue;
    }
    if (err != ENODATA && (err != EPERM || !mount.empty()))
      last_error = Status::FromErrno(err, "unshare on " + m).message();
  }
  if (!last_error.empty()) return Fail(last_error);
  std::string msg = "no share " + id_hex + " on " +
                    (mount.empty() ? "any running wavefs mount" : mount);
  if (!dead.empty()) {
    msg += " (daemon gone, not searched: ";
    for (size_t i = 0; i < dead.size(); ++i) msg += (i ? ", " : "") + dead[i];
    msg += "; 'wavefs unmount' and mount it again)";
  }
  return Fail(msg);
}

namespace {

// Where `get` writes until every chunk is in: a hidden temporary file next
// to DEST, removed unless Commit() renamed it.
class TempOutput {
 public:
  ~TempOutput() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }
  Status Create(const std::string& dest) {
    const auto slash = dest.rfind('/');
    dir_ = slash == std::string::npos ? "." : dest.substr(0, slash + 1);
    const std::string base =
        slash == std::string::npos ? dest : dest.substr(slash + 1);
    std::string tmpl = (slash == std::string::npos ? "" : dir_) + "." + base +
                       ".wavefs-get.XXXXXX";
    fd_ = mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd_ < 0)
      return Status::FromErrno(errno, "create a file next to " + dest);
    path_ = tmpl;
    const mode_t mask = umask(0);
    umask(mask);
    fchmod(fd_, 0666 & ~mask);
    return Status::Ok();
  }
  int fd() const { return fd_; }
  Status Commit(const std::string& dest, uint64_t size) {
    if (ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return Status::FromErrno(errno, "set the size of " + path_);
    if (fsync(fd_) != 0) return Status::FromErrno(errno, "fsync " + path_);
    if (close(std::exchange(fd_, -1)) != 0)
      return Status::FromErrno(errno, "close " + path_);
    if (rename(path_.c_str(), dest.c_str()) != 0)
      return Status::FromErrno(errno, "rename to " + dest);
    path_.clear();
    return FsyncPath(dir_);
  }

 private:
  int fd_ = -1;
  std::string path_;
  std::string dir_;
};

std::string ByteRange(uint64_t index, const ChunkRef& ref) {
  const uint64_t start = index * kChunkSize;
  return "bytes " + std::to_string(start) + "-" +
         std::to_string(start + ref.length - 1);
}

}  // namespace

int RunGet(const GetArgs& a) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  std::vector<uint8_t> raw;
  if (Status s = ReadWholeFile(a.wfmap, &raw); !s.ok())
    return Fail(s.message());
  auto w = DecodeWfmap({reinterpret_cast<const char*>(raw.data()), raw.size()});
  if (!w.ok()) return Fail(a.wfmap + ": " + w.status().message());
  raw = {};

  struct stat st;
  if (stat(a.dest.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Fail(a.dest + " is a directory");
    if (!a.force) return Fail(a.dest + " exists (use --force to replace it)");
  }
  auto where =
      ResolveStore(a.store, a.s3_endpoint, a.s3_region, a.s3_path_style);
  if (!where.ok()) return Fail(where.status().message());
  auto cfg = ReadStoreConfigAt(*where);
  if (!cfg.ok()) return Fail(cfg.status().message());
  if (cfg->store_id != IdToHex(w->store_id))
    return Fail(a.wfmap + " is a map of store " + IdToHex(w->store_id) +
                ", but " + where->Describe() + " is store " + cfg->store_id);
  if (cfg->chunk_format() != w->chunk_format)
    return Fail(a.wfmap + " and " + where->Describe() +
                " disagree on the chunk format");
  auto store = OpenChunkStore(*where, cfg->chunk_format());
  if (!store.ok()) return Fail(store.status().message());

  TempOutput out;
  if (Status s = out.Create(a.dest); !s.ok()) return Fail(s.message());
  const DataMap& map = w->map;
  uint64_t total = 0, done = 0;
  for (const auto& [i, ref] : map.chunks) total += ref.hole ? 0 : ref.length;
  const bool tty = isatty(2);
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  std::vector<uint8_t> buf;
  size_t n = 0;
  for (const auto& [index, ref] : map.chunks) {
    ++n;
    if (ref.hole) continue;
    const std::string where_in = a.wfmap + ": chunk " + std::to_string(index) +
                                 " (" + ByteRange(index, ref) + ")";
    Status s = (*store)->Get(ref.address, &buf);
    if (s.code() == Code::kNotFound)
      return Fail(where_in + " is missing from the store " +
                  ToHex(ref.address));
    if (!s.ok()) return Fail(where_in + ": " + s.message());
    s = OpenChunk(ref, w->chunk_format, buf.data(), buf.size(), true);
    if (!s.ok())
      return Fail(where_in + " is damaged in the store: " + s.message());
    const off_t off = static_cast<off_t>(index * kChunkSize);
    size_t put = 0;
    while (put < ref.length) {
      ssize_t r = pwrite(out.fd(), buf.data() + put, ref.length - put,
                         off + static_cast<off_t>(put));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        return Fail(Status::FromErrno(errno, "write " + a.dest).message());
      put += static_cast<size_t>(r);
    }
    done += ref.length;
    const auto now = std::chrono::steady_clock::now();
    if (tty && now - last > std::chrono::milliseconds(250)) {
      const double secs = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr,
                   "\rwavefs: get: %zu/%zu chunks, %s of %s, %.1f MiB/s   ", n,
                   map.chunks.size(), Mib(done).c_str(), Mib(total).c_str(),
                   secs > 0 ? done / 1048576.0 / secs : 0.0);
      last = now;
    }
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (Status s = out.Commit(a.dest, map.size); !s.ok())
    return Fail(s.message());
  std::fprintf(stderr, "wavefs: got %s (%s) from %s\n", a.dest.c_str(),
               Mib(map.size).c_str(), where->Describe().c_str());
  return 0;
}

}  // namespace wavefs
