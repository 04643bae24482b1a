#!/usr/bin/env bash
# Invariant 6: a full spill disk gives back-pressure, then a clean ENOSPC,
# never corruption. The spill is a 40 MiB tmpfs and the store another tmpfs
# whose size the test sets:
#   A. the store has room: a 160 MiB copy through the 40 MiB spill waits for
#      uploads to free space and succeeds;
#   B. the store is full: uploads fail, the spill fills, the writer gets
#      ENOSPC after --space-wait; committed files still read back; unmount
#      reports the chunks it could not upload and keeps them;
#   C. the store gets room again: the next mount uploads what was pending,
#      and nothing that was committed is lost;
#   D. eight writers (dd and cp) at once through a spill with room for one
#      chunk: all succeed
#      and read back equal.
# No outcome depends on timing: where uploads can free space (A, C, D) the
# space wait is long and restarts whenever an upload frees some, so ENOSPC
# would need a minute without any upload finishing; where they cannot (B),
# the store's tmpfs is full, so no upload can succeed however fast it runs,
# and the copy is far larger than the spill and the store's room together.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to mount tmpfs"
mkdir -p "$T/spillfs" "$T/storefs"
mount -t tmpfs -o size=40m tmpfs "$T/spillfs" || fail "cannot mount a tmpfs for the spill"
mount -t tmpfs -o size=400m tmpfs "$T/storefs" || fail "cannot mount a tmpfs for the store"
STORE=$T/storefs/store
SPILL=$T/spillfs/spill
OPTS=(--spill-dir "$SPILL" --spill-reserve 4M --drain-timeout 3)
WAIT_LONG=(--space-wait 60)  # uploads can free space: never give up on timing
WAIT_SHORT=(--space-wait 2)  # uploads cannot free space (the store is full)

wfs_init
make_random "$SRC/a" 160M full-a
make_random "$SRC/b" 100M full-b

# A. Back-pressure: four times the spill's size goes through it.
wfs_mount "${OPTS[@]}" "${WAIT_LONG[@]}"
check "160 MiB copied through a 40 MiB spill" cp "$SRC/a" "$MNT/a"
check "a equals the source" cmp "$SRC/a" "$MNT/a"
wfs_unmount
expect_le "the store holds a's 40 chunks" 40 "$(store_chunk_count)"

# B. The store is full: leave it 6 MiB of room.
used_kib=$(df --output=used -k "$T/storefs" | tail -n 1 | tr -d ' ')
mount -o remount,size=$((used_kib + 6 * 1024))k "$T/storefs" || fail "cannot shrink the store tmpfs"
# 100 MiB against a spill of 36 MiB usable and 6 MiB of store: the copy
# cannot fit whatever the timing, and once the store is full nothing frees
# space, so the writer's wait ends after 2 s with ENOSPC.
wfs_mount "${OPTS[@]}" "${WAIT_SHORT[@]}"
rc=0
cp "$SRC/b" "$MNT/b" 2>"$T/cp.err" || rc=$?
[ "$rc" -ne 0 ] || fail "cp of 100 MiB into a full spill and full store succeeded"
grep -q "No space left on device" "$T/cp.err" || fail "cp failed, but not with ENOSPC: $(head -c 300 "$T/cp.err")"
pass "cp failed with ENOSPC ($(head -n 1 "$T/cp.err"))"
check "a still reads back equal while the disks are full" cmp "$SRC/a" "$MNT/a"
pending=$(stat_get pending_chunks)
expect_le "chunks wait for the store" 1 "$pending"
# Unmount cannot finish the uploads: it must say so, exit non-zero, and
# keep the chunks queued.
rc=0
timeout 120 "$WAVEFS_BIN" unmount "$MNT" >"$T/unmount.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "wavefs unmount exited 0 with $pending chunks it cannot upload"
pass "wavefs unmount exits $rc: $(tail -n 1 "$T/unmount.out")"
wait_pid_exit "$DAEMON_PID" 30 || fail "daemon $DAEMON_PID still running after unmount gave up"
is_mounted "$MNT" && fail "$MNT still mounted after unmount gave up"
expect_le "staged chunks kept in the spill" 1 "$(spill_count)"

# C. Room again: the next mount uploads what was pending.
mount -o remount,size=800m "$T/storefs" || fail "cannot grow the store tmpfs"
wfs_mount "${OPTS[@]}" "${WAIT_LONG[@]}"
check "a equals the source after the full-disk episode" cmp "$SRC/a" "$MNT/a"
if [ -e "$MNT/b" ]; then
  cat "$MNT/b" >"$T/b.read" || fail "reading b (whose copy hit ENOSPC) failed"
  expect_source_or_zeros "what b holds is a prefix of the source, or zeros" "$SRC/b" "$T/b.read"
fi
check "b can be written once there is room" cp "$SRC/b" "$MNT/b"
wfs_unmount
wfs_mount "${OPTS[@]}" "${WAIT_LONG[@]}"
check "b equals the source after a remount" cmp "$SRC/b" "$MNT/b"
expect_eq "nothing left pending" 0 "$(stat_get pending_chunks)"
wfs_unmount

# D. Eight writers at once through a spill with room for one chunk (20 MiB
# tmpfs, 12 MiB kept free, a chunk is 4 MiB and a little more): every
# seal thread competes for the same few free bytes (the race issue 9 saw),
# and every writer must still succeed.
mkdir -p "$T/spill2fs"
mount -t tmpfs -o size=20m tmpfs "$T/spill2fs" || fail "cannot mount a tmpfs for the second spill"
for i in 1 2 3 4 5 6 7 8; do make_random "$SRC/p$i" $((20 + i))M "full-p$i"; done
# waits_logged: how many times the daemons said writers wait for space.
waits_logged() {
  find "$WAVEFS_HOME" -name 'wavefs*.log' -type f -exec cat {} + 2>/dev/null |
    grep -c 'writers wait for uploads' || true
}
waits_before=$(waits_logged)
wfs_mount --spill-dir "$T/spill2fs/spill" --spill-reserve 12M "${WAIT_LONG[@]}"
pids=()
for i in 1 2 3 4 5 6 7 8; do
  if [ $((i % 2)) -eq 0 ]; then
    cp "$SRC/p$i" "$MNT/p$i" 2>"$T/p$i.err" &
  else
    dd if="$SRC/p$i" of="$MNT/p$i" bs=1M status=none 2>"$T/p$i.err" &
  fi
  pids+=("$!")
done
failed=0
for i in 1 2 3 4 5 6 7 8; do
  wait "${pids[$((i - 1))]}" || { failed=1; it_log "writer p$i failed: $(head -c 300 "$T/p$i.err")"; }
done
[ "$failed" -eq 0 ] || fail "a writer failed on the one-chunk spill while uploads were freeing space"
pass "eight parallel writers (4 cp, 4 dd) through a one-chunk spill all succeeded"
# The case was really hit: the spill filled and writers waited.
expect_lt "writers waited for space during the eight-writer copy" "$waits_before" "$(waits_logged)"
for i in 1 2 3 4 5 6 7 8; do
  cmp "$SRC/p$i" "$MNT/p$i" || fail "p$i differs from its source"
done
pass "all eight files equal their sources"
wfs_unmount
wfs_mount --spill-dir "$T/spill2fs/spill" --spill-reserve 12M "${WAIT_LONG[@]}"
drop_caches
for i in 1 2 3 4 5 6 7 8; do
  cmp "$SRC/p$i" "$MNT/p$i" || fail "p$i differs from its source after a remount"
done
pass "all eight files equal their sources after a remount"
wfs_unmount
