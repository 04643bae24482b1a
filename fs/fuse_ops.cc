#include "fs/fuse_ops.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <vector>

#include "chunker/data_map.h"
#include "fs/errno_map.h"
#include "fs/fuse_loop.h"
#include "fs/maintenance.h"
#include "fs/share_service.h"

namespace wavefs {
namespace {

constexpr const char* kXattrStats = "user.wavefs.stats";
constexpr const char* kXattrState = "user.wavefs.state";
constexpr const char* kXattrDataMap = "user.wavefs.datamap";

FuseContext* Ctx(fuse_req_t req) {
  return static_cast<FuseContext*>(fuse_req_userdata(req));
}
Filesystem* Fs(fuse_req_t req) { return Ctx(req)->fs; }

void ReplyErr(fuse_req_t req, const char* op, const Status& st) {
  const int err = ErrnoOf(st);
  if (err == EIO || err == ENOSPC)
    spdlog::error("{} failed: {}", op, st.ToString());
  else
    spdlog::debug("{}: {}", op, st.ToString());
  fuse_reply_err(req, err);
}

void FillStat(const InodeAttr& a, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = a.ino;
  st->st_mode = a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_rdev = a.rdev;
  st->st_size = static_cast<off_t>(a.size);
  // Large blocks make cp and friends use 1 MiB writes: fewer round trips.
  st->st_blksize = 1 << 20;
  // What the file holds in stored chunks, holes excluded: du counts that,
  // and cp, tar -S and rsync -S look for holes (SEEK_HOLE) only in a file
  // with fewer blocks than its size says (a sparse 5 GiB file copied out
  // took 14 s and 5 GiB of disk when this was the size).
  st->st_blocks =
      static_cast<blkcnt_t>((a.stored_bytes.value_or(a.size) + 511) / 512);
  st->st_atim = a.atime;
  st->st_mtim = a.mtime;
  st->st_ctim = a.ctime;
}

// How long the kernel may keep a's attributes: not at all while they hold
// uncommitted changes whose st_blocks is not known yet (InodeAttr::uncached).
double AttrTimeout(fuse_req_t req, const InodeAttr& a) {
  return a.uncached ? 0.0 : Ctx(req)->timeout;
}

void ReplyEntry(fuse_req_t req, const InodeAttr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a.ino;
  e.generation = 1;
  e.attr_timeout = AttrTimeout(req, a);
  e.entry_timeout = Ctx(req)->timeout;
  FillStat(a, &e.attr);
  fuse_reply_entry(req, &e);
}

void ReplyAttr(fuse_req_t req, const InodeAttr& a) {
  struct stat st;
  FillStat(a, &st);
  fuse_reply_attr(req, &st, AttrTimeout(req, a));
}

FileHandle* Handle(fuse_file_info* fi) {
  return reinterpret_cast<FileHandle*>(fi->fh);
}

// Write data in pipes (libfuse's splice read, OpWriteBuf): the kernel
// hands the writer's pages to the pipe by reference and the daemon reads
// them once, straight into its chunk buffer, instead of the kernel copying
// them into a 1 MiB request buffer that the daemon then copies again
// (measured on a 2-core VM, alternating with the 1 MiB max_write that never
// spliced there: 3-9 % less daemon CPU per GiB written, 3 MiB less peak
// RSS; README, Spliced writes).
//
// libfuse splices a request only if its pipe holds a whole one, and an
// unprivileged pipe grows to fs.pipe-max-size at most: 1 MiB (256 slots of
// a page) by default. A 1 MiB max_write would need CAP_SYS_RESOURCE (which
// root on VMs and in containers often lacks) or a raised sysctl. So:
//   - max_write is 1016 KiB (254 pages): a write request is its header page
//     plus at most 255 data pages when its offset is not page-aligned,
//     256 slots, and libfuse's pipe (max_write + a page, rounded up to
//     1 MiB) holds it. The cost is a second, 8 KiB request per 1 MiB
//     write(2).
//   - max_pages is 256, set in the INIT reply by ctx->wire (libfuse would
//     derive 254 from max_write): the kernel bounds read requests by it too,
//     and with fewer pages every 1 MiB read of a random reader would be two
//     requests, two store GETs on S3. Writes stay within max_write.
// The same geometry holds whether or not the pipes could grow, so every
// machine sends the same requests.
constexpr unsigned kMaxWrite = 1016u << 10;
constexpr uint16_t kMaxPages = 256;

// Whether write data will come in pipes, or "off" and why: libfuse falls
// back to reading requests into memory without a word.
std::string SpliceReadState(const fuse_conn_info& conn, bool wanted) {
  if (!wanted) return "off (--no-splice)";
  if (!(conn.want & FUSE_CAP_SPLICE_READ)) return "off (libfuse has no splice)";
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "off (no pipe)";
  const int want = static_cast<int>(conn.max_write) + 4096;
  const bool fits = ::fcntl(p[0], F_SETPIPE_SZ, want) >= want;
  ::close(p[0]);
  ::close(p[1]);
  if (fits) return "on";
  return "off (a pipe cannot hold a " + std::to_string(want >> 10) +
         " KiB request: fs.pipe-max-size is below it and the daemon lacks "
         "CAP_SYS_RESOURCE)";
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  conn->max_write = kMaxWrite;
  ctx->wire.set_max_pages(kMaxPages);
  if (!ctx->want_splice) conn->want &= ~FUSE_CAP_SPLICE_READ;
  conn->max_readahead = 1 << 20;
  conn->max_background = 16;
  conn->congestion_threshold = 12;
  // With the writeback cache the kernel keeps written pages, sends them in
  // max_write pieces and owns the file size and mtime (it sends them with
  // setattr); O_APPEND offsets are its job too. Every change goes through
  // this daemon, the one condition libfuse sets for it.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (ctx->want_writeback_cache) {
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
      ctx->writeback_cache = true;
      ctx->fs->SetKernelKeepsTimes(true);
    } else {
      spdlog::warn("the kernel offers no writeback cache: writes go through");
    }
  }
  // Let the kernel clear set-user-ID and set-group-ID bits on writes,
  // truncates and chowns by whoever lacks CAP_FSETID, exactly as for ext4
  // (it sends a setattr with the new mode). With HANDLE_KILLPRIV on, libfuse's
  // default, that job would be ours, without knowing the writer's caps.
  // (HANDLE_KILLPRIV_V2, which tells us who lacks it, is added to the INIT
  // reply by ctx->wire when the kernel offers it: fs/fuse_wire.h.)
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  std::string splice = SpliceReadState(*conn, ctx->want_splice);
  if (splice == "on") {
    // Splice only while big writes stream in (fs/fuse_wire.h). Needs the
    // event loop of fs/fuse_loop.h, which clears stale buffer flags.
    ctx->wire.SteerSplice(&conn->want, FUSE_CAP_SPLICE_READ);
    splice = "on (for writes of " +
             std::to_string(FuseWire::kSpliceFrom >> 10) +
             " KiB or more; other requests are read)";
  }
  spdlog::info(
      "FUSE session up: max_write {} KiB, {} pages per request, readahead {} "
      "KiB, writeback cache {}, splice read {}, set-user-ID kill by {}",
      conn->max_write >> 10, kMaxPages, conn->max_readahead >> 10,
      ctx->writeback_cache ? "on" : "off", splice,
      ctx->wire.offered() ? "the daemon (HANDLE_KILLPRIV_V2)"
                          : "the kernel (it asks for security.capability "
                            "before each write)");
  spdlog::default_logger()->flush();  // tests and users read it at once
}

void OpDestroy(void* userdata) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  Status st = ctx->fs->CommitAll();
  if (!st.ok()) spdlog::error("final commit failed: {}", st.ToString());
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Ctx(req)->lookup_requests.fetch_add(1, std::memory_order_relaxed);
  auto a = Fs(req)->Lookup(parent, name);
  if (!a.ok() && a.status().code() == Code::kNotFound) {
    // A negative entry the kernel keeps for the timeout: repeated stats of a
    // missing name (PATH searches, include-path probes, git's existence
    // checks) ask once. Every name is made through this mount, and the
    // kernel turns the negative entry into the new one itself (creates with
    // O_EXCL and rename targets look again anyway).
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.entry_timeout = Ctx(req)->timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  if (!a.ok()) return ReplyErr(req, "lookup", a.status());
  ReplyEntry(req, *a);
}

void OpForget(fuse_req_t req, fuse_ino_t, uint64_t) {
  // Inode state lives in the index; nothing is kept per lookup.
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) {
  fuse_reply_none(req);
}

// Whether the caller may keep a file's S_ISGID although it lacks
// group-execute: root (taken for CAP_FSETID) or a member of the file's group.
bool CallerInGroup(fuse_req_t req, uint32_t gid) {
  const fuse_ctx* c = fuse_req_ctx(req);
  if (c->uid == 0 || c->gid == gid) return true;
  gid_t groups[64];
  const int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < n && i < 64; ++i)
    if (groups[i] == gid) return true;
  return false;
}

// The set-user-ID/set-group-ID bits a write, truncate or chown by this
// caller takes off a file with attributes `a`, by ext4's rule: S_ISUID;
// S_ISGID with group-execute, and (since Linux 6.2) without it when the
// caller is not in the file's group. Without FUSE_HANDLE_KILLPRIV_V2
// (v2 false) the kernel clears S_ISUID and S_ISGID with group-execute
// itself, by a setattr with the new mode, and only the last case is ours;
// with it, the kernel says when and leaves all of it to us.
uint32_t BitsToKill(fuse_req_t req, const InodeAttr& a, bool v2) {
  if (S_ISDIR(a.mode)) return 0;
  uint32_t drop = v2 ? a.mode & S_ISUID : 0;
  if (a.mode & S_ISGID) {
    if (a.mode & S_IXGRP) {
      if (v2) drop |= S_ISGID;
    } else if (!CallerInGroup(req, a.gid)) {
      drop |= S_ISGID;
    }
  }
  return drop;
}

// Clears `drop` from the mode of the file with attributes `a` and makes the
// kernel forget the mode it cached (before this request's reply lets the
// caller go on). Returns the attributes now (`a` when nothing changed).
InodeAttr DropModeBits(fuse_req_t req, const InodeAttr& a, uint32_t drop) {
  if (drop == 0) return a;
  AttrChange change;
  change.mode = a.mode & 07777 & ~drop;
  auto r = Fs(req)->SetAttr(a.ino, change, fuse_req_ctx(req)->pid);
  if (!r.ok()) {
    spdlog::warn(
        "cannot clear the set-user-ID/set-group-ID bits of inode {}: {}", a.ino,
        r.status().ToString());
    return a;
  }
  if (fuse_session* se = Ctx(req)->session)
    fuse_lowlevel_notify_inval_inode(se, a.ino, -1, 0);
  return *r;
}

// BitsToKill and DropModeBits for a request that holds no attributes yet
// (a write, a truncating open). Rare: only callers whose file has one of
// the bits set come here.
void KillPrivileges(fuse_req_t req, fuse_ino_t ino, bool v2) {
  auto a = Fs(req)->GetAttr(ino);
  if (a.ok()) DropModeBits(req, *a, BitsToKill(req, *a, v2));
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto a = Fs(req)->StatAttr(ino);
  if (!a.ok()) return ReplyErr(req, "getattr", a.status());
  ReplyAttr(req, *a);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info*) {
  AttrChange c;
  if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr->st_mode;
  if (to_set & FUSE_SET_ATTR_UID) c.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) c.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE)
    c.size = static_cast<uint64_t>(attr->st_size);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW)
    c.atime = timespec{0, UTIME_NOW};
  else if (to_set & FUSE_SET_ATTR_ATIME)
    c.atime = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW)
    c.mtime = timespec{0, UTIME_NOW};
  else if (to_set & FUSE_SET_ATTR_MTIME)
    c.mtime = attr->st_mtim;
  // The kernel's change time, with the writeback cache (its mtime comes as
  // FUSE_SET_ATTR_MTIME): see Filesystem::SetKernelKeepsTimes.
  if (to_set & FUSE_SET_ATTR_CTIME) c.ctime = attr->st_ctim;
  auto a = Fs(req)->SetAttr(ino, c, fuse_req_ctx(req)->pid);
  if (!a.ok()) return ReplyErr(req, "setattr", a.status());
  // With HANDLE_KILLPRIV_V2: FATTR_KILL_SUIDGID arrives as
  // FUSE_SET_ATTR_KILL_SUID (libfuse 3.14). The kernel sets it for a chown
  // only when it changes an owner or group. A setattr that changes nothing
  // (but the change time, which the kernel sends with the writeback cache)
  // is the kernel's own kill (its file_remove_privs, or chown(f, -1, -1),
  // which ext4 also makes clear the bits), whose mode part it leaves to us.
  // (One case differs from ext4: root writing a set-user-ID file that also
  // has security.capability loses the bit here, and keeps it on ext4.)
  // Without it only a truncate can leave us something to clear.
  const bool v2 = Ctx(req)->wire.negotiated();
  const bool kill = v2 ? (to_set & FUSE_SET_ATTR_KILL_SUID) ||
                             (to_set & ~FUSE_SET_ATTR_CTIME) == 0
                       : c.size.has_value();
  if (kill) *a = DropModeBits(req, *a, BitsToKill(req, *a, v2));
  ReplyAttr(req, *a);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto t = Fs(req)->ReadLink(ino);
  if (!t.ok()) return ReplyErr(req, "readlink", t.status());
  fuse_reply_readlink(req, t->c_str());
}

void MakeAndReply(fuse_req_t req, fuse_ino_t parent, const char* name,
                  mode_t mode, dev_t rdev, const std::string& link) {
  const fuse_ctx* c = fuse_req_ctx(req);
  auto a = Fs(req)->MakeNode(parent, name, mode, rdev, c->uid, c->gid, link);
  if (!a.ok()) return ReplyErr(req, "create", a.status());
  ReplyEntry(req, *a);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
             dev_t rdev) {
  MakeAndReply(req, parent, name, mode, rdev, "");
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  MakeAndReply(req, parent, name, S_IFDIR | (mode & 07777), 0, "");
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent,
               const char* name) {
  MakeAndReply(req, parent, name, S_IFLNK | 0777, 0, link);
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
            const char* newname) {
  auto a = Fs(req)->Link(ino, newparent, newname);
  if (!a.ok()) return ReplyErr(req, "link", a.status());
  ReplyEntry(req, *a);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status st = Fs(req)->Unlink(parent, name);
  if (!st.ok()) return ReplyErr(req, "unlink", st);
  fuse_reply_err(req, 0);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status st = Fs(req)->Rmdir(parent, name);
  if (!st.ok()) return ReplyErr(req, "rmdir", st);
  fuse_reply_err(req, 0);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name,
              fuse_ino_t newparent, const char* newname, unsigned flags) {
  Status st = Fs(req)->Rename(parent, name, newparent, newname, flags);
  if (!st.ok()) return ReplyErr(req, "rename", st);
  fuse_reply_err(req, 0);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const bool kill = TakeKillFlag(&fi->flags);
  // With atomic O_TRUNC (libfuse's default) O_TRUNC arrives here, not as a
  // setattr: the open itself must empty the file.
  auto h = Fs(req)->Open(ino, fi->flags);
  if (!h.ok()) return ReplyErr(req, "open", h.status());
  if (kill && (Fs(req)->ModeOf(h->get()) & (S_ISUID | S_ISGID)))
    KillPrivileges(req, ino, /*v2=*/true);
  const bool keep_cache = (*h)->keep_cache;
  (*h)->opener = fuse_req_ctx(req)->pid;
  fi->fh = reinterpret_cast<uint64_t>(h->release());
  // Every change to a file's bytes goes through this mount (the metadata
  // lock keeps a second daemon out), so pages the kernel cached on an
  // earlier open are still right: keep them, and a re-read costs no fetch
  // and no decryption. The exception is a file whose changes were dropped
  // after a failed commit (ENOSPC): its cached pages show bytes it no longer
  // has, so this open drops them.
  fi->keep_cache = keep_cache ? 1 : 0;
  if (fuse_reply_open(req, fi) != 0) {
    // The opener went away (interrupted): undo the open.
    Fs(req)->Release(std::unique_ptr<FileHandle>(Handle(fi))).IgnoreError();
  }
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  // A new file: nothing to kill (the kernel sends an existing one's O_TRUNC
  // with OPEN).
  TakeKillFlag(&fi->flags);
  const fuse_ctx* c = fuse_req_ctx(req);
  auto a = Fs(req)->MakeNode(parent, name, S_IFREG | (mode & 07777), 0, c->uid,
                             c->gid);
  if (!a.ok()) return ReplyErr(req, "create", a.status());
  auto h = Fs(req)->Open(a->ino, fi->flags & O_ACCMODE);
  if (!h.ok()) return ReplyErr(req, "create", h.status());
  (*h)->opener = c->pid;
  fi->fh = reinterpret_cast<uint64_t>(h->release());
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a->ino;
  e.generation = 1;
  e.attr_timeout = Ctx(req)->timeout;
  e.entry_timeout = Ctx(req)->timeout;
  FillStat(*a, &e.attr);
  if (fuse_reply_create(req, &e, fi) != 0)
    Fs(req)->Release(std::unique_ptr<FileHandle>(Handle(fi))).IgnoreError();
}

// A read's reply as an iovec list: decrypted chunks, windows and segment
// ranges are pointed at (and kept alive until the reply is written), not
// copied into a per-thread buffer; only bytes of dirty buffers are copied.
class ReplySink : public ReadSink {
 public:
  void Copy(const char* data, size_t n) override {
    if (n == 0) return;
    auto c = std::make_unique<char[]>(n);
    std::memcpy(c.get(), data, n);
    iov_.push_back({c.get(), n});
    copies_.push_back(std::move(c));
  }
  void Share(std::shared_ptr<const void> keep, const char* data,
             size_t n) override {
    if (n == 0) return;
    iov_.push_back({const_cast<char*>(data), n});
    keep_.push_back(std::move(keep));
  }
  void Zeros(size_t n) override {
    // Never written: the kernel maps these pages to its zero page.
    static char zeros[128 << 10];
    while (n > 0) {
      const size_t m = std::min(n, sizeof zeros);
      iov_.push_back({zeros, m});
      n -= m;
    }
  }
  void Reply(fuse_req_t req) {
    if (iov_.empty()) {
      fuse_reply_buf(req, nullptr, 0);
    } else {
      fuse_reply_iov(req, iov_.data(), static_cast<int>(iov_.size()));
    }
  }

 private:
  std::vector<iovec> iov_;
  std::vector<std::shared_ptr<const void>> keep_;
  std::vector<std::unique_ptr<char[]>> copies_;
};

void OpRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off,
            fuse_file_info* fi) {
  Ctx(req)->read_requests.fetch_add(1, std::memory_order_relaxed);
  ReplySink sink;
  auto n = Fs(req)->Read(Handle(fi), static_cast<uint64_t>(off), size, &sink);
  if (!n.ok()) return ReplyErr(req, "read", n.status());
  sink.Reply(req);
}

// A write request's data as libfuse hands it to write_buf: in memory, or
// (splice read, libfuse's default when write_buf is set) still in the pipe
// the request was spliced into from /dev/fuse, where the kernel put
// references to the writer's pages instead of copying them. Reading the
// pipe straight into the dirty buffer then saves a copy of every byte and
// the resident 1 MiB request buffer of each FUSE thread.
class FuseBufSource final : public WriteSource {
 public:
  explicit FuseBufSource(fuse_bufvec* in) : in_(in) {}
  size_t CopyTo(uint8_t* dst, size_t n) override {
    fuse_bufvec out = FUSE_BUFVEC_INIT(n);
    out.buf[0].mem = dst;
    // Advances in_: libfuse empties the pipe of whatever is left unread.
    const ssize_t r =
        fuse_buf_copy(&out, in_, static_cast<fuse_buf_copy_flags>(0));
    if (r < 0) {
      spdlog::error("cannot read a write request's data: {}",
                    std::strerror(static_cast<int>(-r)));
      return 0;
    }
    return static_cast<size_t>(r);
  }

 private:
  fuse_bufvec* in_;
};

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off,
                fuse_file_info* fi) {
  FuseContext* ctx = Ctx(req);
  ctx->write_requests.fetch_add(1, std::memory_order_relaxed);
  if (in->count > 0 && (in->buf[0].flags & FUSE_BUF_IS_FD))
    ctx->spliced_writes.fetch_add(1, std::memory_order_relaxed);
  const bool kill = TakeKillFlag(&fi->flags);
  // Only set-user-ID and set-group-ID files pay for the checks (a write is
  // the hot path). As ext4 does, the bits go before the data comes in.
  // Without HANDLE_KILLPRIV_V2 the kernel has cleared what it clears and
  // only a set-group-ID file can have a bit left for us.
  const bool v2 = ctx->wire.negotiated();
  const uint32_t mode = Fs(req)->ModeOf(Handle(fi));
  if (v2 ? kill && (mode & (S_ISUID | S_ISGID)) : (mode & S_ISGID) != 0)
    KillPrivileges(req, ino, v2);
  FuseBufSource src(in);
  // fi->writepage: FUSE_WRITE_CACHE, pages of the kernel's writeback cache.
  if (fi->writepage)
    ctx->writeback_writes.fetch_add(1, std::memory_order_relaxed);
  auto n = Fs(req)->Write(Handle(fi), static_cast<uint64_t>(off), &src,
                          fuse_buf_size(in), fi->writepage != 0);
  if (!n.ok()) return ReplyErr(req, "write", n.status());
  fuse_reply_write(req, *n);
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Status st = Fs(req)->Flush(Handle(fi));
  if (!st.ok()) return ReplyErr(req, "flush", st);
  fuse_reply_err(req, 0);
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Status st = Fs(req)->Release(std::unique_ptr<FileHandle>(Handle(fi)));
  if (!st.ok()) spdlog::error("release: {}", st.ToString());
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  Status st = Fs(req)->Fsync(Handle(fi));
  if (!st.ok()) return ReplyErr(req, "fsync", st);
  fuse_reply_err(req, 0);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto a = Fs(req)->GetAttr(ino);
  if (!a.ok()) return ReplyErr(req, "opendir", a.status());
  if (!S_ISDIR(a->mode))
    return ReplyErr(req, "opendir",
                    Status::Error(Code::kNotDir, "not a directory"));
  fi->fh = reinterpret_cast<uint64_t>(new FileHandle());
  // The kernel may keep the listing and answer the next opendir's reads
  // from it: it drops it itself when this directory changes through it
  // (creates, unlinks and renames bump its version), and every change goes
  // through this mount.
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

// readdir, and readdirplus (plus): each entry with its attributes, as a
// LOOKUP would return them, so `ls -l`, `find -ls`, `du` and rsync's scan of
// a directory cost one request per buffer of entries instead of one LOOKUP
// per entry. The kernel picks plus itself (READDIRPLUS_AUTO: the first read
// of a directory, and later ones after lookups of its children).
void ReadDirInto(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 fuse_file_info* fi, bool plus) {
  FileHandle* h = Handle(fi);
  // The reply grows with its entries up to `size`, never allocated whole:
  // the kernel asks with the reader's getdents buffer (1 MiB for ls on
  // Linux 6.18), and a zero-filled 1 MiB per request cost ~5 ms of page
  // faults, for two requests per directory even when it has three entries
  // (`ls -lR` of /usr/share/doc: 13 s instead of 0.4 s).
  std::vector<char> buf;
  size_t used = 0;
  // Room for `need` more bytes at `used`; false when the reply is full.
  auto room = [&](size_t need) {
    if (need > size - used) return false;
    if (buf.size() < used + need)
      buf.resize(std::min(
          size, std::max({used + need, 2 * buf.size(), size_t{4096}})));
    return true;
  };
  auto add = [&](const std::string& name, uint64_t child, uint32_t mode,
                 off_t next) {
    size_t need;
    bool with_attr = false;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      // "." and "..", and an entry unlinked since it was listed, go
      // without attributes (ino 0: the kernel links nothing for them).
      std::optional<InodeAttr> attr;
      if (name != "." && name != "..") {
        if (auto a = Fs(req)->StatAttr(child); a.ok()) attr = std::move(*a);
      }
      if (attr) {
        with_attr = true;
        e.ino = attr->ino;
        e.generation = 1;
        e.attr_timeout = AttrTimeout(req, *attr);
        e.entry_timeout = Ctx(req)->timeout;
        FillStat(*attr, &e.attr);
      } else {
        e.attr.st_ino = child;
        e.attr.st_mode = mode;
      }
      need = fuse_add_direntry_plus(req, nullptr, 0, name.c_str(), &e, next);
      if (!room(need)) return false;
      fuse_add_direntry_plus(req, buf.data() + used, buf.size() - used,
                             name.c_str(), &e, next);
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = child;
      st.st_mode = mode;
      need = fuse_add_direntry(req, nullptr, 0, name.c_str(), &st, next);
      if (!room(need)) return false;
      fuse_add_direntry(req, buf.data() + used, buf.size() - used, name.c_str(),
                        &st, next);
    }
    used += need;
    if (with_attr)
      Ctx(req)->readdirplus_entries.fetch_add(1, std::memory_order_relaxed);
    return true;
  };
  // Offsets: 1 after ".", 2 after "..", 2 + k after the k-th entry. A
  // handle remembers the last name it returned, so continuing costs no
  // rescan; a seek elsewhere rescans from the start.
  if ((off < 1 && !add(".", ino, S_IFDIR, 1)) ||
      (off < 2 && !add("..", ino, S_IFDIR, 2))) {
    fuse_reply_buf(req, buf.data(), used);
    return;
  }
  std::string after;
  uint64_t pos = 2;
  uint64_t skip = 0;
  if (off > 2) {
    if (static_cast<uint64_t>(off) == h->dir_offset) {
      after = h->dir_last_name;
      pos = h->dir_offset;
    } else {
      skip = static_cast<uint64_t>(off) - 2;
    }
  }
  Status st = Fs(req)->ReadDir(ino, after, [&](const DirEntry& e) {
    if (skip > 0) {
      --skip;
      ++pos;
      return true;
    }
    if (!add(e.name, e.ino, e.mode, static_cast<off_t>(pos + 1))) return false;
    ++pos;
    h->dir_offset = pos;
    h->dir_last_name = e.name;
    return true;
  });
  if (!st.ok()) return ReplyErr(req, plus ? "readdirplus" : "readdir", st);
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               fuse_file_info* fi) {
  ReadDirInto(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   fuse_file_info* fi) {
  ReadDirInto(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete Handle(fi);
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st;
  Status s = Fs(req)->StatFs(&st);
  if (!s.ok()) return ReplyErr(req, "statfs", s);
  fuse_reply_statfs(req, &st);
}

// Room the size answer for one of wavefs's own attributes leaves for the
// value to grow before the caller reads it (see OpGetxattr).
constexpr size_t kOwnXattrSlack = 1024;

bool IsOwnXattr(const std::string& name) {
  return name.rfind(kReservedXattrPrefix, 0) == 0;
}

// Value of one of wavefs's own attributes, or kNotFound (ENODATA).
Result<std::string> OwnXattrValue(fuse_req_t req, fuse_ino_t ino,
                                  const std::string& name) {
  if (ino == kRootIno && (name == kXattrGc || name == kXattrFsck) &&
      Ctx(req)->maintenance != nullptr)
    return Ctx(req)->maintenance->StatusText(name);
  if (ino == kRootIno && name == kXattrStats) {
    const FuseContext* c = Ctx(req);
    std::string extra = c->stats_extra;
    const FuseLoopSpinStats spin = FuseLoopSpin();
    const FuseLoopThreadStats threads = FuseLoopThreads();
    extra +=
        "writeback_cache=" + std::to_string(c->writeback_cache ? 1 : 0) +
        "\nwrite_requests=" + std::to_string(c->write_requests.load()) +
        "\nspliced_writes=" + std::to_string(c->spliced_writes.load()) +
        "\nwriteback_writes=" + std::to_string(c->writeback_writes.load()) +
        "\nsplice_switches=" + std::to_string(c->wire.splice_switches()) +
        "\nfuse_handoffs=" + std::to_string(FuseLoopHandoffs()) +
        "\nfuse_threads=" + std::to_string(threads.now) +
        "\nfuse_threads_peak=" + std::to_string(threads.peak) +
        "\nfuse_threads_added=" + std::to_string(threads.added) +
        "\nfuse_saturations=" + std::to_string(FuseLoopSaturations()) +
        "\nfuse_spin_us=" + std::to_string(spin.spin_ns / 1000) +
        "\nfuse_cpu_looks=" + std::to_string(spin.looks) +
        "\nfuse_cpu_contended=" + std::to_string(spin.contended_looks) +
        "\nread_requests=" + std::to_string(c->read_requests.load()) +
        "\nmax_pages=" + std::to_string(c->wire.max_pages_sent()) +
        "\nlookup_requests=" + std::to_string(c->lookup_requests.load()) +
        "\nreaddirplus_entries=" +
        std::to_string(c->readdirplus_entries.load()) +
        "\ngetxattr_requests=" + std::to_string(c->getxattr_requests.load()) +
        "\nkillpriv_v2=" + std::to_string(c->wire.negotiated() ? 1 : 0) + "\n" +
        c->wire.RequestCounts();
    if (c->invalidator != nullptr) {
      extra +=
          "kernel_invalidations=" + std::to_string(c->invalidator->sent()) +
          "\n";
    }
    return Fs(req)->StatsText(extra);
  }
  if (Ctx(req)->shares != nullptr && ShareService::Handles(name))
    return Ctx(req)->shares->Get(name);
  auto a = Fs(req)->GetAttr(ino);
  if (!a.ok()) return a.status();
  if (S_ISREG(a->mode) && name == kXattrState) return Fs(req)->FileState(ino);
  if (S_ISREG(a->mode) && name == kXattrDataMap) {
    auto map = Fs(req)->GetDataMap(ino);
    if (!map.ok()) return map.status();
    std::string enc = EncodeDataMap(*map);
    return ToHex({reinterpret_cast<const uint8_t*>(enc.data()), enc.size()});
  }
  return Status::Error(Code::kNotFound, "no attribute " + name, ENODATA);
}

// Replies with a value or a list as getxattr/listxattr do: its size when
// the caller asked for the size (plus `slack`), ERANGE when its buffer is
// too small.
void ReplyXattr(fuse_req_t req, const std::string& v, size_t size,
                size_t slack = 0) {
  if (size == 0)
    return (void)fuse_reply_xattr(
        req, std::min(v.size() + slack, std::max(v.size(), kMaxXattrValue)));
  if (size < v.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, v.data(), v.size());
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Ctx(req)->getxattr_requests.fetch_add(1, std::memory_order_relaxed);
  // wavefs's own attributes (user.wavefs.*) are computed, read-only and not
  // listed, so rsync -X and cp --preserve=xattr never copy or remove them.
  auto v = IsOwnXattr(name) ? OwnXattrValue(req, ino, name)
                            : Fs(req)->GetXattr(ino, name);
  if (!v.ok()) return ReplyErr(req, "getxattr", v.status());
  // The kernel refuses values over 64 KiB; say so rather than ERANGE.
  if (v->size() > kMaxXattrValue)
    return ReplyErr(
        req, "getxattr",
        Status::Error(Code::kTooBig,
                      std::string(name) + " is over 64 KiB "
                                          "(use 'wavefs share' for big files)",
                      E2BIG));
  // getfattr asks for the size, then for the value in a buffer of that
  // size. wavefs's own values are computed afresh each time, and the
  // stats change between the two calls (getxattr_requests counts the
  // second one: from 99 to 100 it grew by a byte), so the second call
  // failed with ERANGE (seen in it_crash_soak). Their size answer leaves
  // room; the value's own length comes back with the value.
  ReplyXattr(req, *v, size, IsOwnXattr(name) ? kOwnXattrSlack : 0);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto names = Fs(req)->ListXattr(ino);
  if (!names.ok()) return ReplyErr(req, "listxattr", names.status());
  ReplyXattr(req, *names, size);
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name,
                const char* value, size_t size, int flags) {
  if (ino == kRootIno && Ctx(req)->maintenance != nullptr &&
      (std::string_view(name) == kXattrGc ||
       std::string_view(name) == kXattrFsck)) {
    // `wavefs gc|fsck MOUNTPOINT` (fs/maintenance.h): root or the owner.
    const fuse_ctx* who = fuse_req_ctx(req);
    if (who->uid != 0 && who->uid != getuid())
      return ReplyErr(req, "setxattr",
                      Status::Error(Code::kPermission,
                                    "only root or the mount's owner may run "
                                    "gc or fsck",
                                    EPERM));
    Status st = Ctx(req)->maintenance->Start(name, std::string(value, size));
    if (!st.ok()) return ReplyErr(req, "setxattr", st);
    return (void)fuse_reply_err(req, 0);
  }
  Status st =
      Ctx(req)->shares != nullptr && ShareService::Handles(name)
          ? Ctx(req)->shares->Set(ino, name, std::string(value, size))
          : Fs(req)->SetXattr(ino, name, std::string(value, size), flags);
  if (!st.ok()) return ReplyErr(req, "setxattr", st);
  fuse_reply_err(req, 0);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Status st = Fs(req)->RemoveXattr(ino, name);
  if (!st.ok()) return ReplyErr(req, "removexattr", st);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  Status st = Fs(req)->FsyncDir();
  if (!st.ok()) return ReplyErr(req, "fsyncdir", st);
  fuse_reply_err(req, 0);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset,
                 off_t length, fuse_file_info* fi) {
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  Status st =
      Fs(req)->Fallocate(Handle(fi), mode, static_cast<uint64_t>(offset),
                         static_cast<uint64_t>(length));
  if (!st.ok()) return ReplyErr(req, "fallocate", st);
  fuse_reply_err(req, 0);
}

void OpLseek(fuse_req_t req, fuse_ino_t, off_t off, int whence,
             fuse_file_info* fi) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    // SEEK_SET/CUR/END never reach a filesystem; be explicit anyway.
    return (void)fuse_reply_err(req, EINVAL);
  }
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  // With the writeback cache the kernel holds written pages (and the size
  // they make) that have not reached the daemon, and it does not write them
  // back before asking: an answer from the index alone could call them a
  // hole, or an offset below the kernel's size past the end. ENOSYS makes the
  // kernel answer every SEEK_DATA/SEEK_HOLE of this mount itself from its
  // own size (all data, the hole at the end): what POSIX allows, correct,
  // without skipping holes.
  if (Ctx(req)->writeback_cache) return (void)fuse_reply_err(req, ENOSYS);
  auto r =
      Fs(req)->SeekDataHole(Handle(fi), static_cast<uint64_t>(off), whence);
  if (!r.ok()) return ReplyErr(req, "lseek", r.status());
  fuse_reply_lseek(req, static_cast<off_t>(*r));
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t, off_t off_in,
                     fuse_file_info* fi_in, fuse_ino_t, off_t off_out,
                     fuse_file_info* fi_out, size_t len, int flags) {
  if (flags != 0 || off_in < 0 || off_out < 0)
    return (void)fuse_reply_err(req, EINVAL);
  auto n =
      Fs(req)->CopyRange(Handle(fi_in), static_cast<uint64_t>(off_in),
                         Handle(fi_out), static_cast<uint64_t>(off_out), len);
  if (!n.ok()) return ReplyErr(req, "copy_file_range", n.status());
  fuse_reply_write(req, static_cast<size_t>(*n));
}

// The barrier at the FUSE edge: a C++ exception that escapes an operation
// would unwind into libfuse's C code and kill the mount. Every request
// handler runs inside it; an exception becomes one log line and an errno
// reply (ENOMEM for bad_alloc, EIO otherwise). Handlers reply as their last
// step, so an exception always comes before the reply.
template <auto Op>
struct Guarded;
template <typename... A, void (*Op)(fuse_req_t, A...)>
struct Guarded<Op> {
  static void Call(fuse_req_t req, A... args) {
    try {
      Op(req, args...);
    } catch (const std::bad_alloc&) {
      spdlog::error("FUSE request failed: out of memory");
      fuse_reply_err(req, ENOMEM);
    } catch (const std::exception& e) {
      spdlog::error("FUSE request failed with an exception: {}", e.what());
      fuse_reply_err(req, EIO);
    } catch (...) {
      spdlog::error("FUSE request failed with an unknown exception");
      fuse_reply_err(req, EIO);
    }
  }
};

}  // namespace

namespace {

FuseWire& WireOf(void* userdata) {
  return static_cast<FuseContext*>(userdata)->wire;
}

ssize_t WireRead(int fd, void* buf, size_t len, void* userdata) {
  return WireOf(userdata).ReadRequest(fd, buf, len);
}

ssize_t WireWritev(int fd, struct iovec* iov, int count, void* userdata) {
  std::vector<iovec> patched;
  std::vector<uint8_t> storage;
  const iovec* v = WireOf(userdata).PatchReply(iov, count, &patched, &storage);
  return ::writev(fd, v, count);
}

ssize_t WireSpliceReceive(int fdin, off_t*, int fdout, off_t*, size_t len,
                          unsigned int flags, void* userdata) {
  return WireOf(userdata).SpliceRequest(fdin, fdout, len, flags);
}

}  // namespace

fuse_custom_io MakeWireIo() {
  fuse_custom_io io;
  std::memset(&io, 0, sizeof io);
  io.read = WireRead;
  io.writev = WireWritev;
  io.splice_receive = WireSpliceReceive;
  io.splice_send = nullptr;  // libfuse's own splice(2)
  return io;
}

fuse_lowlevel_ops MakeFuseOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.lookup = Guarded<OpLookup>::Call;
  ops.getattr = Guarded<OpGetattr>::Call;
  ops.setattr = Guarded<OpSetattr>::Call;
  ops.readlink = Guarded<OpReadlink>::Call;
  ops.mknod = Guarded<OpMknod>::Call;
  ops.mkdir = Guarded<OpMkdir>::Call;
  ops.symlink = Guarded<OpSymlink>::Call;
  ops.link = Guarded<OpLink>::Call;
  ops.unlink = Guarded<OpUnlink>::Call;
  ops.rmdir = Guarded<OpRmdir>::Call;
  ops.rename = Guarded<OpRename>::Call;
  ops.open = Guarded<OpOpen>::Call;
  ops.create = Guarded<OpCreate>::Call;
  ops.read = Guarded<OpRead>::Call;
  ops.write_buf = Guarded<OpWriteBuf>::Call;
  ops.flush = Guarded<OpFlush>::Call;
  ops.release = Guarded<OpRelease>::Call;
  ops.fsync = Guarded<OpFsync>::Call;
  ops.opendir = Guarded<OpOpendir>::Call;
  ops.readdir = Guarded<OpReaddir>::Call;
  ops.readdirplus = Guarded<OpReaddirplus>::Call;
  ops.releasedir = Guarded<OpReleasedir>::Call;
  ops.fsyncdir = Guarded<OpFsyncdir>::Call;
  ops.statfs = Guarded<OpStatfs>::Call;
  ops.getxattr = Guarded<OpGetxattr>::Call;
  ops.listxattr = Guarded<OpListxattr>::Call;
  ops.setxattr = Guarded<OpSetxattr>::Call;
  ops.removexattr = Guarded<OpRemovexattr>::Call;
  ops.fallocate = Guarded<OpFallocate>::Call;
  ops.lseek = Guarded<OpLseek>::Call;
  ops.copy_file_range = Guarded<OpCopyFileRange>::Call;
  return ops;
}

KernelInvalidator::KernelInvalidator(fuse_session* se)
    : se_(se), thread_([this] { Loop(); }) {}

KernelInvalidator::~KernelInvalidator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void KernelInvalidator::Invalidate(uint64_t ino) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(ino);
  }
  cv_.notify_one();
}

uint64_t KernelInvalidator::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sent_;
}

void KernelInvalidator::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const uint64_t ino = queue_.front();
    queue_.pop_front();
    lock.unlock();
    // Offset 0, length 0: every cached page. -ENOENT means the kernel holds
    // nothing of this inode, which is fine.
    const int rc = fuse_lowlevel_notify_inval_inode(
        se_, static_cast<fuse_ino_t>(ino), 0, 0);
    if (rc != 0 && rc != -ENOENT) {
      spdlog::warn("cannot drop the kernel's cached pages of inode {}: {}", ino,
                   std::strerror(-rc));
    }
    lock.lock();
    ++sent_;
  }
}

}  // namespace wavefs
