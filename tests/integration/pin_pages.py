#!/usr/bin/env python3
"""pin_pages.py FILE OFFSET LENGTH

Maps LENGTH bytes of FILE at OFFSET and mlock()s them, so that the kernel
cannot evict those page-cache pages on its own (reclaim, or whatever else
this machine's kernel does: it has been seen dropping a single clean page of
an idle file with every reclaim counter at 0). An invalidation still drops
them: a FUSE open without keep_cache, the daemon's notify_inval_inode, or
auto_inval_data seeing a new mtime all unmap and drop mapped pages too. So a
test that pins a range measures only what the mount does to the cache.

Prints "pinned" once the range is locked, then holds it until killed. Needs CAP_IPC_LOCK or a memlock limit of
at least LENGTH (tests run as root).
"""
import ctypes
import ctypes.util
import mmap
import os
import signal
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: pin_pages.py FILE OFFSET LENGTH", file=sys.stderr)
        return 2
    path, offset, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd,
                     offset)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        print(f"pin_pages.py: mmap {path}: {os.strerror(err)}", file=sys.stderr)
        return 1
    if libc.mlock(addr, length) != 0:
        err = ctypes.get_errno()
        print(f"pin_pages.py: mlock {path}: {os.strerror(err)}", file=sys.stderr)
        return 1
    print("pinned", flush=True)
    while True:
        signal.pause()  # until the test kills us (SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
