#!/usr/bin/env bash
# Holes and all-zero chunks: a sparse file (truncate -s), explicit zeros
# (dd if=/dev/zero) and a hole between two data regions read back as zeros,
# and all-zero chunks are stored as hole markers, not as data.
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

verify() {
  local when=$1
  expect_eq "sparse size $when" $((40 * MiB)) "$(file_size "$MNT/sparse")"
  check "sparse file reads as zeros $when" cmp -n $((40 * MiB)) /dev/zero "$MNT/sparse"
  check "zero file reads as zeros $when" cmp -n $((8 * MiB)) /dev/zero "$MNT/zeros"
  expect_eq "zero file size $when" $((8 * MiB)) "$(file_size "$MNT/zeros")"
  check "file with a hole equals the local one $when" cmp "$LOCAL/holey" "$MNT/holey"
}
verify "while mounted"
wfs_unmount
# Only the two 1 MiB data chunks of "holey" hold data.
expect_eq "chunks stored (all-zero chunks are holes)" 2 "$(store_chunk_count)"
wfs_mount
drop_caches
verify "after remount"
wfs_unmount
