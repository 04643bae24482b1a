#!/usr/bin/env bash
# An identical second copy of a file adds no chunk to the store.
source "$(dirname "$0")/lib.sh"

wfs_init
make_random "$SRC/data" 10M dedup-data     # chunks of 4 + 4 + 2 MiB

wfs_mount
check "cp into the mount" cp "$SRC/data" "$MNT/first"
wfs_unmount
c1=$(store_chunk_count)
expect_le "first copy stored its 3 chunks" 3 "$c1"

wfs_mount
check "second cp under another name" cp "$SRC/data" "$MNT/second"
check "third cp in a subdirectory" bash -c "mkdir '$MNT/sub' && cp '$SRC/data' '$MNT/sub/third'"
# A plain fusermount3 -u must flush everything too.
fuse_unmount
c2=$(store_chunk_count)
expect_eq "chunk count after identical copies" "$c1" "$c2"

wfs_mount
drop_caches
for f in first second sub/third; do
  check "$f equals the source after remount" cmp "$SRC/data" "$MNT/$f"
done
expect_eq "reads put nothing to the store (store_puts)" 0 "$(stat_get store_puts)"
wfs_unmount
expect_eq "chunk count after reading" "$c1" "$(store_chunk_count)"
