#!/usr/bin/env bash
# Reading a tree of small files back (fs/sibling_prefetch.h): `tar -c`,
# `cp -r`, `rsync -a` and `xargs cat` of a path list out of a fresh mount
# give back the tree that was copied in, byte for byte, while the small
# files of each directory are fetched ahead of them (in name order for tar
# and rsync, in inode order for cp and the path list), each chunk from the
# store about once. A file changed in the mount
# after its directory was read reads back changed. Run on the local store
# with --prefetch-files 8, and on S3 (it_s3_tree_read) with the default.
source "$(dirname "$0")/lib.sh"

# Two directories of 60 small files each, made in an order other than
# their names' (so inode order is not name order), a subdirectory, a big
# file and an empty one.
mkdir -p "$SRC/tree/a/sub" "$SRC/tree/b"
for i in $(seq 60 -1 1); do
  make_random "$SRC/tree/a/f$i" $((i * 311 + 5)) "tree-a-$i"
  make_random "$SRC/tree/b/g$((61 - i))" $((i * 97 + 1)) "tree-b-$i"
done
for i in 1 2 3; do make_random "$SRC/tree/a/sub/s$i" 4000 "tree-s-$i"; done
make_random "$SRC/tree/a/big" $((5 * 1048576 + 3)) tree-big
: >"$SRC/tree/b/empty"
files=$(find "$SRC/tree" -type f | wc -l)

args=()
[ -z "$IT_S3_BUCKET" ] && args=(--prefetch-files 8)
wfs_init
wfs_mount "${args[@]}"
check "cp -a the tree in" cp -a "$SRC/tree" "$MNT/tree"
wfs_remount "${args[@]}"

# read_out NAME CMD...: a fresh mount, page cache dropped, CMD copies the
# tree out to $T/NAME, which must equal the source.
read_out() {
  local name=$1 g0 g
  shift
  wfs_remount "${args[@]}"
  drop_caches
  g0=$(stat_get store_gets)
  check "$name" "$@"
  check "$name: the tree reads back equal" diff -r "$SRC/tree" "$T/$name"
  g=$(( $(stat_get store_gets) - g0 ))
  # 128 small files and the big one's two chunks; what is fetched ahead
  # and then not read costs a few more.
  expect_le "$name: store reads" "$g" $(( files + 2 + files / 4 ))
  expect_lt "$name: small files fetched ahead" 60 "$(stat_get sibling_prefetches)"
}
mkdir -p "$T/tar"
read_out tar sh -c "tar -C '$MNT' -cf - tree | tar -C '$T/tar' -xf - && mv '$T/tar/tree'/* '$T/tar/' && rmdir '$T/tar/tree'"
read_out cp cp -r "$MNT/tree" "$T/cp"
read_out rsync rsync -a "$MNT/tree/" "$T/rsync/"

# By paths (`xargs cat` of a file list: no directory is listed; the list is
# in the source's inode order, which GNU cp -a made the files in, so inode
# order in the mount too): the daemon lists each directory at its first
# open.
wfs_remount "${args[@]}"
drop_caches
find "$SRC/tree" -type f -printf '%i %P\n' | sort -n | cut -d' ' -f2- >"$T/paths"
g0=$(stat_get store_gets)
check "cat by paths" sh -c "cd '$MNT/tree' && xargs -d '\n' cat <'$T/paths' >'$T/bypaths'"
expect_lt "cat by paths: directories the daemon listed itself" 0 "$(stat_get sibling_listings)"
check "cat by paths: the bytes equal the source's" \
  sh -c "cd '$SRC/tree' && xargs -d '\n' cat <'$T/paths' | cmp - '$T/bypaths'"
g=$(( $(stat_get store_gets) - g0 ))
expect_le "cat by paths: store reads" "$g" $(( files + 2 + files / 4 ))
expect_lt "cat by paths: small files fetched ahead" 60 "$(stat_get sibling_prefetches)"

# The daemon fetched files of a ahead; now they change in the mount (an
# overwrite, an append, a truncate): each reads back as changed.
wfs_remount "${args[@]}"
drop_caches
check "cat the first files of a" sh -c "cat '$MNT/tree/a/f1' '$MNT/tree/a/f10' '$MNT/tree/a/f11' >/dev/null"
make_random "$SRC/tree/a/f12" 777 tree-changed-f12
check "overwrite f12" cp "$SRC/tree/a/f12" "$MNT/tree/a/f12"
make_random "$T/extra" 555 tree-append
check "append to f13" sh -c "cat '$T/extra' >>'$MNT/tree/a/f13'"
cat "$T/extra" >>"$SRC/tree/a/f13"
check "truncate f14" truncate -s 100 "$MNT/tree/a/f14"
truncate -s 100 "$SRC/tree/a/f14"
check "the tree equals the source after the changes" diff -r "$SRC/tree" "$MNT/tree"
wfs_remount "${args[@]}"
drop_caches
check "the changed tree reads back equal after a remount" diff -r "$SRC/tree" "$MNT/tree"
wfs_unmount
pass "a tree of small files reads back equal through tar, cp -r and rsync, fetched ahead"
