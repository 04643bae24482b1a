#!/usr/bin/env bash
# Stores made with chunk format 1 (one AEAD unit per 4 MiB chunk, before
# format 2's 64 KiB segments) keep working: files copied in are sealed in
# format 1 and read back equal, whole and in random pieces, after a remount.
source "$(dirname "$0")/lib.sh"

wfs_init
conf=$(store_dir)/wavefs-store.conf
sed -i 's/^format=2$/format=1/' "$conf"
grep -qx 'format=1' "$conf" || fail "could not turn the new store into a format-1 store"
make_random "$SRC/f" 10M fmt1-f

wfs_mount
check "cp into a format-1 store" cp "$SRC/f" "$MNT/f"
wfs_unmount
# Format 1 objects are plaintext + one 16-byte tag: the two full chunks are
# 4194320 bytes (format 2 would make them 4195328).
full=$(find "$(store_dir)/chunks" -type f -size 4194320c | wc -l)
expect_eq "two full chunks in format-1 size" 2 "$full"

wfs_mount
drop_caches
check "the file equals the source after a remount" cmp "$SRC/f" "$MNT/f"
for off in 0 3 5 9; do
  dd if="$SRC/f" of="$T/want" bs=1M skip="$off" count=1 status=none
  drop_caches
  check "1 MiB at ${off} MiB reads back equal" \
    bash -c "dd if='$MNT/f' of='$T/got' bs=1M skip=$off count=1 status=none && cmp '$T/want' '$T/got'"
done
wfs_unmount
grep -qx 'format=1' "$conf" || fail "mounting changed the store's format"
pass "the store is still format 1"
