#!/usr/bin/env bash
# wavefs fsck: a clean store checks clean; a corrupted, a deleted and a
# truncated chunk and a stray object are each found and named (file and
# byte range); --repair puts back what the spill has and forgets the rest,
# so reads of lost ranges give EIO, the rest of the file reads, and writing
# the same data again heals the files. Exit codes as fsck(8).
# WAVEFS_IT_STORE=s3 runs it on Ceph RGW.
source "$(dirname "$0")/lib.sh"

# Objects by address, in a local store or the test's bucket.
obj_key() { printf 'store/chunks/%s/%s' "${1:0:2}" "$1"; }
obj_path() { printf '%s/chunks/%s/%s' "$(store_dir)" "${1:0:2}" "$1"; }
obj_get() {  # ADDR FILE
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_curl GET "$IT_S3_BUCKET/$(obj_key "$1")" -o "$2" || fail "get $1"
  else
    cp "$(obj_path "$1")" "$2"
  fi
}
obj_put() {  # ADDR FILE
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_curl PUT "$IT_S3_BUCKET/$(obj_key "$1")" --data-binary "@$2" -o /dev/null || fail "put $1"
  else
    mkdir -p "$(dirname "$(obj_path "$1")")"
    cp "$2" "$(obj_path "$1")"
  fi
}
obj_del() {
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_curl DELETE "$IT_S3_BUCKET/$(obj_key "$1")" -o /dev/null || fail "delete $1"
  else
    rm "$(obj_path "$1")"
  fi
}
# first_chunk FILE: the address of chunk 0 of a file on the mount.
first_chunk() {
  getfattr --only-values -n user.wavefs.datamap "$1" | python3 -c '
import sys
b = bytes.fromhex(sys.stdin.read().strip())
print(b[24 + 13:24 + 45].hex())'
}
# fsck_rc ARGS...: runs wavefs fsck, output in $T/fsck.out, prints the exit.
fsck_rc() {
  local rc=0
  "$WAVEFS_BIN" fsck "$@" >"$T/fsck.out" 2>&1 || rc=$?
  sed 's/^/  | /' "$T/fsck.out" | head -n 40 >&2
  echo "$rc"
}
expect_line() {  # DESCRIPTION REGEX
  grep -Eq "$2" "$T/fsck.out" || fail "$1: no line matching '$2'"
  pass "$1"
}

wfs_init
for i in 1 2 3 4; do make_random "$SRC/f$i" 5M "fsck-$i"; done
wfs_mount
mkdir "$MNT/dir"
for i in 1 2 3 4; do cp "$SRC/f$i" "$MNT/dir/f$i"; done
for i in 1 2 3 4; do eval "a$i=$(first_chunk "$MNT/dir/f$i")"; done
wfs_unmount

expect_eq "fsck --verify of a healthy store" 0 "$(fsck_rc "$STORE" --verify)"

# Plant the faults: f1's first chunk corrupted (same size), f2's deleted,
# f3's truncated (its intact copy kept in the spill for --repair), and a
# stray object under an address nothing names.
obj_get "$a1" "$T/o1"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xff; open(p, "wb").write(b)' "$T/o1"
obj_put "$a1" "$T/o1"
obj_del "$a2"
obj_get "$a3" "$T/o3"
cp "$T/o3" "$SPILL_DIR/$a3"
head -c 1000000 "$T/o3" >"$T/o3.short"
obj_put "$a3" "$T/o3.short"
stray=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
head -c 5000 /dev/urandom >"$T/stray"
obj_put "$stray" "$T/stray"

expect_eq "fsck without --verify: errors left" 4 "$(fsck_rc "$STORE")"
expect_line "the deleted chunk is named" "error: chunk $a2 is missing"
expect_line "its file and range are named" "damaged: /dir/f2: bytes \[0, 4194304\) missing"
expect_line "the truncated chunk is named" "error: chunk $a3 is truncated \(1000000 bytes"
expect_line "the stray object is counted as an orphan" "orphan: $stray \(5000 bytes\)"

expect_eq "fsck --verify: errors left" 4 "$(fsck_rc "$STORE" --verify)"
expect_line "the corrupted chunk is found by --verify" "error: chunk $a1 is corrupt"
expect_line "and its file" "damaged: /dir/f1: bytes \[0, 4194304\) corrupt"

expect_eq "fsck --repair: some errors left" 4 "$(fsck_rc "$STORE" --verify --repair)"
expect_line "the truncated chunk is put again from the spill" "corrected: chunk $a3 is truncated.*put again from the spill"
expect_line "the corrupt object is removed" "error: chunk $a1 is corrupt.*removed"
rm -f "$SPILL_DIR/$a3"
expect_eq "after repair: the two lost chunks stay errors" 4 "$(fsck_rc "$STORE" --verify)"
expect_eq "lost chunks left" 2 "$(grep -c '^error: chunk' "$T/fsck.out")"

wfs_mount
drop_caches
check "the repaired file reads back" cmp "$SRC/f3" "$MNT/dir/f3"
if dd if="$MNT/dir/f1" of=/dev/null bs=1M count=1 status=none 2>"$T/dd.err"; then
  fail "reading the lost range of f1 succeeded"
fi
grep -q "Input/output error" "$T/dd.err" || fail "lost range: not EIO: $(cat "$T/dd.err")"
pass "reading the lost range of f1 gives EIO"
check "the rest of f1 reads" cmp <(dd if="$MNT/dir/f1" bs=1M skip=4 status=none) \
  <(dd if="$SRC/f1" bs=1M skip=4 status=none)
# fsck of the mounted store through the daemon.
expect_eq "fsck MOUNTPOINT: errors left" 4 "$(fsck_rc "$MNT" --verify)"
expect_line "fsck through the daemon names the file" "damaged: /dir/f2: bytes \[0, 4194304\) missing"
expect_eq "fsck STORE of a mounted store: operational error" 8 "$(fsck_rc "$STORE")"
expect_line "and says to give the mount point" "give the mount point"
# Writing the same data again uploads the forgotten chunks: f1 and f2 heal.
cp "$SRC/f1" "$MNT/f1.again"
cp "$SRC/f2" "$MNT/f2.again"
wfs_remount
drop_caches
check "f1 is whole again" cmp "$SRC/f1" "$MNT/dir/f1"
check "f2 is whole again" cmp "$SRC/f2" "$MNT/dir/f2"
out=$(wfs gc "$MNT" 2>&1) || fail "gc failed: $out"
expect_eq "gc removed the stray object" "removed 1 of" "$(grep -o 'removed 1 of' <<<"$out")"
wfs_unmount
expect_eq "fsck --verify is clean again" 0 "$(fsck_rc "$STORE" --verify)"

# Exit 1: everything found was corrected (a truncated chunk, spill intact).
obj_get "$a4" "$T/o4"
cp "$T/o4" "$SPILL_DIR/$a4"
head -c 4096 "$T/o4" >"$T/o4.short"
obj_put "$a4" "$T/o4.short"
expect_eq "fsck --repair with every error corrected" 1 "$(fsck_rc "$STORE" --repair)"
rm -f "$SPILL_DIR/$a4"
expect_eq "clean afterwards" 0 "$(fsck_rc "$STORE" --verify)"

expect_eq "usage error" 16 "$(fsck_rc)"
expect_eq "not a store" 8 "$(fsck_rc "$T/nowhere")"
wfs_mount
check "f4 reads back" cmp "$SRC/f4" "$MNT/dir/f4"
wfs_unmount
