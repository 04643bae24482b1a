#!/usr/bin/env bash
# Files at and around the 4 MiB chunk boundary, plus an empty and a 64 MiB
# file, copied in with cp and compared before and after a remount.
source "$(dirname "$0")/lib.sh"

SIZES=(0 1 $((4 * 1024 * 1024 - 1)) $((4 * 1024 * 1024)) $((4 * 1024 * 1024 + 1)) $((64 * 1024 * 1024)))

wfs_init
wfs_mount

for s in "${SIZES[@]}"; do
  make_random "$SRC/f_$s" "$s" "sizes-$s"
done
for s in "${SIZES[@]}"; do
  check "cp of a $s-byte file" cp "$SRC/f_$s" "$MNT/f_$s"
done

verify_all() {
  local when=$1 s
  for s in "${SIZES[@]}"; do
    expect_eq "size of f_$s $when" "$s" "$(file_size "$MNT/f_$s")"
    check "content of f_$s $when" cmp "$SRC/f_$s" "$MNT/f_$s"
  done
  local listed
  listed=$(cd "$MNT" && ls | sort | tr '\n' ' ')
  expect_eq "directory listing $when" "$(cd "$SRC" && ls | sort | tr '\n' ' ')" "$listed"
}

verify_all "while mounted"
wfs_unmount
chunks=$(store_chunk_count)
# 1 + 1 + 1 + 2 + 16 chunks of data, of which none are all-zero.
expect_le "store holds the data chunks after unmount" 21 "$chunks"
wfs_mount
drop_caches
verify_all "after remount"
wfs_unmount
