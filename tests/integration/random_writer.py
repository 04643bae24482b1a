#!/usr/bin/env python3
"""random_writer.py SEED COUNT FILE... : one open file per path, COUNT
pwrites of 4 KiB to 1 MiB at random offsets within each file's size (the
same bytes at the same offsets in every file), as a torrent client or a
database writes. With --kill-self the process kills itself (SIGKILL) after
the writes (the kernel then closes its files); with --hold MARKER it
creates MARKER after the writes and keeps its files open until killed;
with --text TEXT every write starts with TEXT (a plaintext marker)."""
import os
import random
import signal
import sys


def main():
    args = sys.argv[1:]
    kill_self = "--kill-self" in args
    args = [a for a in args if a != "--kill-self"]
    hold = None
    if "--hold" in args:
        i = args.index("--hold")
        hold = args[i + 1]
        del args[i:i + 2]
    text = b""
    if "--text" in args:
        i = args.index("--text")
        text = args[i + 1].encode()
        del args[i:i + 2]
    seed, count, paths = int(args[0]), int(args[1]), args[2:]
    rng = random.Random(seed)
    fds = [os.open(p, os.O_RDWR) for p in paths]
    size = os.fstat(fds[0]).st_size
    for _ in range(count):
        n = rng.randint(4096, 1 << 20)
        off = rng.randrange(0, max(1, size - n))
        data = text + rng.randbytes(n - len(text))
        for fd in fds:
            if os.pwrite(fd, data, off) != n:
                sys.exit(f"short write at {off} in one of {paths}")
    if kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    if hold is not None:
        open(hold, "w").close()
        while True:
            signal.pause()
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":
    main()
