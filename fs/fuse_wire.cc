#include "fs/fuse_wire.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "store/file_util.h"

namespace wavefs {
namespace {

static_assert((kKillSuidGidFlag &
               (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND |
                O_NONBLOCK | O_DSYNC | O_SYNC | O_ASYNC | O_DIRECT |
                O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC |
                O_PATH | O_TMPFILE)) == 0,
              "the kill marker must not be an open flag");

// Sets kKillSuidGidFlag in the 32-bit open-flags field at flags_at when the
// 32-bit field at kill_at has kill_bit; both offsets are into arg.
void MarkKill(uint8_t* arg, size_t argn, size_t kill_at, uint32_t kill_bit,
              size_t flags_at) {
  if (argn < std::max(kill_at, flags_at) + sizeof(uint32_t)) return;
  uint32_t kill = 0;
  std::memcpy(&kill, arg + kill_at, sizeof kill);
  if (!(kill & kill_bit)) return;
  uint32_t flags = 0;
  std::memcpy(&flags, arg + flags_at, sizeof flags);
  flags |= kKillSuidGidFlag;
  std::memcpy(arg + flags_at, &flags, sizeof flags);
}

// The pipe a FUSE thread splices a request into before libfuse's own pipe.
struct ThreadPipe {
  int r = -1;
  int w = -1;
  size_t size = 0;
  ~ThreadPipe() { Close(); }
  void Close() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    r = w = -1;
    size = 0;
  }
  bool Ready(size_t len) {
    if (r < 0) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) return false;
      r = p[0];
      w = p[1];
      size = static_cast<size_t>(::fcntl(r, F_GETPIPE_SZ));
    }
    if (size < len) {
      const int got = ::fcntl(r, F_SETPIPE_SZ, static_cast<int>(len));
      if (got < 0) return false;
      size = static_cast<size_t>(got);
    }
    return true;
  }
};

thread_local ThreadPipe tls_pipe;

// What a request read into memory filled of this thread's libfuse buffer
// (a FUSE thread keeps one for its life), so that a big write read there
// does not stay resident: past kKeepResident it is given back before the
// thread's next request, when the buffer holds nothing live.
struct TouchedBuffer {
  uint8_t* buf = nullptr;
  size_t n = 0;
};
thread_local TouchedBuffer tls_touched;
constexpr size_t kKeepResident = 64u << 10;  // every request but writes

void GiveBackTouched() {
  TouchedBuffer& t = tls_touched;
  if (t.n <= kKeepResident) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<uintptr_t>(t.buf);
  const uintptr_t from = (base + kKeepResident + page - 1) & ~(page - 1);
  const uintptr_t to = (base + t.n) & ~(page - 1);
  // Whole pages inside malloc's private anonymous memory: they read as
  // zeros afterwards, and libfuse writes before it reads.
  if (to > from)
    ::madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
  t.n = 0;
}

bool ReadFull(int fd, uint8_t* buf, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The name of a FUSE opcode as linux/fuse.h spells it, without FUSE_.
std::string OpcodeName(size_t op) {
  switch (op) {
#define WAVEFS_OPCODE(name) \
  case FUSE_##name:         \
    return #name;
    WAVEFS_OPCODE(LOOKUP)
    WAVEFS_OPCODE(FORGET)
    WAVEFS_OPCODE(GETATTR)
    WAVEFS_OPCODE(SETATTR)
    WAVEFS_OPCODE(READLINK)
    WAVEFS_OPCODE(SYMLINK)
    WAVEFS_OPCODE(MKNOD)
    WAVEFS_OPCODE(MKDIR)
    WAVEFS_OPCODE(UNLINK)
    WAVEFS_OPCODE(RMDIR)
    WAVEFS_OPCODE(RENAME)
    WAVEFS_OPCODE(LINK)
    WAVEFS_OPCODE(OPEN)
    WAVEFS_OPCODE(READ)
    WAVEFS_OPCODE(WRITE)
    WAVEFS_OPCODE(STATFS)
    WAVEFS_OPCODE(RELEASE)
    WAVEFS_OPCODE(FSYNC)
    WAVEFS_OPCODE(SETXATTR)
    WAVEFS_OPCODE(GETXATTR)
    WAVEFS_OPCODE(LISTXATTR)
    WAVEFS_OPCODE(REMOVEXATTR)
    WAVEFS_OPCODE(FLUSH)
    WAVEFS_OPCODE(INIT)
    WAVEFS_OPCODE(OPENDIR)
    WAVEFS_OPCODE(READDIR)
    WAVEFS_OPCODE(RELEASEDIR)
    WAVEFS_OPCODE(FSYNCDIR)
    WAVEFS_OPCODE(GETLK)
    WAVEFS_OPCODE(SETLK)
    WAVEFS_OPCODE(SETLKW)
    WAVEFS_OPCODE(ACCESS)
    WAVEFS_OPCODE(CREATE)
    WAVEFS_OPCODE(INTERRUPT)
    WAVEFS_OPCODE(BMAP)
    WAVEFS_OPCODE(DESTROY)
    WAVEFS_OPCODE(IOCTL)
    WAVEFS_OPCODE(POLL)
    WAVEFS_OPCODE(NOTIFY_REPLY)
    WAVEFS_OPCODE(BATCH_FORGET)
    WAVEFS_OPCODE(FALLOCATE)
    WAVEFS_OPCODE(READDIRPLUS)
    WAVEFS_OPCODE(RENAME2)
    WAVEFS_OPCODE(LSEEK)
    WAVEFS_OPCODE(COPY_FILE_RANGE)
#undef WAVEFS_OPCODE
    default:
      return "op" + std::to_string(op);
  }
}

}  // namespace

std::string FuseWire::RequestCounts() const {
  std::string out;
  for (size_t op = 0; op < requests_.size(); ++op) {
    const uint64_t n = requests_[op].load(std::memory_order_relaxed);
    if (n == 0) continue;
    out += "requests_" +
           (op == kOpcodes ? std::string("other") : OpcodeName(op)) + "=" +
           std::to_string(n) + "\n";
  }
  return out;
}

bool TakeKillFlag(int* flags) {
  const bool kill = (static_cast<uint32_t>(*flags) & kKillSuidGidFlag) != 0;
  *flags = static_cast<int>(static_cast<uint32_t>(*flags) & ~kKillSuidGidFlag);
  return kill;
}

void FuseWire::OnRequest(void* buf, size_t n) {
  fuse_in_header h;
  if (n < sizeof h) return;
  std::memcpy(&h, buf, sizeof h);
  if (h.len < sizeof h) return;
  uint8_t* arg = static_cast<uint8_t*>(buf) + sizeof h;
  const size_t argn = std::min<size_t>(n, h.len) - sizeof h;
  requests_[std::min<size_t>(h.opcode, kOpcodes)].fetch_add(
      1, std::memory_order_relaxed);
  Steer(h.opcode, h.len);
  switch (h.opcode) {
    case FUSE_INIT: {
      // major, minor, max_readahead, flags: the layout of every version.
      uint32_t in[4];
      if (argn < sizeof in) return;
      std::memcpy(in, arg, sizeof in);
      if (in[0] != FUSE_KERNEL_VERSION) return;
      init_unique_.store(h.unique, std::memory_order_release);
      if (in[1] >= 33 && (in[3] & FUSE_HANDLE_KILLPRIV_V2))
        offered_.store(true, std::memory_order_release);
      return;
    }
    case FUSE_WRITE:
      if (negotiated())
        MarkKill(arg, argn, offsetof(fuse_write_in, write_flags),
                 FUSE_WRITE_KILL_SUIDGID, offsetof(fuse_write_in, flags));
      return;
    case FUSE_OPEN:
      if (negotiated())
        MarkKill(arg, argn, offsetof(fuse_open_in, open_flags),
                 FUSE_OPEN_KILL_SUIDGID, offsetof(fuse_open_in, flags));
      return;
    case FUSE_CREATE:
      if (negotiated())
        MarkKill(arg, argn, offsetof(fuse_create_in, open_flags),
                 FUSE_OPEN_KILL_SUIDGID, offsetof(fuse_create_in, flags));
      return;
    default:
      return;
  }
}

const iovec* FuseWire::PatchReply(const iovec* iov, int count,
                                  std::vector<iovec>* patched,
                                  std::vector<uint8_t>* storage) {
  const uint64_t init = init_unique_.load(std::memory_order_acquire);
  if (init == 0 || count < 2 || iov[0].iov_len != sizeof(fuse_out_header))
    return iov;
  fuse_out_header out;
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  if (out.unique != init) return iov;
  init_unique_.store(0, std::memory_order_release);
  const size_t flags_at = offsetof(fuse_init_out, flags);
  if (out.error != 0 || iov[1].iov_len < flags_at + sizeof(uint32_t))
    return iov;
  const auto* src = static_cast<const uint8_t*>(iov[1].iov_base);
  uint32_t flags = 0;
  std::memcpy(&flags, src + flags_at, sizeof flags);
  // max_pages counts only when FUSE_MAX_PAGES is set (libfuse sets it when
  // the kernel offered it, Linux 4.20 and later).
  const size_t pages_at = offsetof(fuse_init_out, max_pages);
  const uint16_t pages = max_pages_.load(std::memory_order_acquire);
  const bool set_pages = pages > 0 && (flags & FUSE_MAX_PAGES) &&
                         iov[1].iov_len >= pages_at + sizeof pages;
  if (!offered() && !set_pages) return iov;
  storage->assign(src, src + iov[1].iov_len);
  if (offered()) {
    flags |= FUSE_HANDLE_KILLPRIV_V2;
    std::memcpy(storage->data() + flags_at, &flags, sizeof flags);
    negotiated_.store(true, std::memory_order_release);
  }
  if (set_pages) {
    std::memcpy(storage->data() + pages_at, &pages, sizeof pages);
    max_pages_sent_.store(pages, std::memory_order_release);
  }
  patched->assign(iov, iov + count);
  (*patched)[1] = {storage->data(), storage->size()};
  return patched->data();
}

ssize_t FuseWire::ReadRequest(int fd, void* buf, size_t len) {
  GiveBackTouched();
  const ssize_t n = ::read(fd, buf, len);
  if (n <= 0) return n;
  tls_touched = {static_cast<uint8_t*>(buf), static_cast<size_t>(n)};
  OnRequest(buf, static_cast<size_t>(n));
  return n;
}

void FuseWire::SteerSplice(unsigned* want, unsigned bit) {
  splice_bit_ = bit;
  __atomic_fetch_and(want, ~bit, __ATOMIC_RELAXED);
  splicing_.store(false, std::memory_order_relaxed);
  want_.store(want, std::memory_order_release);
}

void FuseWire::Steer(uint32_t opcode, uint32_t len) {
  if (want_.load(std::memory_order_acquire) == nullptr) return;
  const bool big =
      opcode == FUSE_WRITE &&
      len >= sizeof(fuse_in_header) + sizeof(fuse_write_in) + kSpliceFrom;
  if (big) {
    since_big_.store(0, std::memory_order_relaxed);
    if (!splicing_.load(std::memory_order_relaxed)) SetSplicing(true);
  } else if (splicing_.load(std::memory_order_relaxed) &&
             since_big_.fetch_add(1, std::memory_order_relaxed) + 1 >=
                 kReadAfter) {
    SetSplicing(false);
  }
}

void FuseWire::SetSplicing(bool on) {
  bool was = !on;
  // Threads racing to switch: one wins, and a wrong guess costs a request
  // a copy or a few calls, never its bytes.
  if (!splicing_.compare_exchange_strong(was, on, std::memory_order_relaxed))
    return;
  unsigned* want = want_.load(std::memory_order_acquire);
  // libfuse reads the word before each receive, on every FUSE thread.
  if (on)
    __atomic_fetch_or(want, splice_bit_, __ATOMIC_RELAXED);
  else
    __atomic_fetch_and(want, ~splice_bit_, __ATOMIC_RELAXED);
  switches_.fetch_add(1, std::memory_order_relaxed);
}

ssize_t FuseWire::SpliceRequest(int fdin, int fdout, size_t len,
                                unsigned flags) {
  GiveBackTouched();
  ThreadPipe& p = tls_pipe;
  if (!p.Ready(len)) {
    // libfuse could size its pipe, so this one should size too; if not,
    // the request comes through memory (a copy, still patched).
    auto buf = std::make_unique<uint8_t[]>(len);
    ssize_t n;
    do {
      n = ::read(fdin, buf.get(), len);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    OnRequest(buf.get(), static_cast<size_t>(n));
    if (!WriteAll(fdout, {buf.get(), static_cast<size_t>(n)}, "a FUSE pipe")
             .ok()) {
      errno = EIO;
      return -1;
    }
    return n;
  }
  const ssize_t n = ::splice(fdin, nullptr, p.w, nullptr, len, flags);
  if (n <= 0) return n;
  // The header and the largest argument patched (fuse_write_in) are read
  // out, patched and written first; the rest (a write's data, as page
  // references) moves on without a copy.
  uint8_t hdr[sizeof(fuse_in_header) + sizeof(fuse_write_in)];
  const size_t head = std::min(sizeof hdr, static_cast<size_t>(n));
  if (!ReadFull(p.r, hdr, head)) {
    p.Close();  // what is left in it belongs to no request
    errno = EIO;
    return -1;
  }
  OnRequest(hdr, head);
  if (!WriteAll(fdout, {hdr, head}, "a FUSE pipe").ok()) {
    p.Close();
    errno = EIO;
    return -1;
  }
  size_t left = static_cast<size_t>(n) - head;
  while (left > 0) {
    const ssize_t m =
        ::splice(p.r, nullptr, fdout, nullptr, left, SPLICE_F_MOVE);
    if (m < 0 && errno == EINTR) continue;
    if (m <= 0) {
      p.Close();
      errno = EIO;
      return -1;
    }
    left -= static_cast<size_t>(m);
  }
  return n;
}

}  // namespace wavefs
