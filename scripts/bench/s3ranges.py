# s3ranges.py SIZE COUNT SEED OBJECT_SIZE: the random reads of bench.sh's
# randread.py (same seed, same offsets, same order), as ranged GETs of a file
# stored as OBJECT_SIZE pieces named p00000, p00001, ... (split -d -a 5).
# Prints one "KEY FIRST LAST" line per request (a read that crosses a piece
# boundary takes two requests); the bytes of all requests in order are the
# bytes randread.py reads.
import random
import sys

size, count, seed, obj = (int(a) for a in sys.argv[1:5])
blk = 1 << 20
rng = random.Random(seed)
offs = [rng.randrange(0, max(1, size - blk + 1)) & ~4095 for _ in range(count)]
for off in offs:
    end = min(off + blk, size)  # exclusive
    while off < end:
        piece = off // obj
        stop = min(end, (piece + 1) * obj)
        print(f"p{piece:05d} {off - piece * obj} {stop - piece * obj - 1}")
        off = stop
