#!/usr/bin/env bash
# wavefs gc on a mount in use: write, overwrite (also cp over existing
# files) and delete; gc removes exactly the chunks no file names (counted
# independently from the plaintext), every file reads back equal, the store
# shrinks to within 5 % of the live data, and files written while gc runs
# (including bytes of deleted files: dedup against garbage) survive.
# WAVEFS_IT_STORE=s3 runs it on Ceph RGW.
source "$(dirname "$0")/lib.sh"

# Index snapshots keep the chunks they name until they are pruned
# (docs/gc.md); this test counts gc's own live set, so its mounts take no
# snapshots. test_restore checks that gc keeps what snapshots name.
eval "orig_$(declare -f wfs_mount)"
wfs_mount() { orig_wfs_mount --snapshot-interval 0 "$@"; }

# store_bytes: bytes of every chunk object.
store_bytes() {
  if [ -n "$IT_S3_BUCKET" ]; then
    local token="" q page total=0 s
    while true; do
      q="list-type=2&prefix=store%2Fchunks%2F"
      [ -n "$token" ] && q="continuation-token=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$token")&$q"
      page=$(s3_curl GET "$IT_S3_BUCKET?$q")
      for s in $(grep -o '<Size>[0-9]*</Size>' <<<"$page" | tr -dc '0-9\n'); do
        total=$((total + s))
      done
      grep -q '<IsTruncated>true</IsTruncated>' <<<"$page" || break
      token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | sed 's/<NextContinuationToken>//')
    done
    echo "$total"
    return
  fi
  find "$(store_dir)/chunks" -type f -name '[0-9a-f]*' -printf '%s\n' | awk '{s += $1} END {print s + 0}'
}

# live_chunks DIR: "COUNT BYTES" of the distinct non-zero 4 MiB chunks of
# the files under DIR (identical plaintext chunks are one store object).
live_chunks() {
  python3 - "$1" <<'PY'
import hashlib, os, sys
seen = {}
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        with open(os.path.join(root, f), 'rb') as fh:
            while True:
                b = fh.read(4 << 20)
                if not b:
                    break
                if b.count(0) == len(b):
                    continue
                seen[hashlib.sha256(b).digest()] = len(b)
print(len(seen), sum(seen.values()))
PY
}

verify_all() {
  local f
  for f in $(cd "$LOCAL" && find . -type f | sort); do
    cmp "$LOCAL/$f" "$MNT/$f" || fail "$f differs from the local copy ($1)"
  done
  pass "every file equals its local copy ($1)"
}

wfs_init
for i in 1 2 3 4 5 6; do make_random "$SRC/f$i" "$((3 * i + 2))M" "gc-$i"; done

wfs_mount
# The same operations on the mount and on a local directory.
for d in "$MNT" "$LOCAL"; do
  for i in 1 2 3 4 5 6; do cp "$SRC/f$i" "$d/f$i"; done
  mkdir -p "$d/sub"
  cp "$SRC/f2" "$d/sub/copy"
  cp "$SRC/f1" "$d/f3"             # cp over an existing, bigger file
  cp "$SRC/f6" "$d/f2"             # cp of a bigger file over a smaller one
  dd if="$SRC/f4" of="$d/f5" bs=1M count=6 seek=2 conv=notrunc status=none
  truncate -s 3M "$d/f6"
  rm "$d/f4"
done
wfs_remount                          # every chunk uploaded
before=$(store_chunk_count)
read -r live live_bytes < <(live_chunks "$LOCAL")
it_log "store: $before chunks, $(store_bytes) bytes; live: $live chunks, $live_bytes bytes"
expect_lt "there is garbage to collect" "$live" "$before"

out=$(wfs gc "$MNT" --dry-run 2>&1) || fail "gc --dry-run failed: $out"
it_log "$out"
expect_eq "dry run counts the garbage" "would remove $((before - live)) of $before" \
  "$(grep -o 'would remove [0-9]* of [0-9]*' <<<"$out")"
expect_eq "a dry run removes nothing" "$before" "$(store_chunk_count)"

size_before=$(store_bytes)
out=$(wfs gc "$MNT" 2>&1) || fail "gc failed: $out"
it_log "$out"
expect_eq "gc removes exactly the unreferenced chunks" \
  "removed $((before - live)) of $before" "$(grep -o 'removed [0-9]* of [0-9]*' <<<"$out")"
expect_eq "chunks left = live chunks" "$live" "$(store_chunk_count)"
size_after=$(store_bytes)
it_log "store size before gc: $size_before bytes, after: $size_after bytes, live data: $live_bytes bytes"
expect_le "store within 5% of the live data" "$size_after" "$((live_bytes * 105 / 100))"
drop_caches
verify_all "after gc"
out=$(wfs gc "$MNT" 2>&1) || fail "second gc failed: $out"
expect_eq "a second gc removes nothing" "removed 0 of $live" "$(grep -o 'removed [0-9]* of [0-9]*' <<<"$out")"

# gc while files are written: f1's bytes become garbage (f1 and f3, its
# copy, go) and writers write exactly them again (dedup against garbage:
# their 'A' entries say stored), f4's bytes (collected above: uploaded
# again) and new bytes.
rm "$MNT/f1" "$LOCAL/f1" "$MNT/f3" "$LOCAL/f3"
wfs_remount
garbage=$(( $(store_chunk_count) - $(live_chunks "$LOCAL" | cut -d' ' -f1) ))
expect_lt "f1's chunks are garbage now" 0 "$garbage"
make_random "$SRC/new" 30M gc-new
(
  for i in 1 2 3; do
    cp "$SRC/f4" "$MNT/during$i"
    cp "$SRC/f1" "$MNT/old$i"
  done
  cp "$SRC/new" "$MNT/new"
) &
writer=$!
out=$(wfs gc "$MNT" 2>&1) || fail "gc during writes failed: $out"
it_log "during writes: $out"
wait "$writer" || fail "the writer failed while gc ran"
for i in 1 2 3; do cp "$SRC/f4" "$LOCAL/during$i"; cp "$SRC/f1" "$LOCAL/old$i"; done
cp "$SRC/new" "$LOCAL/new"
wfs_remount
drop_caches
verify_all "written during gc, after a remount"
out=$(wfs gc "$MNT" 2>&1) || fail "gc failed: $out"
it_log "$out"
rc=0
out=$(wfs fsck "$MNT" --verify 2>&1) || rc=$?
expect_eq "fsck --verify is clean after gc (exit)" 0 "$rc"
read -r live live_bytes < <(live_chunks "$LOCAL")
expect_eq "chunks left = live chunks after writes during gc" "$live" "$(store_chunk_count)"

# Given the store while it is mounted: one line naming the mount point.
rc=0
out=$(wfs gc "$STORE" 2>&1) || rc=$?
expect_eq "gc STORE of a mounted store fails" 1 "$rc"
grep -q "give the mount point" <<<"$out" || fail "no hint to use the mount point: $out"
pass "gc STORE while mounted says to give the mount point"
wfs_unmount

# Not mounted: gc opens the index itself.
out=$(wfs gc "$STORE" 2>&1) || fail "gc of the unmounted store failed: $out"
expect_eq "offline gc finds nothing more" "removed 0 of $live" "$(grep -o 'removed [0-9]* of [0-9]*' <<<"$out")"

# Automatic gc (--gc-interval): the chunks of a deleted file go without
# anyone running gc, while the mount is in use; the rest stays readable.
wfs_mount --gc-interval 1
garbage_before=$(store_chunk_count)
rm "$MNT/new" "$LOCAL/new"
read -r live live_bytes < <(live_chunks "$LOCAL")
expect_lt "deleting 'new' left garbage" "$live" "$garbage_before"
deadline=$(( $(date +%s) + 60 ))
while [ "$(store_chunk_count)" -ne "$live" ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.5
done
expect_eq "the scheduled gc removed the deleted file's chunks" "$live" "$(store_chunk_count)"
state=$(getfattr --only-values -n user.wavefs.gc "$MNT" 2>/dev/null | sed -n 's/^state=//p')
grep -qx 'done\|running' <<<"$state" || fail "user.wavefs.gc says state '$state', not a gc that ran"
pass "user.wavefs.gc shows the scheduled gc ($state)"
drop_caches
verify_all "after the scheduled gc"
wfs_unmount
log=$(sed -n '/scheduled gc started (--gc-interval 1 s)/,$p' "$WAVEFS_HOME"/*/wavefs.log)
grep -q 'gc: removed [1-9][0-9]* of' <<<"$log" ||
  fail "the daemon log shows no scheduled gc that removed chunks"
pass "the daemon log names the scheduled gc and what it removed"
