#!/usr/bin/env bash
# Disaster recovery: a machine that keeps only the key file gets every
# file back from the store. Copy a tree in (several files, a multi-chunk
# one, directories, a symlink, an extended attribute), unmount, delete the
# whole WAVEFS_HOME but the key, `wavefs restore`, mount: `diff -r` equal.
# Then change the tree (cp over a file, delete one, add one), unmount, wipe,
# restore: the newest snapshot is picked and equals the latest tree.
# `--list` shows both; a wrong key and an existing index are refused.
# WAVEFS_IT_STORE=s3 runs it on Ceph RGW.
source "$(dirname "$0")/lib.sh"

command -v setfattr >/dev/null || skip "setfattr not installed"

wfs_init
STORE_ID=$(basename "$(find "$WAVEFS_HOME" -mindepth 2 -maxdepth 2 -name key -printf '%h\n')")
[ -n "$STORE_ID" ] || fail "no key file under $WAVEFS_HOME"
KEY=$WAVEFS_HOME/$STORE_ID/key
it_log "store id $STORE_ID"

# The reference tree: $LOCAL; the same operations on the mount.
build_tree() {
  local d=$1
  mkdir -p "$d/docs/deep" "$d/empty-dir"
  printf 'hello wavefs\n' >"$d/hello.txt"
  cp "$SRC/big" "$d/big.bin"               # 3 chunks
  cp "$SRC/mid" "$d/docs/mid.bin"
  cp "$SRC/small" "$d/docs/deep/small.bin"
  : >"$d/docs/empty"
  ln -s docs/mid.bin "$d/link"
  chmod 600 "$d/docs/mid.bin"
  setfattr -n user.color -v blue "$d/hello.txt"
}
make_random "$SRC/big" 9M restore-big
make_random "$SRC/mid" 1500K restore-mid
make_random "$SRC/small" 5000 restore-small
make_random "$SRC/new" 2M restore-new

# wipe_machine: everything local goes but the key file.
wipe_machine() {
  find "$WAVEFS_HOME" -mindepth 1 ! -path "$KEY" ! -path "$WAVEFS_HOME/$STORE_ID" -exec rm -rf {} + 2>/dev/null || true
  [ -f "$KEY" ] || fail "the key file went too"
  expect_eq "only the key is left" "key" "$(ls -A "$WAVEFS_HOME/$STORE_ID")"
}

compare_tree() {
  check "diff -r equal ($1)" diff -r --no-dereference "$LOCAL" "$MNT"
  expect_eq "xattr restored ($1)" blue "$(getfattr --only-values -n user.color "$MNT/hello.txt")"
  expect_eq "mode restored ($1)" 600 "$(stat -c %a "$MNT/docs/mid.bin")"
  expect_eq "symlink restored ($1)" docs/mid.bin "$(readlink "$MNT/link")"
}

build_tree "$LOCAL"
wfs_mount
build_tree "$MNT"
wfs_unmount

wipe_machine
out=$(wfs restore "$STORE" --key-file "$KEY" 2>&1) || fail "restore failed: $out"
it_log "$out"
first_id=$(sed -n 's/.*from snapshot \([^ ]*\) .*/\1/p' <<<"$out")
[ -n "$first_id" ] || fail "restore did not name its snapshot: $out"
wfs_mount
compare_tree "first restore"

# A second restore into the same home is refused without --force.
wfs_unmount
rc=0
out=$(wfs restore "$STORE" --key-file "$KEY" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "restore over an existing index succeeded"
grep -q -- "--force" <<<"$out" || fail "refusal does not mention --force: $out"
pass "an existing index is not overwritten ($out)"

# More changes, the same on both sides.
cp -a "$LOCAL" "$T/first-tree"
wfs_mount
for d in "$LOCAL" "$MNT"; do
  cp "$SRC/small" "$d/big.bin"             # cp over a bigger file
  rm "$d/docs/deep/small.bin"
  cp "$SRC/new" "$d/docs/new.bin"
done
wfs_unmount

wipe_machine
out=$(wfs restore "$STORE" --key-file "$KEY" 2>&1) || fail "second restore failed: $out"
it_log "$out"
second_id=$(sed -n 's/.*from snapshot \([^ ]*\) .*/\1/p' <<<"$out")
[[ "$second_id" > "$first_id" ]] || fail "second restore used $second_id, not newer than $first_id"
pass "the newest snapshot was restored ($second_id)"
list=$(wfs restore "$STORE" --list 2>&1) || fail "restore --list failed: $list"
it_log "$list"
n=$(grep -c '^[0-9]\{8\}T' <<<"$list" || true)
expect_le "--list shows at least 2 snapshots" 2 "$n"
grep -q "$second_id" <<<"$list" || fail "--list does not show $second_id"
wfs_mount
compare_tree "second restore"
[ ! -e "$MNT/docs/deep/small.bin" ] || fail "a deleted file came back"
wfs_unmount

# gc keeps what older snapshots name: the first tree (its big.bin was
# overwritten, small.bin deleted since) still restores completely.
out=$(wfs gc "$STORE" 2>&1) || fail "offline gc failed: $out"
it_log "$out"
out=$(wfs restore "$STORE" --snapshot "$first_id" --force 2>&1) || fail "restore of $first_id failed: $out"
wfs_mount
check "diff -r equal (the first snapshot, after gc)" diff -r --no-dereference "$T/first-tree" "$MNT"
wfs_unmount

# A wrong key fails with one clear line; the index stays as it was.
openssl rand -hex 32 >"$T/wrong.key"
chmod 600 "$T/wrong.key"
rc=0
out=$(wfs restore "$STORE" --key-file "$T/wrong.key" --force 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "restore with a wrong key succeeded"
grep -q "wrong key" <<<"$out" || fail "wrong key not named: $out"
expect_eq "one line of error" 1 "$(wc -l <<<"$out")"
pass "wrong key refused ($out)"

# A store without snapshots says so.
if [ -z "$IT_S3_BUCKET" ]; then
  mkdir -p "$T/empty-store"
  wfs init "$T/empty-store" --key-file "$T/empty.key" >/dev/null
  rc=0
  out=$(wfs restore "$T/empty-store" --key-file "$T/empty.key" --meta-dir "$T/empty-meta" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] && grep -q "no index snapshots" <<<"$out" || fail "empty store: rc $rc: $out"
  pass "no snapshots: $out"
fi
