#!/usr/bin/env bash
# What backup and copy tools do with xattrs, holes and server-side copies:
# - rsync -aXS of a tree with user xattrs and sparse files into the mount,
#   then diff -r and getfattr -R -d against the source are equal, also after
#   a remount; a second rsync -aX changes nothing (no xattr churn, the
#   user.wavefs.* names are not listed);
# - cp --preserve=all and setfattr/getfattr round trips, XATTR errors;
# - SEEK_DATA/SEEK_HOLE make `cp --sparse=always` out of the mount keep the
#   holes (st_blocks far below the size);
# - cp --reflink=auto of a 96 MiB file inside the mount adds no chunk to the
#   store (copy_file_range shares the chunk refs) and reads back equal.
source "$(dirname "$0")/lib.sh"

MiB=$((1024 * 1024))
wfs_init
wfs_mount

# ---------------------------------------------------------- rsync -aX
tree=$SRC/tree
mkdir -p "$tree/sub/deeper"
make_random "$tree/a.bin" 5M xs-a
make_random "$tree/sub/b.bin" 300K xs-b
printf 'small\n' >"$tree/sub/deeper/c.txt"
truncate -s 20M "$tree/sparse.img"
make_random "$SRC/island" 1M xs-island
dd if="$SRC/island" of="$tree/sparse.img" bs=1M seek=9 conv=notrunc status=none
setfattr -n user.comment -v "hello world" "$tree/a.bin"
setfattr -n user.empty -v "" "$tree/a.bin"
setfattr -n user.bin -v 0x00ff10 "$tree/sub/b.bin"
setfattr -n user.dir -v "a directory" "$tree/sub"
setfattr -n user.sparse -v yes "$tree/sparse.img"
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.big", b"v" * 4000)' "$tree/sub/deeper/c.txt"

check "rsync -aXS into the mount" rsync -aXS "$tree/" "$MNT/tree/"
check "diff -r after rsync" diff -r "$tree" "$MNT/tree"
dump() { (cd "$1" && getfattr -R -d -m - -e hex . 2>/dev/null); }
# same_xattrs WHEN: every attribute of every file equal (diff on failure).
same_xattrs() {
  local a b
  a=$(dump "$tree")
  b=$(dump "$MNT/tree")
  if [ "$a" != "$b" ]; then
    diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -n 20 >&2
    fail "getfattr -R -d differs $1"
  fi
  [ "$(printf '%s\n' "$a" | grep -c '^user\.')" -ge 6 ] || fail "too few xattrs seen"
  pass "getfattr -R -d equal $1"
}
same_xattrs "after rsync"
out=$(rsync -aXSi "$tree/" "$MNT/tree/")
expect_eq "second rsync -aX changes nothing" "" "$out"

# ------------------------------------------------------ direct xattr calls
check "cp --preserve=all inside the mount" cp --preserve=all "$MNT/tree/a.bin" "$MNT/a.copy"
expect_eq "xattr kept by cp --preserve=all" "hello world" \
  "$(getfattr --only-values -n user.comment "$MNT/a.copy")"
check "user.wavefs.state readable" getfattr -n user.wavefs.state "$MNT/a.copy"
if setfattr -n user.wavefs.state -v x "$MNT/a.copy" 2>/dev/null; then
  fail "user.wavefs.state must be read-only"
fi
pass "user.wavefs.* is read-only"
listed=$(getfattr -d -m - "$MNT/a.copy" 2>/dev/null | grep -c 'user\.wavefs' || true)
expect_eq "user.wavefs.* not listed" 0 "$listed"
check "xattr errnos" python3 - "$MNT/a.copy" <<'PY'
import errno, os, sys
p = sys.argv[1]
def err(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0
assert err(lambda: os.getxattr(p, "user.nope")) == errno.ENODATA
assert err(lambda: os.setxattr(p, "user.comment", b"x", os.XATTR_CREATE)) == errno.EEXIST
assert err(lambda: os.setxattr(p, "user.nope", b"x", os.XATTR_REPLACE)) == errno.ENODATA
assert err(lambda: os.setxattr(p, "user.huge", b"x" * 65537)) == errno.E2BIG
os.setxattr(p, "user.max", b"y" * 65536)
assert os.getxattr(p, "user.max") == b"y" * 65536
os.removexattr(p, "user.max")
assert err(lambda: os.removexattr(p, "user.max")) == errno.ENODATA
PY

wfs_remount
drop_caches
check "diff -r after remount" diff -r "$tree" "$MNT/tree"
same_xattrs "after remount"

# ------------------------------------------------------ holes on the way out
check "cp --sparse=always out of the mount" cp --sparse=always "$MNT/tree/sparse.img" "$T/out.img"
check "sparse copy equal" cmp "$tree/sparse.img" "$T/out.img"
blocks=$(stat -c %b "$T/out.img")
expect_le "sparse copy keeps holes (512-byte blocks)" "$blocks" $((6 * MiB / 512))

# ------------------------------------------------------ reflink inside
make_random "$SRC/big" 96M xs-big
check "cp big into the mount" cp "$SRC/big" "$MNT/big"
wfs_unmount
before=$(store_chunk_count)
wfs_mount
check "cp --reflink=auto inside the mount" cp --reflink=auto "$MNT/big" "$MNT/big.copy"
check "reflinked copy equal" cmp "$SRC/big" "$MNT/big.copy"
wfs_unmount
expect_eq "store chunks after cp --reflink=auto" "$before" "$(store_chunk_count)"
wfs_mount
drop_caches
check "reflinked copy equal after remount" cmp "$SRC/big" "$MNT/big.copy"
wfs_unmount
