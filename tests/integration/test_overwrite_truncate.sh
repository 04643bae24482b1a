#!/usr/bin/env bash
# In-place writes (dd conv=notrunc) straddling chunk boundaries, truncate
# down and up, and a write past the end: the same operations on a local file
# and on a file in the mount give the same bytes, also after a remount.
source "$(dirname "$0")/lib.sh"

MiB=$((1024 * 1024))
wfs_init
wfs_mount

make_random "$SRC/base" 10M ow-base
make_random "$SRC/patch" 1M ow-patch
make_random "$SRC/small" 13 ow-small
cp "$SRC/base" "$LOCAL/f"
check "cp into the mount" cp "$SRC/base" "$MNT/f"

same() {
  local what=$1
  expect_eq "size after $what" "$(file_size "$LOCAL/f")" "$(file_size "$MNT/f")"
  check "bytes after $what" cmp "$LOCAL/f" "$MNT/f"
}

# both CMD...: runs CMD with {} replaced by the local file, then by the
# mounted one.
both() {
  local target args a
  for target in "$LOCAL/f" "$MNT/f"; do
    args=()
    for a in "$@"; do args+=("${a//\{\}/$target}"); done
    "${args[@]}" || fail "command failed on $target: ${args[*]}"
  done
}

# 1 MiB written at 3.5 MiB: half in chunk 0, half in chunk 1.
both dd if="$SRC/patch" of={} bs=1M count=1 seek=$((7 * MiB / 2)) oflag=seek_bytes conv=notrunc status=none
same "1 MiB dd straddling the 4 MiB boundary"

# 13 bytes across the 8 MiB boundary.
both dd if="$SRC/small" of={} bs=13 count=1 seek=$((8 * MiB - 6)) oflag=seek_bytes conv=notrunc status=none
same "13-byte dd straddling the 8 MiB boundary"

both truncate -s 3M {}
same "truncate -s 3M"
both truncate -s 9M {}
same "truncate -s 9M (extend with zeros)"

wfs_remount
drop_caches
same "remount after the truncates"

# A write past the end leaves a hole.
both dd if="$SRC/small" of={} bs=13 count=1 seek=$((13 * MiB + 5)) oflag=seek_bytes conv=notrunc status=none
same "write past the end (hole)"
# Overwrite a whole chunk in place and shrink to a non-aligned size.
both dd if="$SRC/base" of={} bs=4M count=1 seek=$((4 * MiB)) oflag=seek_bytes conv=notrunc status=none
same "whole-chunk overwrite"
both truncate -s $((5 * MiB + 17)) {}
same "truncate to 5 MiB + 17"

wfs_remount
drop_caches
same "second remount"
wfs_unmount
