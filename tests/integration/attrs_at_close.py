#!/usr/bin/env python3
"""What tar, cp -p and rsync --inplace do to a file before they close it:
write, then set its times, owner and mode through the open descriptor.

  attrs_at_close.py DIR [hold] -- in DIR (the mount, or a local directory):
    new      created, written, futimens + fchown + fchmod, closed
    old      an existing file (made by the caller) opened without O_TRUNC,
             overwritten in the middle and extended, then the same calls
    other    created and written, then *another* process (a child) chmods
             and touches it by path while it is open; prints "other"
    synced   created, written, fchmod + futimens, fsync; prints "synced"
  With "hold", other and synced stay open: the process sleeps until killed,
  so the caller can kill the daemon with both descriptors open.
"""
import os
import subprocess
import sys
import time

d = sys.argv[1]
T1 = (1700000000, 123456789)
T2 = (1600000000, 987654321)


def ns(t):
    return t[0] * 10**9 + t[1]


def payload(seed, n):
    out = bytearray()
    x = seed
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


fd = os.open(os.path.join(d, "new"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, payload(1, 9728))
os.write(fd, payload(2, 10240))
os.utime(fd, ns=(ns(T1), ns(T2)))
os.fchown(fd, 1234, 5678)
os.fchmod(fd, 0o640)
os.close(fd)

fd = os.open(os.path.join(d, "old"), os.O_WRONLY)
os.pwrite(fd, payload(3, 5000), 100000)
os.pwrite(fd, payload(4, 70000), 300000)  # past the old end
os.utime(fd, ns=(ns(T2), ns(T1)))
os.fchown(fd, 42, 43)
os.fchmod(fd, 0o604)
os.close(fd)

changer = subprocess.Popen(
    [sys.executable, "-c",
     "import os, sys; p = sys.stdin.readline().strip(); os.chmod(p, 0o651); "
     "os.utime(p, ns=(1500000000500000000, 1500000000500000000)); "
     "print('done', flush=True)"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
fd = os.open(os.path.join(d, "other"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, payload(5, 30000))
# By path, opening nothing (a touch would open and close the file, and its
# close commit everything), from a process started before the file was
# opened (a child forked after would close an inherited copy of the
# descriptor at its exec, and that close commits too).
changer.stdin.write(os.path.join(d, "other") + "\n")
changer.stdin.flush()
if changer.stdout.readline().strip() != "done" or changer.wait() != 0:
    sys.exit("the changer process failed")
print("other", flush=True)

fd2 = os.open(os.path.join(d, "synced"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
              0o600)
os.write(fd2, payload(6, 50000))
os.fchmod(fd2, 0o614)
os.utime(fd2, ns=(ns(T1), ns(T1)))
os.fsync(fd2)
print("synced", flush=True)
if len(sys.argv) > 2 and sys.argv[2] == "hold":
    while True:
        time.sleep(1)
os.close(fd2)
os.close(fd)
