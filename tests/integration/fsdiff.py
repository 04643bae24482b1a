#!/usr/bin/env python3
"""fsdiff: a seeded, randomized differential tester for file systems.

It applies the same random sequence of system calls to two directories, A
(normally a wavefs mount) and B (a plain local directory, normally ext4), and
after every step compares what both calls returned (value or errno) and the
state of everything the step touched: type, mode bits (incl. S_ISUID,
S_ISGID, sticky), nlink, uid, gid, size, byte-exact contents, symlink
targets, directory listings and user.* xattrs (names and values; names under
user.wavefs. are wavefs's own and are ignored). mtime is compared only right
after an explicit utime with given times, and, after the final "utime-all"
pass, in the full-tree compares. atime, ctime, st_blocks, st_ino, st_dev and
directory sizes are never compared (they legitimately differ).

  fsdiff.py --a MNT/s1 --b LOCAL/s1 --seed 1 --steps 600      # run phase
  fsdiff.py --a MNT --b LOCAL --phase verify                   # after remount
  fsdiff.py --self-test [--seeds 4 --steps 2000]               # two local dirs
  fsdiff.py ... --ops core,xattr        # only these op families (bisecting)
  fsdiff.py ... --ops all,-otrunc       # everything but one family

The run phase needs A and B empty (they are created when missing). The first
mismatch prints a report (seed, step, operation, A's vs B's answer, the last
operations) and exits 1; success prints "fsdiff: N steps, seed S, all equal".
Exit 2 is a usage error. Standard library only; run as root (chown, the
killpriv child that drops to uid 65534; a FUSE side A then needs -o
allow_other so that the child may use it).
"""

import argparse
import collections
import ctypes
import errno
import hashlib
import mmap
import os
import random
import shutil
import stat
import sys
import tempfile
import time

CHUNK = 4 * 1024 * 1024  # wavefs's chunk size: offsets straddle it often
MiB = 1024 * 1024
MAXF = 10 * MiB + 4096  # writes/truncates/fallocates stay below this size

# The working set: few names, so operations collide often.
FILES = ["f0", "f1", "f2", "f3", "d0/f4", "d1/f5"]
DIRS = ["d0", "d1"]
MISSING = ["nx", "d0/nx", "nd/f0"]  # names that normally do not exist

FAMILIES = {
    "core": "open (no O_TRUNC), close, write/pwrite, read/pread, lseek, fstat",
    "otrunc": "open with O_TRUNC (O_WRONLY|O_TRUNC, O_CREAT|O_TRUNC, ...)",
    "trunc": "truncate(path), ftruncate(fd), up and down",
    "fallocate": "fallocate modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE[|KEEP_SIZE]",
    "seek": "lseek SEEK_DATA / SEEK_HOLE (POSIX contract, not offsets)",
    "cfr": "copy_file_range between handles of the same tree",
    "rename": "renameat2 with flags 0 and RENAME_NOREPLACE",
    "exchange": "renameat2 RENAME_EXCHANGE",
    "link": "link (hard links)",
    "unlink": "unlink, also of files still open",
    "dir": "mkdir, rmdir",
    "symlink": "symlink, readlink",
    "xattr": "setxattr (0, XATTR_CREATE, XATTR_REPLACE), getxattr, listxattr, removexattr",
    "chmod": "chmod/fchmod of files (incl. 04755, 02755, 06777) and dirs",
    "sgiddir": "setgid directories: new entries inherit the directory's group",
    "chown": "chown/fchown/lchown to uids/gids 0, 1000, 65534",
    "utime": "utime with explicit ns times; final utime-all pass, mtime compares",
    "sync": "fsync, fdatasync",
    "dirhandle": "directories opened O_RDONLY stay open (fstat, fchmod, fchown, fsync, "
                 "xattrs through them, also after rmdir); without it they are closed at once",
    "mmap": "MAP_SHARED mappings: writes through one (msync or not) then munmap; "
            "reads through one; a mapping kept across a write(2), ftruncate up or "
            "fsync through another handle, which it must see; SEEK_DATA/SEEK_HOLE "
            "while pages written through one are not written back",
    "direct": "O_DIRECT opens: aligned writes and reads (4 KiB offsets and lengths, "
              "aligned buffers), past the end too, while other handles cache pages",
    "cache": "posix_fadvise DONTNEED (drops cached pages, forces reads from the fs)",
    "killpriv": "a non-owner (uid/gid 65534) writes (1 byte, 256 KiB), ftruncates or "
                "opens with O_TRUNC a root file with S_ISUID, or S_ISGID|S_IXGRP: both "
                "bits are cleared",
    "killpriv_nogx": "the same with S_ISGID but no S_IXGRP (02767, 06767): Linux >= 6.2 "
                     "clears S_ISGID as the writer is not in the group (ext4 does)",
}

TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk"}
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int
try:
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                           ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
except AttributeError:  # glibc < 2.28: the raw system call (x86-64 / arm64)
    _renameat2 = None


def _raise_errno():
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e))


def fallocate(fd, mode, off, length):
    if _fallocate(fd, mode, off, length) != 0:
        _raise_errno()


def renameat2(src, dst, flags):
    if _renameat2 is not None:
        r = _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags)
    else:
        nr = {"x86_64": 316, "aarch64": 276}[os.uname().machine]
        r = _libc.syscall(nr, AT_FDCWD, os.fsencode(src), AT_FDCWD,
                          os.fsencode(dst), flags)
    if r != 0:
        _raise_errno()


def errname(e):
    return errno.errorcode.get(e, str(e))


def flagnames(flags):
    acc = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
    out = [acc[flags & os.O_ACCMODE]]
    for f in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DIRECT"):
        if flags & getattr(os, f):
            out.append(f)
    return "|".join(out)


def fmt(v):
    """Short human form of a result or a state value."""
    if isinstance(v, (bytes, bytearray)):
        h = hashlib.sha1(v).hexdigest()[:12]
        nz = len(v) - v.count(0)
        return f"<{len(v)} bytes, {nz} non-zero, sha1 {h}, head {bytes(v[:12]).hex()}>"
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "err":
        return f"error {errname(v[1])}"
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "ok":
        return "ok" if v[1] is None else f"ok {fmt(v[1])}"
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "exc":
        return f"exception {v[1]}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ")"
    return repr(v)


def attempt(fn):
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", e.errno)
    except Exception as e:  # noqa: BLE001 - compared across sides, reported
        return ("exc", f"{type(e).__name__}: {e}")


def first_diff(a, b):
    n = min(len(a), len(b))
    lo, hi = 0, n
    # Find the first differing byte quickly (memcmp on halves).
    if a[:n] == b[:n]:
        return n
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return hi


class Mismatch(Exception):
    def __init__(self, what, a, b, note=""):
        super().__init__(what)
        self.what, self.a, self.b, self.note = what, a, b, note


class Handle:
    def __init__(self, path, flags, kind):
        self.path, self.flags, self.kind = path, flags, kind
        acc = flags & os.O_ACCMODE
        self.readable = acc in (os.O_RDONLY, os.O_RDWR)
        self.writable = acc in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)


class Side:
    def __init__(self, name, root):
        self.name, self.root = name, os.path.abspath(root)
        self.fds = {}
        self.rootfd = None

    def p(self, rel):
        return self.root if rel in ("", ".") else os.path.join(self.root, rel)


def parent_of(rel):
    return os.path.dirname(rel) or "."


# ---------------------------------------------------------------- the tester

class Tester:
    def __init__(self, a, b, seed, enabled, out=sys.stdout):
        self.A, self.B = Side("A", a), Side("B", b)
        self.sides = (self.A, self.B)
        self.seed = seed
        self.rng = random.Random(seed)
        self.crng = random.Random(seed * 7919 + 1)  # compare-side choices
        self.enabled = enabled
        self.handles = {}
        self.next_hid = 0
        self.step = 0
        self.desc = "(setup)"
        self.history = collections.deque(maxlen=20)
        self.out = out
        self.mtime_compare = "utime" in enabled
        self._drop_now = False
        self.result = None
        self.counts = {}
        self.ops = self._op_table()

    # ------------------------------------------------------------ plumbing

    def both(self, fn):
        """Runs fn(side) on A then B; returns ("ok", value) / ("err", errno)
        of A after checking that B's result is equal."""
        ra = attempt(lambda: fn(self.A))
        rb = attempt(lambda: fn(self.B))
        self.result = ra
        if ra != rb:
            raise Mismatch("return value / errno of the call", ra, rb)
        return ra

    def both_raw(self, fn):
        return attempt(lambda: fn(self.A)), attempt(lambda: fn(self.B))

    def say(self, desc):
        self.desc = desc
        self.result = None

    def record(self):
        r = "" if self.result is None else " -> " + fmt(self.result)
        self.history.append(f"#{self.step} {self.desc}{r}")

    # ------------------------------------------------------------ state

    def xattrs(self, target, follow):
        names = os.listxattr(target, follow_symlinks=follow)
        out = []
        for n in sorted(names):
            if not n.startswith("user.") or n.startswith("user.wavefs."):
                continue
            try:
                v = os.getxattr(target, n, follow_symlinks=follow)
            except OSError as e:
                v = ("err", e.errno)
            out.append((n, v))
        return out

    def read_fd(self, fd):
        if "cache" in self.enabled and self._drop_now:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        parts, off = [], 0
        while True:
            b = os.pread(fd, 4 * MiB, off)
            if not b:
                break
            parts.append(b)
            off += len(b)
        return b"".join(parts)

    def path_state(self, side, rel, content, mtime):
        """A dict of the comparable state of one path on one side."""
        path = side.p(rel)
        try:
            st = os.lstat(path)
        except OSError as e:
            return {"lstat": ("err", e.errno)}
        s = self.stat_fields(st, mtime)
        if stat.S_ISLNK(st.st_mode):
            s["target"] = attempt(lambda: os.readlink(path))
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            s["xattrs"] = attempt(lambda: self.xattrs(path, False))
        if stat.S_ISDIR(st.st_mode):
            s["listing"] = attempt(lambda: sorted(os.listdir(path)))
        if stat.S_ISREG(st.st_mode) and content:
            def rd():
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    return self.read_fd(fd)
                finally:
                    os.close(fd)
            s["content"] = attempt(rd)
        return s

    @staticmethod
    def stat_fields(st, mtime):
        s = {
            "type": TYPES.get(stat.S_IFMT(st.st_mode), oct(stat.S_IFMT(st.st_mode))),
            "mode": oct(stat.S_IMODE(st.st_mode)),
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
        }
        if not stat.S_ISDIR(st.st_mode):
            s["size"] = st.st_size
        if mtime:
            s["mtime_ns"] = st.st_mtime_ns
        return s

    def handle_state(self, side, hid, content):
        h = self.handles[hid]
        fd = side.fds[hid]
        try:
            st = os.fstat(fd)
        except OSError as e:
            return {"fstat": ("err", e.errno)}
        s = self.stat_fields(st, False)
        if stat.S_ISREG(st.st_mode):
            s["position"] = attempt(lambda: os.lseek(fd, 0, os.SEEK_CUR))
            if content:
                if h.readable:
                    s["content"] = attempt(lambda: self.read_fd(fd))
                elif st.st_nlink > 0:
                    def rd():
                        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
                        try:
                            return self.read_fd(rfd)
                        finally:
                            os.close(rfd)
                    s["content"] = attempt(rd)
        s["xattrs"] = attempt(lambda: self.xattrs(fd, True))
        return s

    def compare_states(self, what, sa, sb):
        for k in sorted(set(sa) | set(sb), key=lambda k: (k == "content", k)):
            va, vb = sa.get(k, "(absent)"), sb.get(k, "(absent)")
            if va == vb:
                continue
            if k in ("lstat", "fstat"):  # an error on one side only
                def summary(st):
                    return st[k] if k in st else "succeeded: " + ", ".join(
                        f"{f}={st[f]}" for f in ("type", "mode", "nlink", "uid", "gid", "size")
                        if f in st)
                va, vb = summary(sa), summary(sb)
            note = ""
            if (k == "content" and isinstance(va, tuple) and isinstance(vb, tuple)
                    and va[0] == vb[0] == "ok"):
                ca, cb = va[1], vb[1]
                i = first_diff(ca, cb)
                note = (f"first difference at byte {i} (chunk {i // CHUNK}, "
                        f"+{i % CHUNK}); A[{i}:{i + 16}]={ca[i:i + 16].hex()} "
                        f"B[{i}:{i + 16}]={cb[i:i + 16].hex()}; sizes A {len(ca)} B {len(cb)}")
            raise Mismatch(f"{what}: {k}", va, vb, note)

    def check_path(self, rel, content=True, mtime=False):
        self._drop_now = self.crng.random() < 0.2
        sa = self.path_state(self.A, rel, content, mtime)
        sb = self.path_state(self.B, rel, content, mtime)
        self.compare_states(f"state of '{rel}'", sa, sb)

    def check_paths(self, rels, content=True, mtime=False):
        seen = set()
        for rel in rels:
            for r in (rel, parent_of(rel)):
                if r not in seen:
                    seen.add(r)
                    self.check_path(r, content=content and r == rel, mtime=mtime)

    def check_all_handles(self):
        """fstat of every open handle: after a name changed, what an open
        file (or directory) still is, incl. unlinked ones (nlink 0)."""
        for hid in sorted(self.handles):
            self.check_handle(hid, content=False)

    def check_handle(self, hid, content=True):
        self._drop_now = self.crng.random() < 0.2
        h = self.handles[hid]
        sa = self.handle_state(self.A, hid, content)
        sb = self.handle_state(self.B, hid, content)
        self.compare_states(f"state of handle h{hid} (opened as '{h.path}', "
                            f"{flagnames(h.flags)})", sa, sb)

    def full_compare(self, mtime):
        """Walks both trees; compares every entry (contents too)."""
        self._drop_now = False

        def walk(rel):
            la = sorted(os.listdir(self.A.p(rel)))
            lb = sorted(os.listdir(self.B.p(rel)))
            if la != lb:
                raise Mismatch(f"full tree compare: listing of '{rel}'", la, lb)
            for name in la:
                r = name if rel == "." else f"{rel}/{name}"
                sa = self.path_state(self.A, r, True, mtime)
                sb = self.path_state(self.B, r, True, mtime)
                self.compare_states(f"full tree compare: '{r}'", sa, sb)
                if sa.get("type") == "dir":
                    walk(r)

        self.desc = "full tree compare" + (" (incl. mtime)" if mtime else "")
        self.result = None
        walk(".")

    # ------------------------------------------------------------ choices

    def pick_file(self):
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice(MISSING)
        if r < 0.12:
            return self.rng.choice(DIRS)
        if r < 0.40 and self.handles:
            return self.handles[self.rng.choice(list(self.handles))].path
        return self.rng.choice(FILES)

    def pick_any(self):
        r = self.rng.random()
        if r < 0.07:
            return self.rng.choice(MISSING)
        if r < 0.25:
            return self.rng.choice(DIRS)
        return self.rng.choice(FILES)

    def kind_of(self, rel):
        """'reg', 'dir', 'lnk', None; the same on both sides or a mismatch."""
        def k(side):
            try:
                m = os.lstat(side.p(rel)).st_mode
            except OSError:
                return None
            return "reg" if stat.S_ISREG(m) else "dir" if stat.S_ISDIR(m) else \
                "lnk" if stat.S_ISLNK(m) else "other"
        ka, kb = k(self.A), k(self.B)
        if ka != kb:
            raise Mismatch(f"state diverged: type of '{rel}' before the step", ka, kb)
        return ka

    def existing_files(self):
        return [f for f in FILES if self.kind_of(f) == "reg"]

    def pick_handle(self, kinds=("reg",), want=""):
        """A handle of one of kinds; want "r" / "w" prefers readable /
        writable (non-append for "W") handles, but not always (EBADF)."""
        hs = sorted(h for h in self.handles if self.handles[h].kind in kinds)
        if want and self.rng.random() < 0.9:
            good = [h for h in hs if
                    (self.handles[h].readable if want == "r" else self.handles[h].writable)
                    and not (want == "W" and self.handles[h].append)]
            hs = good or hs
        if not hs:
            return None
        return self.rng.choice(hs)

    def missing_names(self):
        return [p for p in FILES + DIRS if self.kind_of(p) is None]

    def maybe_missing(self, p, fallback):
        m = self.missing_names()
        return self.rng.choice(m) if m and self.rng.random() < p else fallback()

    def fsize(self, hid):
        def sz(s):
            st = os.fstat(s.fds[hid])
            return st.st_size if stat.S_ISREG(st.st_mode) else 0
        ra, rb = self.both_raw(sz)
        if ra != rb:
            raise Mismatch(f"state diverged: size of h{hid} before the step", ra, rb)
        return ra[1] if ra[0] == "ok" else 0

    def psize(self, rel):
        def sz(s):
            st = os.stat(s.p(rel))
            return st.st_size if stat.S_ISREG(st.st_mode) else 0
        ra, rb = self.both_raw(sz)
        if ra != rb:
            raise Mismatch(f"state diverged: size of '{rel}' before the step", ra, rb)
        return ra[1] if ra[0] == "ok" else 0

    def pick_len(self):
        r = self.rng.random()
        if r < 0.30:
            return self.rng.randint(1, 100)
        if r < 0.42:
            return self.rng.choice([CHUNK, CHUNK - 1, CHUNK + 1, 2 * CHUNK, CHUNK // 2])
        if r < 0.70:
            return self.rng.randint(101, 256 * 1024)
        if r < 0.88:
            return self.rng.randint(256 * 1024, 2 * MiB)
        return self.rng.randint(2 * MiB, 6 * MiB)

    def pick_off(self, size, n):
        rng = self.rng
        r = rng.random()
        k = rng.randint(1, 2)
        if r < 0.28:  # straddles a chunk boundary
            off = k * CHUNK - (rng.randint(1, min(n - 1, CHUNK)) if n > 1 else 1)
        elif r < 0.40:  # starts exactly at a chunk
            off = rng.randint(0, 2) * CHUNK
        elif r < 0.50:  # ends exactly at a chunk end
            off = k * CHUNK - n
        elif r < 0.70:
            off = rng.randint(0, max(0, size))
        elif r < 0.80:
            off = size
        elif r < 0.92:  # past the end: leaves a hole
            off = size + rng.randint(1, 3 * MiB)
        else:
            off = 0
        off = max(0, off)
        if off + n > MAXF:
            off = max(0, MAXF - n)
        return off

    def pick_size(self, cur):
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return 0
        if r < 0.35:
            return rng.randint(1, 2) * CHUNK
        if r < 0.50:
            return rng.randint(1, 2) * CHUNK + rng.randint(-100, 100)
        if r < 0.65:
            return max(0, cur + rng.randint(-5000, 5000))
        if r < 0.80:
            return rng.randint(0, max(1, cur))
        return rng.randint(0, MAXF)

    def gen(self, n):
        r = self.rng.random()
        if r < 0.22:
            return bytes(n)
        if r < 0.30 and n > 64:
            cut = self.rng.randint(1, n - 1)
            if self.rng.random() < 0.5:
                return bytes(cut) + self.rng.randbytes(n - cut)
            return self.rng.randbytes(cut) + bytes(n - cut)
        return self.rng.randbytes(n)

    # ------------------------------------------------------------ operations
    # Each returns False when it does not apply now (another op is drawn).

    def _op_table(self):
        t = [
            ("open", "core", 10, self.op_open),
            ("close", "core", 7, self.op_close),
            ("write", "core", 12, self.op_write),
            ("read", "core", 6, self.op_read),
            ("lseek", "core", 2, self.op_lseek),
            ("open_trunc", "otrunc", 6, self.op_open_trunc),
            ("truncate", "trunc", 3, self.op_truncate),
            ("ftruncate", "trunc", 3, self.op_ftruncate),
            ("fallocate", "fallocate", 4, self.op_fallocate),
            ("seek_data_hole", "seek", 4, self.op_seek),
            ("copy_file_range", "cfr", 4, self.op_cfr),
            ("rename", "rename", 5, self.op_rename),
            ("rename_exchange", "exchange", 2, self.op_exchange),
            ("link", "link", 2, self.op_link),
            ("unlink", "unlink", 3, self.op_unlink),
            ("mkdir", "dir", 2, self.op_mkdir),
            ("rmdir", "dir", 2, self.op_rmdir),
            ("symlink", "symlink", 2, self.op_symlink),
            ("readlink", "symlink", 1, self.op_readlink),
            ("setxattr", "xattr", 4, self.op_setxattr),
            ("getxattr", "xattr", 2, self.op_getxattr),
            ("listxattr", "xattr", 1, self.op_listxattr),
            ("removexattr", "xattr", 2, self.op_removexattr),
            ("set_wavefs_xattr", "xattr", 0.3, self.op_wavefs_xattr),
            ("chmod", "chmod", 2, self.op_chmod),
            ("chmod_sgid_dir", "sgiddir", 0.7, self.op_sgid_dir),
            ("chown", "chown", 2, self.op_chown),
            ("utime", "utime", 2, self.op_utime),
            ("fsync", "sync", 2, self.op_fsync),
            ("mmap_write", "mmap", 3, self.op_mmap_write),
            ("mmap_read", "mmap", 1.5, self.op_mmap_read),
            ("mmap_held", "mmap", 1.5, self.op_mmap_held),
            ("mmap_seek", "mmap", 1, self.op_mmap_seek),
            ("direct_write", "direct", 2, self.op_direct_write),
            ("direct_read", "direct", 1.5, self.op_direct_read),
            ("fadvise_dontneed", "cache", 1.5, self.op_dropcache),
            ("killpriv", "killpriv", 0.6, self.op_killpriv),
            ("killpriv_nogx", "killpriv_nogx", 0.3, self.op_killpriv_nogx),
        ]
        return [x for x in t if x[1] in self.enabled]

    def _open(self, path, flags, mode, label):
        if len(self.handles) >= 10:
            return self.op_close()
        hid = self.next_hid
        self.say(f"{label} h{hid} = open('{path}', {flagnames(flags)}, {oct(mode)})")

        def do(s):
            fd = os.open(s.p(path), flags, mode)
            s.fds[hid] = fd
            st = os.fstat(fd)
            return "dir" if stat.S_ISDIR(st.st_mode) else "reg" if stat.S_ISREG(st.st_mode) else "other"

        r = self.both(do)
        if r[0] == "ok":
            self.next_hid += 1
            self.handles[hid] = Handle(path, flags, r[1])
            self.check_handle(hid)
            if r[1] != "reg" and "dirhandle" not in self.enabled:
                self.record()
                self.say(f"close(h{hid}) (a directory; dirhandle family off)")

                def close(s):
                    os.close(s.fds.pop(hid))
                self.both(close)
                del self.handles[hid]
        self.check_paths([path])
        return True

    def _open_path(self):
        if self.handles and self.rng.random() < 0.35:  # several handles on one file
            return self.handles[self.rng.choice(sorted(self.handles))].path
        return self.pick_file()

    def op_open(self):
        rng = self.rng
        path = self._open_path()
        flags = rng.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR])
        if rng.random() < 0.6:
            flags |= os.O_CREAT
            if rng.random() < 0.2:
                flags |= os.O_EXCL
        if rng.random() < 0.15:
            flags |= os.O_APPEND
        mode = rng.choice([0o644, 0o600, 0o666, 0o755, 0o700, 0o4755, 0o2755, 0o444])
        if "dirhandle" in self.enabled and rng.random() < 0.08:  # open a directory
            ds = [p for p in FILES + DIRS if self.kind_of(p) == "dir"]
            if ds:
                path, flags = rng.choice(ds), os.O_RDONLY
        return self._open(path, flags, mode, "open")

    def op_open_trunc(self):
        rng = self.rng
        ex = self.existing_files()
        path = rng.choice(ex) if ex and rng.random() < 0.8 else self._open_path()
        r = rng.random()
        if r < 0.35:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # cp, shell '>'
        elif r < 0.55:
            flags = os.O_WRONLY | os.O_TRUNC
        elif r < 0.70:
            flags = os.O_RDWR | os.O_TRUNC | (os.O_CREAT if rng.random() < 0.5 else 0)
        elif r < 0.78:
            flags = os.O_RDONLY | os.O_TRUNC
        elif r < 0.88:
            flags = os.O_WRONLY | os.O_TRUNC | os.O_APPEND
        else:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_TRUNC
        mode = rng.choice([0o644, 0o600, 0o755])
        return self._open(path, flags, mode, "open")

    def op_close(self):
        if not self.handles:
            return False
        hid = self.rng.choice(sorted(self.handles))
        h = self.handles[hid]
        self.say(f"close(h{hid}) ['{h.path}']")

        def do(s):
            fd = s.fds.pop(hid)
            os.close(fd)
        self.both(do)
        del self.handles[hid]
        self.check_paths([h.path])
        return True

    def op_write(self):
        rng = self.rng
        hid = self.pick_handle(("reg", "dir") if rng.random() < 0.03 else ("reg",), "w")
        if hid is None:
            return False
        h = self.handles[hid]
        size = self.fsize(hid)
        n = self.pick_len()
        if h.kind != "reg" or (rng.random() < 0.5 and not h.append):
            off = self.pick_off(size, n)
            data = self.gen(n)
            self.say(f"pwrite(h{hid}, {fmt(data)}, off={off}) ['{h.path}', size {size}]")
            self.both(lambda s: os.pwrite(s.fds[hid], data, off))
        else:
            if rng.random() < 0.5 and not h.append:  # position first
                pos = self.pick_off(size, n)
                self.say(f"lseek(h{hid}, {pos}, SEEK_SET)")
                self.both(lambda s: os.lseek(s.fds[hid], pos, os.SEEK_SET))
                self.record()
            ra, rb = self.both_raw(lambda s: os.lseek(s.fds[hid], 0, os.SEEK_CUR))
            if ra != rb:
                raise Mismatch(f"state diverged: position of h{hid}", ra, rb)
            pos = size if h.append else (ra[1] if ra[0] == "ok" else 0)
            if pos + n > MAXF:
                n = max(1, MAXF - pos)
            data = self.gen(n)
            self.say(f"write(h{hid}, {fmt(data)}) ['{h.path}', pos {pos}, size {size}"
                     f"{', O_APPEND' if h.append else ''}]")
            self.both(lambda s: os.write(s.fds[hid], data))
        self.check_handle(hid)
        return True

    def op_read(self):
        rng = self.rng
        hid = self.pick_handle(("reg", "dir") if rng.random() < 0.03 else ("reg",), "r")
        if hid is None:
            return False
        h = self.handles[hid]
        size = self.fsize(hid)
        n = self.pick_len()
        if rng.random() < 0.5:
            off = self.pick_off(size, n) if rng.random() < 0.8 else size + rng.randint(0, 10)
            self.say(f"pread(h{hid}, {n}, off={off}) ['{h.path}', size {size}]")
            self.both(lambda s: os.pread(s.fds[hid], n, off))
        else:
            self.say(f"read(h{hid}, {n}) ['{h.path}', size {size}]")
            self.both(lambda s: os.read(s.fds[hid], n))
        self.check_handle(hid, content=False)
        return True

    def op_lseek(self):
        rng = self.rng
        hid = self.pick_handle()
        if hid is None:
            return False
        size = self.fsize(hid)
        whence = rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
        off = {os.SEEK_SET: rng.choice([0, size, rng.randint(0, size + 10), CHUNK]),
               os.SEEK_CUR: rng.randint(-size - 10, 1000),
               os.SEEK_END: rng.randint(-size - 10, 1000)}[whence]
        self.say(f"lseek(h{hid}, {off}, {['SEEK_SET', 'SEEK_CUR', 'SEEK_END'][whence]})")
        self.both(lambda s: os.lseek(s.fds[hid], off, whence))
        self.check_handle(hid, content=False)
        return True

    def op_truncate(self):
        ex = self.existing_files()
        path = self.rng.choice(ex) if ex and self.rng.random() < 0.75 else self.pick_file()
        size = self.pick_size(self.psize(path))
        self.say(f"truncate('{path}', {size})")
        self.both(lambda s: os.truncate(s.p(path), size))
        self.check_paths([path])
        return True

    def op_ftruncate(self):
        hid = self.pick_handle(want="w")
        if hid is None:
            return False
        size = self.pick_size(self.fsize(hid))
        self.say(f"ftruncate(h{hid}, {size}) ['{self.handles[hid].path}']")
        self.both(lambda s: os.ftruncate(s.fds[hid], size))
        self.check_handle(hid)
        return True

    def op_fallocate(self):
        rng = self.rng
        hid = self.pick_handle(want="w")
        if hid is None:
            return False
        size = self.fsize(hid)
        modes = [(0, "0"), (FALLOC_FL_KEEP_SIZE, "KEEP_SIZE"),
                 (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "PUNCH_HOLE|KEEP_SIZE"),
                 (FALLOC_FL_ZERO_RANGE, "ZERO_RANGE"),
                 (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, "ZERO_RANGE|KEEP_SIZE")]
        mode, mname = rng.choice(modes)
        if rng.random() < 0.03:
            mode, mname = FALLOC_FL_PUNCH_HOLE, "PUNCH_HOLE (without KEEP_SIZE: EOPNOTSUPP)"
        n = self.pick_len()
        if rng.random() < 0.3:  # whole chunks
            n = rng.randint(1, 2) * CHUNK
            off = rng.randint(0, 1) * CHUNK
        else:
            off = self.pick_off(size, n)
        if rng.random() < 0.02:
            n = 0  # EINVAL
        self.say(f"fallocate(h{hid}, {mname}, off={off}, len={n}) "
                 f"['{self.handles[hid].path}', size {size}]")
        self.both(lambda s: fallocate(s.fds[hid], mode, off, n))
        self.check_handle(hid)
        return True

    def op_seek(self):
        rng = self.rng
        hid = self.pick_handle()
        if hid is None:
            return False
        size = self.fsize(hid)
        whence = rng.choice([SEEK_DATA, SEEK_HOLE])
        r = rng.random()
        if r < 0.3:
            off = rng.randint(0, 2) * CHUNK
        elif r < 0.45:
            off = size + rng.randint(0, 100)  # >= size: ENXIO
        elif r < 0.55:
            off = 0
        else:
            off = rng.randint(0, max(0, size))
        wname = "SEEK_DATA" if whence == SEEK_DATA else "SEEK_HOLE"
        self.say(f"lseek(h{hid}, {off}, {wname}) ['{self.handles[hid].path}', size {size}]"
                 " (POSIX contract checked, offsets not compared)")

        ra, rb = self.both_raw(lambda s: self._seek_contract(s, hid, off, whence))
        self._seek_verdict(wname, ra, rb)
        self.check_handle(hid, content=False)
        return True

    def _seek_contract(self, s, hid, off, whence):
        """lseek(off, whence) on side s; ("contract ok",), ("violation", why)
        or ("err", errno). Offsets are not compared between the sides."""
        fd = s.fds[hid]
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        sz = os.fstat(fd).st_size
        # The bytes checked below are read through a separate handle when
        # this one is write-only.
        def rd(n, at):
            if self.handles[hid].readable:
                return os.pread(fd, n, at)
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
            try:
                return os.pread(rfd, n, at)
            finally:
                os.close(rfd)
        try:
            r = os.lseek(fd, off, whence)
        except OSError as e:
            if e.errno == errno.ENXIO and off < sz:
                # Only right for SEEK_DATA in a hole that runs to the end.
                if whence == SEEK_HOLE:
                    return ("violation", f"SEEK_HOLE gave ENXIO for offset {off} < size {sz}")
                tail = rd(sz - off, off)
                if tail.count(0) != len(tail):
                    i = next(i for i, c in enumerate(tail) if c)
                    return ("violation", f"SEEK_DATA gave ENXIO for offset {off} < size "
                                         f"{sz} but byte {off + i} is non-zero")
                return ("contract ok",)
            return ("err", e.errno)
        finally:
            os.lseek(fd, pos, os.SEEK_SET)
        if off >= sz:
            return ("violation", f"returned {r} for offset {off} >= size {sz}; "
                                 "expected ENXIO")
        if whence == SEEK_DATA:
            if not off <= r < sz:
                return ("violation", f"SEEK_DATA returned {r}, not in [{off}, {sz})")
            skipped = rd(r - off, off) if r > off else b""
            if skipped.count(0) != len(skipped):
                i = next(i for i, c in enumerate(skipped) if c)
                return ("violation", f"SEEK_DATA returned {r} but byte {off + i} "
                                     f"in the skipped range [{off}, {r}) is non-zero")
        else:
            if not off <= r <= sz:
                return ("violation", f"SEEK_HOLE returned {r}, not in [{off}, {sz}]")
            if r < sz:
                few = rd(min(16, sz - r), r)
                if few.count(0) != len(few):
                    return ("violation", f"SEEK_HOLE returned {r} but the bytes "
                                         f"there are not zero: {few.hex()}")
        return ("contract ok",)

    def _seek_verdict(self, wname, ra, rb):
        for side, rr in ((self.A, ra), (self.B, rb)):
            if rr[0] == "ok" and rr[1][0] == "violation":
                raise Mismatch(f"side {side.name} ({side.root}) violates the "
                               f"{wname} contract: {rr[1][1]}", ra, rb)
        self.result = ra
        if ra != rb:
            raise Mismatch("SEEK_DATA/SEEK_HOLE outcome (ENXIO for offset >= size vs "
                           "a result that keeps the contract)", ra, rb)

    def op_cfr(self):
        rng = self.rng
        hs = sorted(self.handles)
        hs = [h for h in hs if self.handles[h].kind == "reg"]
        if not hs:
            return False
        hin = self.pick_handle(want="r")
        same_file = [h for h in hs if self.handles[h].path == self.handles[hin].path and h != hin]
        hout = rng.choice(same_file) if same_file and rng.random() < 0.2 else \
            self.pick_handle(want="W")
        isize, osize = self.fsize(hin), self.fsize(hout)
        r = rng.random()
        if r < 0.4:  # whole chunks at chunk offsets
            n = rng.randint(1, 2) * CHUNK
            oin = rng.randint(0, 1) * CHUNK
            oout = rng.randint(0, 1) * CHUNK
        else:
            n = self.pick_len()
            oin = self.pick_off(isize, n) if rng.random() < 0.7 else rng.randint(0, max(0, isize))
            oout = self.pick_off(osize, n)
        if oout + n > MAXF:
            n = max(1, MAXF - oout)
        use_pos = rng.random() < 0.2
        if use_pos:
            oin = oout = None
        self.say(f"copy_file_range(h{hin} off={oin} -> h{hout} off={oout}, len={n}) "
                 f"['{self.handles[hin].path}' size {isize} -> "
                 f"'{self.handles[hout].path}' size {osize}] (looped until done or 0)")

        def do(s):
            total, calls = 0, 0
            while total < n and calls < 64:
                calls += 1
                try:
                    if use_pos:
                        c = os.copy_file_range(s.fds[hin], s.fds[hout], n - total)
                    else:
                        c = os.copy_file_range(s.fds[hin], s.fds[hout], n - total,
                                               oin + total, oout + total)
                except OSError as e:
                    return (total, errname(e.errno))
                if c == 0:
                    break
                total += c
            return (total, None)

        self.both(do)
        self.check_handle(hout)
        if hin != hout:
            self.check_handle(hin, content=False)
        return True

    def _rename(self, flags, fname):
        src, dst = self.pick_any(), self.pick_any()
        if self.rng.random() < 0.5 and self.kind_of(src) is None:
            src = self.rng.choice(FILES + DIRS)
        self.say(f"renameat2('{src}', '{dst}', {fname})")
        self.both(lambda s: renameat2(s.p(src), s.p(dst), flags))
        self.check_paths([src, dst])
        self.check_all_handles()
        return True

    def op_rename(self):
        if self.rng.random() < 0.65:
            return self._rename(0, "0")
        return self._rename(RENAME_NOREPLACE, "RENAME_NOREPLACE")

    def op_exchange(self):
        return self._rename(RENAME_EXCHANGE, "RENAME_EXCHANGE")

    def op_link(self):
        src = self.pick_file() if self.rng.random() < 0.9 else self.rng.choice(DIRS)
        dst = self.maybe_missing(0.7, self.pick_any)
        self.say(f"link('{src}', '{dst}')")
        self.both(lambda s: os.link(s.p(src), s.p(dst), follow_symlinks=False))
        self.check_paths([src, dst])
        return True

    def op_unlink(self):
        if self.handles and self.rng.random() < 0.4:  # a file still open
            path = self.handles[self.rng.choice(sorted(self.handles))].path
        else:
            path = self.pick_any()
        self.say(f"unlink('{path}')")
        self.both(lambda s: os.unlink(s.p(path)))
        self.check_paths([path])
        self.check_all_handles()
        return True

    def op_mkdir(self):
        gone = [d for d in DIRS if self.kind_of(d) is None]
        path = (self.rng.choice(gone) if gone and self.rng.random() < 0.7 else
                self.maybe_missing(0.6, self.pick_any))
        mode = self.rng.choice([0o777, 0o755, 0o700])
        self.say(f"mkdir('{path}', {oct(mode)})")
        self.both(lambda s: os.mkdir(s.p(path), mode))
        self.check_paths([path])
        return True

    def op_rmdir(self):
        dh = [h.path for _, h in sorted(self.handles.items()) if h.kind == "dir"]
        empty = [p for p in FILES + DIRS
                 if self.kind_of(p) == "dir" and not os.listdir(self.B.p(p))]
        if dh and self.rng.random() < 0.4:  # a directory that is still open
            path = self.rng.choice(dh)
        elif empty and self.rng.random() < 0.5:
            path = self.rng.choice(empty)
        else:
            path = self.rng.choice(DIRS) if self.rng.random() < 0.6 else self.pick_any()
        self.say(f"rmdir('{path}')")
        self.both(lambda s: os.rmdir(s.p(path)))
        self.check_paths([path])
        self.check_all_handles()
        return True

    def op_symlink(self):
        path = self.maybe_missing(0.6, self.pick_any)
        # Relative targets without "..": a symlink that is renamed elsewhere
        # then still points inside the tree under test.
        target = self.rng.choice(FILES + ["d0", "nowhere", os.path.basename(path)])
        self.say(f"symlink('{target}', '{path}')")
        self.both(lambda s: os.symlink(target, s.p(path)))
        self.check_paths([path])
        return True

    def op_readlink(self):
        path = self.pick_any()
        self.say(f"readlink('{path}')")
        self.both(lambda s: os.readlink(s.p(path)))
        return True

    def _xattr_target(self):
        """(description, function side -> path or fd)"""
        if self.handles and self.rng.random() < 0.3:
            hid = self.rng.choice(sorted(self.handles))
            return f"h{hid}", (lambda s: s.fds[hid]), ("h", hid)
        ex = self.existing_files()
        path = (self.rng.choice(ex) if ex and self.rng.random() < 0.6 else
                self.pick_any() if self.rng.random() < 0.25 else self.pick_file())
        return f"'{path}'", (lambda s: s.p(path)), ("p", path)

    def _xattr_check(self, tgt):
        if tgt[0] == "h":
            self.check_handle(tgt[1], content=False)
        else:
            self.check_paths([tgt[1]], content=False)

    def _xattr_budget(self, target_fn, name):
        """Bytes a new value may take: ext4 keeps all xattrs of an inode in
        one 4 KiB block (plus a little in-inode space); stay well below."""
        try:
            cur = self.xattrs(target_fn(self.B), True)
        except OSError:
            return 3800
        used = sum(len(n) + 24 + (len(v) if isinstance(v, bytes) else 0)
                   for n, v in cur if n != name)
        return max(0, 3800 - used - len(name) - 24)

    def op_setxattr(self):
        rng = self.rng
        tdesc, tfn, tgt = self._xattr_target()
        name = f"user.k{rng.randint(0, 4)}"
        r = rng.random()
        n = (0 if r < 0.1 else rng.randint(1, 64) if r < 0.5
             else rng.randint(65, 1000) if r < 0.85 else rng.randint(1000, 3800))
        n = min(n, self._xattr_budget(tfn, name))
        value = self.gen(n) if n else b""
        flags, fname = rng.choice([(0, "0"), (0, "0"), (os.XATTR_CREATE, "XATTR_CREATE"),
                                   (os.XATTR_REPLACE, "XATTR_REPLACE")])
        self.say(f"setxattr({tdesc}, '{name}', {fmt(value)}, {fname})")
        self.both(lambda s: os.setxattr(tfn(s), name, value, flags))
        self._xattr_check(tgt)
        return True

    def _xattr_name(self, tfn):
        """Mostly a name the target has (on B, the reference side)."""
        try:
            have = [n for n, _ in self.xattrs(tfn(self.B), True)]
        except OSError:
            have = []
        if have and self.rng.random() < 0.6:
            return self.rng.choice(have)
        return f"user.k{self.rng.randint(0, 4)}"

    def op_getxattr(self):
        tdesc, tfn, tgt = self._xattr_target()
        name = self._xattr_name(tfn)
        self.say(f"getxattr({tdesc}, '{name}')")
        self.both(lambda s: os.getxattr(tfn(s), name))
        return True

    def op_listxattr(self):
        tdesc, tfn, tgt = self._xattr_target()
        self.say(f"listxattr({tdesc}) (user.wavefs.* filtered out)")
        self.both(lambda s: sorted(n for n in os.listxattr(tfn(s))
                                   if not n.startswith("user.wavefs.")))
        return True

    def op_removexattr(self):
        tdesc, tfn, tgt = self._xattr_target()
        name = self._xattr_name(tfn)
        self.say(f"removexattr({tdesc}, '{name}')")
        self.both(lambda s: os.removexattr(tfn(s), name))
        self._xattr_check(tgt)
        return True

    def op_wavefs_xattr(self):
        """user.wavefs.state is wavefs's own: setting it must fail on A (B, a
        plain directory, is not asked; user.wavefs.* is never compared)."""
        ex = self.existing_files()
        if not ex:
            return False
        path = self.rng.choice(ex)
        self.say(f"setxattr('{path}', 'user.wavefs.state', b'stored') on side A only "
                 "(must fail)")
        before = attempt(lambda: os.getxattr(self.A.p(path), "user.wavefs.state"))
        r = attempt(lambda: os.setxattr(self.A.p(path), "user.wavefs.state", b"stored"))
        self.result = r
        after = attempt(lambda: os.getxattr(self.A.p(path), "user.wavefs.state"))
        if self._a_is_wavefs():
            if r[0] != "err":
                raise Mismatch("setting user.wavefs.state on A succeeded (must be refused)",
                               r, "(an error)")
            if before != after and before[0] == "ok" and after == ("ok", b"stored"):
                raise Mismatch("user.wavefs.state changed by a refused set", after, before)
        return True

    def _a_is_wavefs(self):
        if not hasattr(self, "_wavefs"):
            self._wavefs = False
            try:
                with open("/proc/self/mountinfo") as f:
                    best = ""
                    for line in f:
                        parts = line.split()
                        mp = parts[4].replace("\\040", " ")
                        fstype = parts[parts.index("-") + 1]
                        if (self.A.root == mp or self.A.root.startswith(mp.rstrip("/") + "/")) \
                                and len(mp) >= len(best):
                            best, self._wavefs = mp, fstype.startswith("fuse")
            except OSError:
                pass
        return self._wavefs

    def _no_sgid_dir(self, tfn, mode):
        """Setgid directories are the sgiddir family's (new entries inherit
        the group there): without it, S_ISGID is not set on a directory."""
        if "sgiddir" in self.enabled or not mode & stat.S_ISGID:
            return mode
        def isdir(s):
            return stat.S_ISDIR(os.stat(tfn(s)).st_mode)
        ra, rb = self.both_raw(isdir)
        return mode & ~stat.S_ISGID if ("ok", True) in (ra, rb) else mode

    def op_chmod(self):
        rng = self.rng
        if self.handles and rng.random() < 0.25:
            hid = rng.choice(sorted(self.handles))
            mode = rng.choice([0o644, 0o4755, 0o2755, 0o6777, 0o600, 0o2745])
            mode = self._no_sgid_dir(lambda s: s.fds[hid], mode)
            self.say(f"fchmod(h{hid}, {oct(mode)}) ['{self.handles[hid].path}']")
            self.both(lambda s: os.chmod(s.fds[hid], mode))
            self.check_handle(hid, content=False)
            return True
        if rng.random() < 0.2:
            path = rng.choice(DIRS)
            mode = rng.choice([0o777, 0o755, 0o700, 0o1777])
        else:
            path = self.pick_file()
            mode = rng.choice([0o644, 0o600, 0o755, 0o777, 0o4755, 0o2755, 0o6777,
                               0o2745, 0o1755, 0o000, 0o444])
            mode = self._no_sgid_dir(lambda s: s.p(path), mode)
        self.say(f"chmod('{path}', {oct(mode)})")
        self.both(lambda s: os.chmod(s.p(path), mode))
        self.check_paths([path], content=False)
        return True

    def op_sgid_dir(self):
        path = self.rng.choice(DIRS)
        mode = self.rng.choice([0o2777, 0o2755, 0o777])
        gid = self.rng.choice([1000, 65534, 0])
        self.say(f"chown('{path}', -1, {gid}); chmod('{path}', {oct(mode)})")
        self.both(lambda s: os.chown(s.p(path), -1, gid))
        self.both(lambda s: os.chmod(s.p(path), mode))
        self.check_paths([path], content=False)
        return True

    def op_chown(self):
        rng = self.rng
        uid = rng.choice([0, 1000, 65534, -1])
        gid = rng.choice([0, 1000, 65534, -1])
        if self.handles and rng.random() < 0.25:
            hid = rng.choice(sorted(self.handles))
            self.say(f"fchown(h{hid}, {uid}, {gid}) ['{self.handles[hid].path}']")
            self.both(lambda s: os.chown(s.fds[hid], uid, gid))
            self.check_handle(hid, content=False)
            return True
        path = self.pick_file() if rng.random() < 0.85 else rng.choice(DIRS)
        follow = rng.random() < 0.85
        self.say(f"{'chown' if follow else 'lchown'}('{path}', {uid}, {gid})")
        self.both(lambda s: os.chown(s.p(path), uid, gid, follow_symlinks=follow))
        self.check_paths([path], content=False)
        return True

    def op_utime(self):
        rng = self.rng
        at = rng.randint(0, 2 ** 31) * 10 ** 9 + rng.randint(0, 10 ** 9 - 1)
        mt = rng.randint(0, 2 ** 31) * 10 ** 9 + rng.randint(0, 10 ** 9 - 1)
        if self.handles and rng.random() < 0.25:
            hid = rng.choice(sorted(self.handles))
            self.say(f"futimens(h{hid}, atime_ns={at}, mtime_ns={mt})")
            self.both(lambda s: os.utime(s.fds[hid], ns=(at, mt)))
            ra, rb = self.both_raw(lambda s: os.fstat(s.fds[hid]).st_mtime_ns)
            if ra != rb:
                raise Mismatch(f"mtime of h{hid} after futimens", ra, rb)
            return True
        path = self.pick_file() if rng.random() < 0.8 else rng.choice(DIRS)
        follow = rng.random() < 0.85
        self.say(f"utime('{path}', ns=({at}, {mt}), follow_symlinks={follow})")
        self.both(lambda s: os.utime(s.p(path), ns=(at, mt), follow_symlinks=follow))
        if follow:
            ra, rb = self.both_raw(lambda s: os.stat(s.p(path)).st_mtime_ns)
            if ra != rb:
                raise Mismatch(f"mtime of '{path}' (followed) after utime", ra, rb)
        self.check_path(path, content=False, mtime=not follow)
        return True

    def op_fsync(self):
        hid = self.pick_handle(("reg", "dir"))
        if hid is None:
            return False
        fn, name = self.rng.choice([(os.fsync, "fsync"), (os.fdatasync, "fdatasync")])
        self.say(f"{name}(h{hid}) ['{self.handles[hid].path}']")
        self.both(lambda s: fn(s.fds[hid]))
        self.check_handle(hid, content=self.rng.random() < 0.3)
        return True

    # MAP_SHARED mappings of a whole file (an fd opened O_WRONLY or with
    # O_APPEND gets EACCES on both sides). Accesses stay below the size the
    # file had when mapped and nothing shrinks it while mapped: past the end a
    # mapping faults with SIGBUS.
    def _mapping(self, want):
        hid = self.pick_handle(("reg",), want)
        if want == "W" and self.rng.random() < 0.8:  # mostly O_RDWR, no O_APPEND
            rw = sorted(h for h, x in self.handles.items() if x.kind == "reg"
                        and x.readable and x.writable and not x.append)
            hid = self.rng.choice(rw) if rw else hid
        if hid is None:
            return None
        size = self.fsize(hid)
        if size == 0:
            return None
        n = min(self.pick_len(), size)
        return hid, size, n, self.rng.randint(0, size - n)

    @staticmethod
    def _map(fd, size, write):
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
        return mmap.mmap(fd, size, mmap.MAP_SHARED, prot)

    def op_mmap_write(self):
        m = self._mapping("W")
        if m is None:
            return False
        hid, size, n, off = m
        data = self.gen(n)
        sync = self.rng.random() < 0.5
        self.say(f"mmap(h{hid}, {size}, RW)[{off}:{off + n}] = {fmt(data)}"
                 f"{'; msync' if sync else ''}; munmap ['{self.handles[hid].path}']")

        def do(s):
            mp = self._map(s.fds[hid], size, True)
            try:
                mp[off:off + n] = data
                if sync:
                    mp.flush()
            finally:
                mp.close()
            return n
        self.both(do)
        self.check_handle(hid)
        return True

    def op_mmap_read(self):
        m = self._mapping("r")
        if m is None:
            return False
        hid, size, n, off = m
        self.say(f"mmap(h{hid}, {size}, R)[{off}:{off + n}] ['{self.handles[hid].path}']")

        def do(s):
            mp = self._map(s.fds[hid], size, False)
            try:
                return hashlib.sha256(mp[off:off + n]).hexdigest()
            finally:
                mp.close()
        self.both(do)
        return True

    def op_mmap_held(self):
        """A mapping written, then the file changed through another handle
        (pwrite, ftruncate up, fsync) while still mapped: reads through the
        mapping see the change, and the mapping's own bytes survive it."""
        m = self._mapping("W")
        if m is None:
            return False
        hid, size, n, off = m
        other = self.pick_handle(("reg",), "W")
        if other is None:
            return False
        rng = self.rng
        data = self.gen(n)
        k = min(self.pick_len(), size)
        off2 = rng.randint(0, size - k)
        data2 = self.gen(k)
        then = rng.choice(["pwrite", "ftruncate", "fsync"])
        grow = size + rng.randint(1, 2 * CHUNK)
        what = {"pwrite": f"pwrite(h{other}, {fmt(data2)}, off={off2})",
                "ftruncate": f"ftruncate(h{other}, {grow})",
                "fsync": f"fsync(h{other})"}[then]
        self.say(f"mmap(h{hid}, {size}, RW)[{off}:{off + n}] = {fmt(data)}; {what}; "
                 f"read the mapping [{off2}:{off2 + k}] and [{off}:{off + n}]; munmap "
                 f"['{self.handles[hid].path}', h{other} '{self.handles[other].path}']")

        def do(s):
            mp = self._map(s.fds[hid], size, True)
            try:
                mp[off:off + n] = data
                if then == "pwrite":
                    r = os.pwrite(s.fds[other], data2, off2)
                elif then == "ftruncate":
                    r = os.ftruncate(s.fds[other], grow)
                else:
                    r = os.fsync(s.fds[other])
                return (r, hashlib.sha256(mp[off2:off2 + k]).hexdigest(),
                        hashlib.sha256(mp[off:off + n]).hexdigest())
            finally:
                mp.close()
        self.both(do)
        self.check_handle(hid)
        self.check_handle(other)
        return True

    def op_mmap_seek(self):
        """SEEK_DATA/SEEK_HOLE while a mapping holds pages written through it
        and not yet written back (no msync): they are data."""
        m = self._mapping("W")
        if m is None:
            return False
        hid, size, n, off = m
        rng = self.rng
        data = self.gen(n)
        whence = rng.choice([SEEK_DATA, SEEK_HOLE])
        at = rng.choice([0, off, max(0, off - rng.randint(1, CHUNK)),
                         rng.randint(0, size - 1)])
        wname = "SEEK_DATA" if whence == SEEK_DATA else "SEEK_HOLE"
        self.say(f"mmap(h{hid}, {size}, RW)[{off}:{off + n}] = {fmt(data)}; "
                 f"lseek(h{hid}, {at}, {wname}) (contract checked); munmap "
                 f"['{self.handles[hid].path}']")
        mapped = {}

        def write(s):
            mp = self._map(s.fds[hid], size, True)
            mapped[s.name] = mp
            mp[off:off + n] = data
            return n
        try:
            self.both(write)
            ra, rb = self.both_raw(lambda s: self._seek_contract(s, hid, at, whence))
        finally:
            for mp in mapped.values():
                mp.close()
        self._seek_verdict(wname, ra, rb)
        self.check_handle(hid)
        return True

    # O_DIRECT wants offsets, lengths and buffers aligned to the logical
    # block (ext4: 512 B or 4 KiB); 4 KiB suits both sides. The handle is
    # opened and closed in the step, while the others keep their cached
    # pages, which must not hide what the direct write put.
    def _direct_span(self):
        ex = self.existing_files()
        path = self.rng.choice(ex) if ex and self.rng.random() < 0.85 else self.pick_file()
        size = self.psize(path) if self.kind_of(path) == "reg" else 0
        blocks = self.rng.choice([1, 2, 3, 16, 255, 256, 257, 512])
        n = blocks * 4096
        r = self.rng.random()
        if r < 0.3:  # straddles a chunk boundary
            off = self.rng.randint(1, 2) * CHUNK - self.rng.randint(1, blocks) * 4096
        elif r < 0.5:  # at or past the end
            off = (size + 4095) // 4096 * 4096 + self.rng.choice([0, 0, 4096, MiB])
        else:
            off = self.rng.randint(0, max(0, size) // 4096) * 4096
        off = min(max(0, off), (MAXF - n) // 4096 * 4096)
        return path, off, n

    @staticmethod
    def _direct(s, path, flags, n, io):
        """io(fd, buf) on path opened with flags, buf a page-aligned n bytes."""
        with mmap.mmap(-1, n) as buf:
            fd = os.open(s.p(path), flags)
            try:
                return io(fd, buf)
            finally:
                os.close(fd)

    def op_direct_write(self):
        path, off, n = self._direct_span()
        data = self.gen(n)
        flags = os.O_DIRECT | self.rng.choice([os.O_WRONLY, os.O_RDWR])
        self.say(f"fd = open('{path}', {flagnames(flags)}); pwrite(fd, {fmt(data)}, "
                 f"off={off}); close(fd)")

        def write(fd, buf):
            buf[:] = data
            return os.pwritev(fd, [buf], off)
        self.both(lambda s: self._direct(s, path, flags, n, write))
        self.check_path(path)
        self.check_all_handles()
        return True

    def op_direct_read(self):
        path, off, n = self._direct_span()
        self.say(f"fd = open('{path}', O_RDONLY|O_DIRECT); pread(fd, {n}, off={off}); "
                 "close(fd)")

        def read(fd, buf):
            got = os.preadv(fd, [buf], off)
            return got, hashlib.sha256(buf[:got]).hexdigest()
        self.both(lambda s: self._direct(s, path, os.O_RDONLY | os.O_DIRECT, n, read))
        return True

    def op_dropcache(self):
        """Drops the cached pages of one file, then compares its contents
        (the reads now reach the file system, not the page cache)."""
        if self.handles and self.rng.random() < 0.5:
            hid = self.pick_handle()
            if hid is None:
                return False
            self.say(f"posix_fadvise(h{hid}, 0, 0, DONTNEED) ['{self.handles[hid].path}']")
            self.both(lambda s: os.posix_fadvise(s.fds[hid], 0, 0, os.POSIX_FADV_DONTNEED))
            self._drop_now = False
            self.check_handle(hid)
            return True
        ex = self.existing_files()
        if not ex:
            return False
        path = self.rng.choice(ex)
        self.say(f"posix_fadvise(open('{path}'), 0, 0, DONTNEED)")

        def do(s):
            fd = os.open(s.p(path), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        self.both(do)
        self.check_paths([path])
        return True

    def op_killpriv_nogx(self):
        return self.op_killpriv([0o2767, 0o6767])

    def op_killpriv(self, modes=(0o6777, 0o4777, 0o2777, 0o4767, 0o6777)):
        """A root-owned setuid/setgid file, written by a non-owner (uid/gid
        65534, no capabilities): the kernel's rule (ext4) clears S_ISUID, and
        S_ISGID when group-exec is set (since Linux 6.2 also without
        group-exec when the writer is not in the file's group)."""
        rng = self.rng
        ex = [f for f in self.existing_files() if "/" not in f] or self.existing_files()
        if not ex:
            return False
        path = rng.choice(ex)
        mode = rng.choice(modes)
        how = rng.choice(["write", "write", "write", "pwrite at the end", "ftruncate +1",
                          "open O_TRUNC", "write 256 KiB"])
        self.say(f"chown('{path}', 0, 0); chmod('{path}', {oct(mode)})")
        self.both(lambda s: os.chown(s.p(path), 0, 0))
        self.both(lambda s: os.chmod(s.p(path), mode))
        self.check_path(path, content=False)
        self.record()
        self.say(f"killpriv: child as uid/gid 65534 opens '{path}' O_WRONLY, then {how}; "
                 "then compare modes")

        def child(s):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    os.setgroups([])
                    os.setresgid(65534, 65534, 65534)
                    os.setresuid(65534, 65534, 65534)
                    trunc = os.O_TRUNC if how == "open O_TRUNC" else 0
                    fd = os.open(path, os.O_WRONLY | trunc, dir_fd=s.rootfd)
                    if how == "write":
                        res = f"wrote {os.write(fd, b'K')}"
                    elif how == "write 256 KiB":
                        # Big enough to stay in the pipe when requests are
                        # spliced (the it_splice_* variants).
                        res = f"wrote {os.write(fd, bytes(range(256)) * 1024)}"
                    elif how == "open O_TRUNC":
                        res = "opened with O_TRUNC"
                    elif how == "pwrite at the end":
                        res = f"wrote {os.pwrite(fd, b'Z', os.fstat(fd).st_size)}"
                    else:
                        os.ftruncate(fd, os.fstat(fd).st_size + 1)
                        res = "truncated"
                    os.close(fd)
                    msg = "ok " + res
                except OSError as e:
                    msg = "err " + errname(e.errno)
                except BaseException as e:  # noqa: BLE001
                    msg = f"exc {e!r}"
                try:
                    os.write(w, msg.encode())
                finally:
                    os._exit(0)
            os.close(w)
            data = b""
            while True:
                b = os.read(r, 4096)
                if not b:
                    break
                data += b
            os.close(r)
            os.waitpid(pid, 0)
            return data.decode()

        self.both(child)
        self.check_path(path)
        return True

    # ------------------------------------------------------------ driver

    def setup(self):
        for s in self.sides:
            os.makedirs(s.root, exist_ok=True)
            left = os.listdir(s.root)
            if left:
                print(f"fsdiff: {s.name} = {s.root} is not empty ({len(left)} entries); "
                      "the run phase needs empty directories", file=sys.stderr)
                sys.exit(2)
            os.chmod(s.root, 0o777)
            for d in DIRS:
                os.mkdir(s.p(d))
                os.chmod(s.p(d), 0o777)
            s.rootfd = os.open(s.root, os.O_PATH | os.O_DIRECTORY)

    def run(self, steps):
        self.setup()
        weights = [w for _, _, w, _ in self.ops]
        while self.step < steps:
            self.step += 1
            for _ in range(50):
                name, fam, w, fn = self.rng.choices(self.ops, weights)[0]
                self.say(f"{name}: (choosing its arguments)")
                if fn():
                    break
            else:
                name = "(none)"
                self.say("(no applicable operation)")
            self.record()
            c = self.counts.setdefault(name, [0, 0, collections.Counter()])
            if self.result is not None and self.result[0] == "err":
                c[1] += 1
                c[2][errname(self.result[1])] += 1
            else:
                c[0] += 1
        # Wind down: close every handle, then (utime family) give every entry
        # explicit times so that mtimes compare in the full tree compare and
        # in a later --phase verify.
        self.step += 1
        for hid in sorted(self.handles):
            h = self.handles[hid]
            self.say(f"final close(h{hid}) ['{h.path}']")

            def do(s):
                os.close(s.fds.pop(hid))
            self.both(do)
            self.record()
        self.handles.clear()
        self.full_compare(mtime=False)
        if self.mtime_compare:
            self.utime_all()
            self.full_compare(mtime=True)
        for s in self.sides:
            os.close(s.rootfd)

    def utime_all(self):
        entries = []

        def walk(rel):
            for name in sorted(os.listdir(self.A.p(rel))):
                r = name if rel == "." else f"{rel}/{name}"
                entries.append(r)
                if stat.S_ISDIR(os.lstat(self.A.p(r)).st_mode):
                    walk(r)
        walk(".")
        entries.insert(0, ".")  # the root too: a verify of its parent compares it
        for r in reversed(entries):  # children first, directories after
            t = 1_600_000_000 * 10 ** 9 + self.rng.randint(0, 10 ** 17)
            self.say(f"final utime('{r}', ns=({t}, {t}), follow_symlinks=False)")
            self.both(lambda s: os.utime(s.p(r), ns=(t, t), follow_symlinks=False))
            self.record()

    def report(self, m, extra_args=""):
        o = self.out
        print(f"fsdiff: MISMATCH (seed {self.seed}, step {self.step})", file=o)
        print(f"  A = {self.A.root}", file=o)
        print(f"  B = {self.B.root}", file=o)
        print(f"  operation: {self.desc}", file=o)
        print(f"  what differs: {m.what}", file=o)
        print(f"    A gave: {fmt(m.a)}", file=o)
        print(f"    B gave: {fmt(m.b)}", file=o)
        if m.note:
            print(f"    {m.note}", file=o)
        if self.handles:
            print("  open handles: " + ", ".join(
                f"h{h}:'{x.path}' {flagnames(x.flags)}" for h, x in sorted(self.handles.items())),
                file=o)
        print(f"  last operations (up to {self.history.maxlen}):", file=o)
        for line in self.history:
            print(f"    {line}", file=o)
        print(f"  reproduce: fsdiff.py --a DIR --b DIR --seed {self.seed} "
              f"--steps {self.step}{extra_args} (two fresh empty directories)", file=o)
        o.flush()


def parse_ops(spec):
    enabled = set()
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        neg = item.startswith("-")
        name = item.lstrip("-")
        names = set(FAMILIES) if name == "all" else {name}
        if name != "all" and name not in FAMILIES:
            raise SystemExit(f"fsdiff: unknown op family '{name}'; known: all, "
                             + ", ".join(FAMILIES))
        enabled = enabled - names if neg else enabled | names
    return enabled | {"core"}


def verify(a, b, enabled, out=sys.stdout):
    t = Tester(a, b, 0, enabled, out)
    try:
        t.full_compare(mtime="utime" in enabled)
    except Mismatch as m:
        t.report(m)
        print("fsdiff: verify FAILED", file=out)
        return 1
    print(f"fsdiff: verify of {a} and {b}: all equal", file=out)
    return 0


def run_one(a, b, seed, steps, enabled, extra_args="", out=sys.stdout, stats=False):
    os.umask(0o022)
    t = Tester(a, b, seed, enabled, out)
    start = time.monotonic()
    try:
        t.run(steps)
    except Mismatch as m:
        t.report(m, extra_args)
        return 1
    if stats:
        for name in sorted(t.counts):
            ok, err, errs = t.counts[name]
            print(f"  {name:18} ok {ok:5}  errors {err:5}  "
                  + " ".join(f"{k}:{v}" for k, v in errs.most_common()), file=out)
    print(f"fsdiff: {steps} steps, seed {seed}, all equal "
          f"({time.monotonic() - start:.1f} s)", file=out)
    return 0


def self_test(args, enabled):
    """Both sides are plain local directories: every op must agree."""
    base = tempfile.mkdtemp(prefix="fsdiff-selftest.", dir=args.tmp)
    rc = 0
    try:
        for seed in range(args.seed, args.seed + args.seeds):
            a, b = os.path.join(base, f"a/s{seed}"), os.path.join(base, f"b/s{seed}")
            rc |= run_one(a, b, seed, args.steps, enabled, f" --ops {args.ops}", stats=args.stats)
            if rc:
                break
            rc |= verify(os.path.join(base, "a"), os.path.join(base, "b"), enabled)
            if rc:
                break
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("fsdiff: self-test " + ("FAILED" if rc else "passed"))
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="op families (--ops):\n" + "\n".join(
                                     f"  {k:10} {v}" for k, v in FAMILIES.items()))
    ap.add_argument("--a", help="side A (the file system under test)")
    ap.add_argument("--b", help="side B (a plain local directory)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--phase", choices=["run", "verify"], default="run")
    ap.add_argument("--ops", default="all",
                    help="comma list of op families, 'all', '-family' removes one "
                         "(core is always on)")
    ap.add_argument("--self-test", action="store_true",
                    help="run --seeds seeds from --seed on two local temp dirs")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--stats", action="store_true",
                    help="print per-operation counts of successes and errnos")
    ap.add_argument("--tmp", default="/var/tmp", help="parent of the self-test's dirs")
    args = ap.parse_args()
    enabled = parse_ops(args.ops)
    if args.self_test:
        return self_test(args, enabled)
    if not args.a or not args.b:
        ap.error("--a and --b are required (or --self-test)")
    if args.phase == "verify":
        return verify(args.a, args.b, enabled)
    extra = f" --ops {args.ops}" if args.ops != "all" else ""
    return run_one(args.a, args.b, args.seed, args.steps, enabled, extra, stats=args.stats)


if __name__ == "__main__":
    sys.exit(main())
