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
#      and nothing that was committed is lost.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to mount tmpfs"
mkdir -p "$T/spillfs" "$T/storefs"
mount -t tmpfs -o size=40m tmpfs "$T/spillfs" || fail "cannot mount a tmpfs for the spill"
mount -t tmpfs -o size=400m tmpfs "$T/storefs" || fail "cannot mount a tmpfs for the store"
STORE=$T/storefs/store
SPILL=$T/spillfs/spill
OPTS=(--spill-dir "$SPILL" --spill-reserve 4M --space-wait 2 --drain-timeout 3)

wfs_init
make_random "$SRC/a" 160M full-a
make_random "$SRC/b" 100M full-b

# A. Back-pressure: four times the spill's size goes through it.
wfs_mount "${OPTS[@]}"
check "160 MiB copied through a 40 MiB spill" cp "$SRC/a" "$MNT/a"
check "a equals the source" cmp "$SRC/a" "$MNT/a"
wfs_unmount
expect_le "the store holds a's 40 chunks" 40 "$(store_chunk_count)"

# B. The store is full: leave it 6 MiB of room.
used_kib=$(df --output=used -k "$T/storefs" | tail -n 1 | tr -d ' ')
mount -o remount,size=$((used_kib + 6 * 1024))k "$T/storefs" || fail "cannot shrink the store tmpfs"
wfs_mount "${OPTS[@]}"
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
mount -o remount,size=600m "$T/storefs" || fail "cannot grow the store tmpfs"
wfs_mount "${OPTS[@]}"
check "a equals the source after the full-disk episode" cmp "$SRC/a" "$MNT/a"
if [ -e "$MNT/b" ]; then
  cat "$MNT/b" >"$T/b.read" || fail "reading b (whose copy hit ENOSPC) failed"
  expect_source_or_zeros "what b holds is a prefix of the source, or zeros" "$SRC/b" "$T/b.read"
fi
check "b can be written once there is room" cp "$SRC/b" "$MNT/b"
wfs_unmount
wfs_mount "${OPTS[@]}"
check "b equals the source after a remount" cmp "$SRC/b" "$MNT/b"
expect_eq "nothing left pending" 0 "$(stat_get pending_chunks)"
wfs_unmount
