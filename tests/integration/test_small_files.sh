#!/usr/bin/env bash
# Small files, tails and appends are staged in the index, not the spill
# (chunks of at most 64 KiB of ciphertext): a tree of small files leaves no
# spill file while the store refuses every upload, reads back from the
# index, survives kill -9 of the daemon with the store still refusing, and
# reaches the store once it accepts again; a big file's chunks still go
# through the spill. Compared with a local directory at each step.
source "$(dirname "$0")/lib.sh"

command -v chattr >/dev/null 2>&1 || fail "'chattr' not found (run scripts/install-deps.sh)"
small_cleanup() {
  # Uploads must be possible again before lib.sh's cleanup unmounts.
  [ -d "$T/store/chunks" ] && chattr -i "$T/store/chunks" 2>/dev/null
  return 0
}
trap 'rc=$?; set +e; small_cleanup; (exit $rc); it_cleanup' EXIT

wfs_init
# A tree of 40 small files, an empty one, a tiny one that is appended to,
# and one of exactly 64 KiB of plaintext (its ciphertext is past the limit:
# spill); the tree in $SRC is the local directory each step is compared
# with. And a big file of 5 MiB + 7 bytes (two chunks, both past the limit).
mkdir -p "$SRC/tree/sub"
for i in $(seq 1 40); do
  make_random "$SRC/tree/f$i" $((i * 997)) "small-$i"
done
: >"$SRC/tree/empty"
make_random "$SRC/tree/sub/limit" 65536 limit
printf 'a few bytes\n' >"$SRC/tree/sub/tiny"
make_random "$SRC/big" $((5 * 1048576 + 7)) small-big

# Uploads fail from here on: nothing can leave the staging areas.
# --tail-hold 0: every append's chunk is queued (test_hot_tails.sh tests
# the holds that otherwise drop the replaced ones).
chattr +i "$T/store/chunks" || fail "cannot chattr +i $T/store/chunks"
wfs_mount --tail-hold 0
check "cp -a a tree of small files" cp -a "$SRC/tree" "$MNT/tree"
expect_eq "one spill file (the 64 KiB one) for 43 files" 1 "$(spill_count)"
# user.wavefs.stats counts the kernel's requests by opcode (how many round
# trips a workload costs): cp -a made 2 directories and 43 files.
expect_eq "FUSE CREATE requests for 43 new files" 43 "$(stat_get requests_CREATE)"
expect_eq "FUSE MKDIR requests for 2 new directories" 2 "$(stat_get requests_MKDIR)"
check "cp a 5 MiB file" cp "$SRC/big" "$MNT/big"
expect_eq "the big file's two chunks are in the spill" 3 "$(spill_count)"
expect_le "bytes staged in the index (40 small files and tiny)" 800000 \
  "$(stat_get pending_in_index_bytes)"
expect_eq "nothing reached the store" 0 "$(store_chunk_count)"

# Appends by separate opens: each close stages the file's new tail.
for i in $(seq 1 30); do
  echo "line $i" >>"$MNT/tree/sub/tiny"
  echo "line $i" >>"$SRC/tree/sub/tiny"
done
expect_eq "30 appends made no spill file" 3 "$(spill_count)"
expect_eq "chunks pending: 40 + tiny + 30 appends in the index, 3 in the spill" \
  74 "$(stat_get pending_chunks)"

drop_caches
check "the tree reads back equal" diff -r "$SRC/tree" "$MNT/tree"
check "a partial read of a small file" \
  cmp <(tail -c +1001 "$SRC/tree/f40" | head -c 5000) \
      <(dd if="$MNT/tree/f40" bs=1000 skip=1 count=5 status=none)

# The daemon dies with everything pending; the store still refuses.
pid=$DAEMON_PID
kill -9 "$pid"
wait_pid_exit "$pid" 10 || fail "daemon $pid survived kill -9"
wfs_mount --tail-hold 0
expect_eq "every chunk still pending after kill -9" 74 "$(stat_get pending_chunks)"
check "the tree equals the source after kill -9" diff -r "$SRC/tree" "$MNT/tree"
check "the big file equals the source after kill -9" cmp "$SRC/big" "$MNT/big"
expect_eq "nothing reached the store yet" 0 "$(store_chunk_count)"

# The store accepts again: the unmount drains the index and the spill.
chattr -i "$T/store/chunks"
wfs_unmount
expect_eq "every chunk is in the store" 74 "$(store_chunk_count)"
wfs_mount
expect_eq "nothing pending after the drain" 0 "$(stat_get pending_chunks)"
expect_eq "nothing staged in the index after the drain" 0 "$(stat_get pending_in_index_bytes)"
drop_caches
check "the tree equals the source, from the store" diff -r "$SRC/tree" "$MNT/tree"
check "the big file equals the source, from the store" cmp "$SRC/big" "$MNT/big"
wfs_unmount
pass "small files, tails and appends staged in the index: no spill file, kill -9 and the drain lose nothing"
