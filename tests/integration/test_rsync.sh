#!/usr/bin/env bash
# rsync -a of a small tree (nested dirs, small files, an empty file, symlinks,
# modes and mtimes) into the mount; diff -r and a no-op second rsync, also
# after a remount.
source "$(dirname "$0")/lib.sh"

wfs_init
wfs_mount

tree=$SRC/tree
mkdir -p "$tree/a/b/c" "$tree/d/e" "$tree/private" "$tree/emptydir"
printf 'hello\n' >"$tree/a/hello.txt"
printf 'deep\n' >"$tree/a/b/c/deep.txt"
: >"$tree/a/empty"
make_random "$tree/d/blob.bin" 300K rsync-blob
make_random "$tree/d/e/chunky.bin" 5M rsync-chunky
for i in $(seq 1 20); do printf 'file %d\n' "$i" >"$tree/d/e/small_$i"; done
ln -s b/c/deep.txt "$tree/a/link_rel"
ln -s /nonexistent/target "$tree/a/link_dangling"
ln -s ../d "$tree/a/link_dir"
chmod 0700 "$tree/private"
printf 'secret\n' >"$tree/private/key"
chmod 0600 "$tree/private/key"
chmod 0755 "$tree/d/blob.bin"
touch -d '2001-02-03 04:05:06.123456789' "$tree/a/hello.txt"
touch -h -d '2002-03-04 05:06:07' "$tree/a/link_rel"
touch -d '2003-04-05 06:07:08' "$tree/d"

check "rsync -a into the mount" rsync -a "$tree/" "$MNT/tree/"

# Type, mode, size (not for directories: it is filesystem-specific), link
# target and mtime (whole seconds) of every entry.
describe() {
  (cd "$1" && find . -printf '%P|%y|%m|%s|%l|%T@\n' |
    awk -F'|' -v OFS='|' '{ if ($2 == "d") $4 = "-"; sub(/\.[0-9]*$/, "", $6); print }' | sort)
}

verify() {
  local when=$1
  check "diff -r $when" diff -r --no-dereference "$tree" "$MNT/tree"
  local want got
  want=$(describe "$tree")
  got=$(describe "$MNT/tree")
  if [ "$want" != "$got" ]; then
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") >&2 || true
    fail "types/modes/sizes/link targets/mtimes differ $when"
  fi
  pass "types, modes, sizes, link targets and mtimes equal $when"
  expect_eq "symlink target $when" "b/c/deep.txt" "$(readlink "$MNT/tree/a/link_rel")"
  expect_eq "reading through the symlink $when" "deep" "$(cat "$MNT/tree/a/link_rel")"
  local again
  again=$(rsync -ai "$tree/" "$MNT/tree/") || fail "second rsync failed $when"
  if [ -n "$again" ]; then
    printf '%s\n' "$again" | head -n 20 >&2
    fail "a second rsync -a $when still found changes"
  fi
  pass "second rsync -a is a no-op $when"
}

verify "while mounted"
wfs_remount
drop_caches
verify "after remount"
wfs_unmount
