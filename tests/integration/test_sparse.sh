#!/usr/bin/env bash
# Holes and all-zero chunks: a sparse file (truncate -s), explicit zeros
# (dd if=/dev/zero) and a hole between two data regions read back as zeros,
# and all-zero chunks are stored as hole markers, not as data. st_blocks
# counts only what is stored (du, and cp, tar -S and rsync -S, which look
# for holes only in a file with fewer blocks than its size), also right
# after a close that wrote into a hole and after a punched hole, and cp
# copies a sparse file out sparse.
source "$(dirname "$0")/lib.sh"

MiB=$((1024 * 1024))
wfs_init
wfs_mount

check "truncate -s 40M of a new file" truncate -s 40M "$MNT/sparse"
check "8 MiB of explicit zeros" dd if=/dev/zero of="$MNT/zeros" bs=1M count=8 status=none
make_random "$SRC/a" 1M sparse-a
make_random "$SRC/b" 1M sparse-b
# data at 0, a hole over chunks 1..4, data at 20 MiB
cp "$SRC/a" "$LOCAL/holey"
dd if="$SRC/b" of="$LOCAL/holey" bs=1M seek=20 conv=notrunc status=none
check "write at 0 in the mount" cp "$SRC/a" "$MNT/holey"
check "write at 20 MiB in the mount" dd if="$SRC/b" of="$MNT/holey" bs=1M seek=20 conv=notrunc status=none
make_random "$SRC/dense" 9M sparse-dense
check "cp a dense 9 MiB file in" cp "$SRC/dense" "$MNT/dense"

blocks() { stat -c %b "$1"; }
# Chunks 0 and 5 hold 1 MiB each.
expect_eq "st_blocks of the file with a hole: its 2 MiB of data" 4096 "$(blocks "$MNT/holey")"

# Writes through a descriptor that asks for the attributes before its
# close (while the writes are not committed), then the next stat right
# after the close: 1 MiB into the hole adds a MiB; zeros over the first MiB
# make chunk 0 a hole again once sealed, so the answer before the close must
# not stay in the kernel's cache (the same bytes rewritten at 20 MiB make
# that close seal: writes into one chunk of a file written moments before
# may wait in the tail journal, unsealed, where they still count); a
# punched hole takes the new MiB away.
write_and_stat() {  # FILE SOURCE OFFSET [SOURCE OFFSET]...
  python3 - "$@" <<'PY' || fail "writing into $1 failed"
import os, sys
path, rest = sys.argv[1], sys.argv[2:]
fd = os.open(path, os.O_WRONLY)
for src, off in zip(rest[::2], rest[1::2]):
    data = open(src, 'rb').read()
    assert os.pwrite(fd, data, int(off)) == len(data)
os.fstat(fd)
os.close(fd)
PY
}
head -c $MiB /dev/zero >"$SRC/zero1m"
for target in "$MNT/holey" "$LOCAL/holey"; do
  write_and_stat "$target" "$SRC/b" $((8 * MiB))
  [ "$target" = "$LOCAL/holey" ] ||
    expect_eq "st_blocks right after a close that wrote 1 MiB into the hole" 6144 "$(blocks "$MNT/holey")"
  write_and_stat "$target" "$SRC/zero1m" 0 "$SRC/b" $((20 * MiB))
  [ "$target" = "$LOCAL/holey" ] ||
    expect_eq "st_blocks right after a close that wrote zeros over the first MiB" 4096 "$(blocks "$MNT/holey")"
  check "punch a hole over the MiB at 8 MiB" fallocate -p -o $((8 * MiB)) -l $MiB "$target"
done
expect_eq "st_blocks right after the punch" 2048 "$(blocks "$MNT/holey")"
check "the file with a hole equals the local one step by step" cmp "$LOCAL/holey" "$MNT/holey"

verify() {
  local when=$1
  expect_eq "sparse size $when" $((40 * MiB)) "$(file_size "$MNT/sparse")"
  check "sparse file reads as zeros $when" cmp -n $((40 * MiB)) /dev/zero "$MNT/sparse"
  check "zero file reads as zeros $when" cmp -n $((8 * MiB)) /dev/zero "$MNT/zeros"
  expect_eq "zero file size $when" $((8 * MiB)) "$(file_size "$MNT/zeros")"
  check "file with a hole equals the local one $when" cmp "$LOCAL/holey" "$MNT/holey"
  expect_eq "st_blocks of the 40 MiB hole $when" 0 "$(blocks "$MNT/sparse")"
  expect_eq "st_blocks of 8 MiB of zeros (stored as holes) $when" 0 "$(blocks "$MNT/zeros")"
  expect_eq "st_blocks of the file with a hole $when" 2048 "$(blocks "$MNT/holey")"
  expect_eq "st_blocks of the dense file: its size $when" 18432 "$(blocks "$MNT/dense")"
  check "dense file equals its source $when" cmp "$SRC/dense" "$MNT/dense"
  # A plain cp out finds the holes and keeps them.
  rm -f "$T/out-holey" "$T/out-sparse"
  check "cp the file with a hole out $when" cp "$MNT/holey" "$T/out-holey"
  check "cp the 40 MiB hole out $when" cp "$MNT/sparse" "$T/out-sparse"
  check "the copy out equals the local file $when" cmp "$LOCAL/holey" "$T/out-holey"
  check "the copied hole reads as zeros $when" cmp "$T/out-sparse" "$MNT/sparse"
  expect_le "KiB the copy of the file with a hole takes on disk $when" \
    "$(du -k "$T/out-holey" | cut -f1)" 1088
  expect_le "KiB the copy of the 40 MiB hole takes on disk $when" \
    "$(du -k "$T/out-sparse" | cut -f1)" 64
}
verify "while mounted"
wfs_unmount
# Stored: holey's first 1 MiB (zeroed since, garbage until gc) and the
# 1 MiB at 20 MiB (the same bytes at 8 MiB were the same chunk), and the
# dense file's three chunks; no all-zero chunk.
expect_eq "chunks stored (all-zero chunks are holes)" 5 "$(store_chunk_count)"
wfs_mount
drop_caches
verify "after remount"
wfs_unmount
