"""Deterministic content for test_share.sh, streamed so no source copy of a
multi-GiB file is kept on disk.

  share_gen.py write PATH    writes the file (holes are seeked over)
  share_gen.py stream        writes the same bytes to stdout (holes as zeros)

Layout (4 MiB chunks): 16 random chunks, then one random chunk repeated
(dedup: stored once, but every index has a data entry in the map), a
100-chunk hole, then random chunks to a short last chunk.
"""
import os
import random
import sys

CHUNK = 4 << 20
SIZE = int(os.environ.get("SHARE_GEN_SIZE", str((5 << 30) - (3 << 20) + 777)))
N = (SIZE + CHUNK - 1) // CHUNK
HOLE_START = N - 180
HOLE_END = HOLE_START + 100
REPEAT = random.Random(7).randbytes(CHUNK)


def chunk(i):
    """Bytes of chunk i, or None for a hole."""
    length = min(CHUNK, SIZE - i * CHUNK)
    if HOLE_START <= i < HOLE_END:
        return None
    if 16 <= i < HOLE_START:
        return REPEAT[:length]
    return random.Random(1000 + i).randbytes(length)


def main():
    if sys.argv[1] == "write":
        with open(sys.argv[2], "wb") as f:
            for i in range(N):
                data = chunk(i)
                if data is not None:
                    f.seek(i * CHUNK)
                    f.write(data)
            f.truncate(SIZE)
    else:
        out = sys.stdout.buffer
        zeros = bytes(CHUNK)
        for i in range(N):
            data = chunk(i)
            out.write(data if data is not None
                      else zeros[:min(CHUNK, SIZE - i * CHUNK)])


main()
