#!/usr/bin/env bash
# open(O_TRUNC) on an existing file empties it: the shell's `>`, cp over an
# existing file (O_WRONLY|O_TRUNC), small and bigger than a 4 MiB chunk,
# O_CREAT|O_TRUNC while another handle keeps reading, O_RDWR|O_TRUNC; the
# results hold after a remount with a dropped page cache, and a truncating
# overwrite adds only the new content's chunks to the store. 200 appends by
# separate opens match a local file and fetch nothing from the store.
source "$(dirname "$0")/lib.sh"

wfs_init
wfs_mount

make_random "$SRC/k12" 12K ot-k12
make_random "$SRC/b13" 13 ot-b13
make_random "$SRC/m9" 9M ot-m9
make_random "$SRC/m5" 5M ot-m5
make_random "$SRC/b10" 10 ot-b10
make_random "$SRC/m5b" 5M ot-m5b
printf 'hi\n' >"$SRC/hi"

# same DESC GOT EXPECTED: equal size and bytes.
same() {
  expect_eq "$1: size" "$(file_size "$3")" "$(file_size "$2")"
  check "$1: bytes" cmp "$3" "$2"
}

# The shell's > on an existing 10-byte file.
check "printf 0123456789 > f" sh -c 'printf 0123456789 >"$1"' _ "$MNT/shell"
check "echo hi > f (over the 10 bytes)" sh -c 'echo hi >"$1"' _ "$MNT/shell"
same "echo hi > over 10 bytes" "$MNT/shell" "$SRC/hi"

# cp over an existing file: 12 KiB, then 13 bytes.
check "cp 12 KiB" cp "$SRC/k12" "$MNT/small"
check "cp 13 bytes over it" cp "$SRC/b13" "$MNT/small"
same "cp 13 bytes over 12 KiB" "$MNT/small" "$SRC/b13"

# The same over files bigger than a chunk.
check "cp 9 MiB (big1)" cp "$SRC/m9" "$MNT/big1"
check "cp 5 MiB over 9 MiB (big1)" cp "$SRC/m5" "$MNT/big1"
same "cp 5 MiB over 9 MiB" "$MNT/big1" "$SRC/m5"
check "cp 9 MiB (big2)" cp "$SRC/m9" "$MNT/big2"
check "cp 5 MiB over 9 MiB (big2)" cp "$SRC/m5" "$MNT/big2"
check "cp 10 bytes over 5 MiB (big2)" cp "$SRC/b10" "$MNT/big2"
same "cp 9 MiB, 5 MiB, 10 bytes" "$MNT/big2" "$SRC/b10"
check "cp 9 MiB (big3)" cp "$SRC/m9" "$MNT/big3"
check "shell > of 10 bytes over 9 MiB (big3)" sh -c 'cat "$1" >"$2"' _ "$SRC/b10" "$MNT/big3"
same "shell > of 10 bytes over 9 MiB" "$MNT/big3" "$SRC/b10"

# Truncating opens through Python while another handle is open. Prints one
# line per failed expectation and exits 1 if there was any.
cat >"$T/handles.py" <<'PY'
import os, sys
d, m9 = sys.argv[1], open(sys.argv[2], "rb").read()
bad = []
def expect(what, got, want):
    if got != want:
        g = got if not isinstance(got, bytes) or len(got) < 40 else f"<{len(got)} bytes>"
        w = want if not isinstance(want, bytes) or len(want) < 40 else f"<{len(want)} bytes>"
        bad.append(f"{what}: expected {w!r}, got {g!r}")

def put(path, data):
    with open(path, "wb") as f:
        f.write(data)

# 1. O_CREAT|O_TRUNC|O_WRONLY on a 9 MiB file a reader holds open.
p = os.path.join(d, "held")
put(p, m9)
r = os.open(p, os.O_RDONLY)
expect("reader's first MiB before", os.read(r, 1 << 20), m9[:1 << 20])
w = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
expect("size seen by the writer after O_CREAT|O_TRUNC", os.fstat(w).st_size, 0)
expect("size seen by the reader after O_CREAT|O_TRUNC", os.fstat(r).st_size, 0)
expect("stat size after O_CREAT|O_TRUNC", os.stat(p).st_size, 0)
expect("reader's next read after O_CREAT|O_TRUNC", os.read(r, 4096), b"")
expect("reader's pread at 0 after O_CREAT|O_TRUNC", os.pread(r, 4096, 0), b"")
expect("reader's pread at 5 MiB after O_CREAT|O_TRUNC", os.pread(r, 4096, 5 << 20), b"")
os.write(w, b"new data")
expect("reader's pread after the writer's 8 bytes", os.pread(r, 4096, 0), b"new data")
os.close(w)
expect("reader's size after the writer closed", os.fstat(r).st_size, 8)
os.close(r)
with open(p, "rb") as f:
    expect("held: contents after close", f.read(), b"new data")

# 2. O_WRONLY|O_TRUNC (no O_CREAT) on an existing file, another writer open.
p = os.path.join(d, "wronly")
put(p, m9[:6 << 20])
other = os.open(p, os.O_RDWR)
w = os.open(p, os.O_WRONLY | os.O_TRUNC)
expect("O_WRONLY|O_TRUNC: size", os.fstat(w).st_size, 0)
expect("O_WRONLY|O_TRUNC: other handle's pread", os.pread(other, 100, 0), b"")
os.write(w, b"abc")
os.close(w)
expect("O_WRONLY|O_TRUNC: other handle sees the new bytes", os.pread(other, 100, 0), b"abc")
os.close(other)

# 3. O_RDWR|O_TRUNC then read back through the same handle.
p = os.path.join(d, "rdwr")
put(p, m9[:4 << 20])  # exactly one chunk
rw = os.open(p, os.O_RDWR | os.O_TRUNC)
expect("O_RDWR|O_TRUNC: read right after the open", os.read(rw, 100), b"")
os.write(rw, b"xyz")
expect("O_RDWR|O_TRUNC: pread of what it wrote", os.pread(rw, 100, 0), b"xyz")
os.close(rw)

# 4. O_RDONLY|O_TRUNC truncates too on Linux (ext4, tmpfs, ...).
p = os.path.join(d, "rdonly")
put(p, b"0123456789")
ro = os.open(p, os.O_RDONLY | os.O_TRUNC)
expect("O_RDONLY|O_TRUNC: size", os.fstat(ro).st_size, 0)
os.close(ro)

# 5. O_TRUNC|O_APPEND: empty, then appends from 0.
p = os.path.join(d, "append")
put(p, m9[:5 << 20])
a = os.open(p, os.O_WRONLY | os.O_TRUNC | os.O_APPEND)
os.write(a, b"A1")
os.write(a, b"A2")
os.close(a)
with open(p, "rb") as f:
    expect("O_TRUNC|O_APPEND: contents", f.read(), b"A1A2")

for line in bad:
    print(line)
sys.exit(1 if bad else 0)
PY
check "truncating opens with other handles open" python3 "$T/handles.py" "$MNT" "$SRC/m9"

# Appends by separate opens (`echo >> log`), the way logs grow. The first
# brings the file's last chunk back into a buffer from the plaintext the
# daemon kept when it sealed it (fs/tail_cache.h); that close and the ones
# after it commit journal records and keep the buffer (fs/tail_journal.h),
# so no append fetches the chunk from the store (on S3 that was one GET per
# line). The first version is uploaded before the appends start, so a
# fetch would show.
printf 'line 0\n' >"$MNT/log"
printf 'line 0\n' >"$SRC/log"
wait_uploaded "chunks pending before the appends"
gets0=$(stat_get store_gets)
journaled0=$(stat_get journal_commits)
for i in $(seq 1 200); do
  echo "line $i of the log" >>"$MNT/log"
  echo "line $i of the log" >>"$SRC/log"
done
if [ "$(stat_get writeback_cache)" -eq 0 ]; then
  expect_eq "store GETs during 200 appends" "$gets0" "$(stat_get store_gets)"
  expect_le "appends committed as journal records" 199 $(($(stat_get journal_commits) - journaled0))
else
  # The kernel reads the partial page it caches from the daemon first.
  it_log "writeback cache: appends read their page through the kernel"
fi
same "200 appends by separate opens" "$MNT/log" "$SRC/log"

printf 'new data' >"$SRC/held"
printf 'abc' >"$SRC/wronly"
printf 'xyz' >"$SRC/rdwr"
: >"$SRC/rdonly"
printf 'A1A2' >"$SRC/append"
all_same() {
  same "$1: echo hi > over 10 bytes" "$MNT/shell" "$SRC/hi"
  same "$1: cp 13 bytes over 12 KiB" "$MNT/small" "$SRC/b13"
  same "$1: cp 5 MiB over 9 MiB" "$MNT/big1" "$SRC/m5"
  same "$1: cp 9 MiB, 5 MiB, 10 bytes" "$MNT/big2" "$SRC/b10"
  same "$1: shell > of 10 bytes over 9 MiB" "$MNT/big3" "$SRC/b10"
  local f
  for f in held wronly rdwr rdonly append log; do
    same "$1: $f" "$MNT/$f" "$SRC/$f"
  done
}
all_same "before the remount"
wfs_remount
drop_caches
all_same "after a remount"

# A truncating overwrite stores the new content's chunks and nothing else
# (5 MiB of fresh random bytes: 2 chunks).
check "cp 9 MiB (cc)" cp "$SRC/m9" "$MNT/cc"
wfs_remount
before=$(store_chunk_count)
check "cp 5 MiB of new bytes over it" cp "$SRC/m5b" "$MNT/cc"
wfs_remount
drop_caches
after=$(store_chunk_count)
expect_eq "chunks added to the store by a truncating 5 MiB overwrite" 2 $((after - before))
same "cc after the overwrite and a remount" "$MNT/cc" "$SRC/m5b"
all_same "after a second remount"
wfs_unmount
