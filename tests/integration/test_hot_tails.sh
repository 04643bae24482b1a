#!/usr/bin/env bash
# Held tails (--tail-hold): a log appended to by separate opens uploads its
# first version and, while it keeps changing, no replaced one; every step
# reads back equal to a local copy, a reader running alongside never gets an
# error or bytes that are not a prefix of the log, a copy that shares the
# held chunk keeps it, kill -9 loses nothing, and the unmount puts the last
# version into the store. Then the default hold (2 s) ends on its own.
source "$(dirname "$0")/lib.sh"

wfs_init
# Holds longer than the test: only a replacement, a drain or a kill ends
# one, so what reaches the store does not depend on timing.
wfs_mount --tail-hold 3600
mkdir -p "$SRC"

# The log exists before the reader starts: a read must never fail.
: >"$SRC/log"
: >"$MNT/log"
# A reader that reads the log over and over while it grows: each read must
# succeed and be a prefix of the final log (checked at the end).
reads="$T/reads"
mkdir -p "$reads"
(
  n=0
  while [ ! -e "$T/stop-reader" ]; do
    n=$((n + 1))
    cat "$MNT/log" >"$reads/$n" 2>"$reads/$n.err" || echo "read $n failed" >>"$T/reader-errors"
  done
) &
reader=$!

for i in $(seq 1 300); do
  echo "line $i of a log that keeps growing" >>"$MNT/log"
  echo "line $i of a log that keeps growing" >>"$SRC/log"
done
touch "$T/stop-reader"
wait "$reader"
[ -e "$T/reader-errors" ] && fail "a reader failed: $(head -n 3 "$T/reader-errors"; cat "$reads"/*.err | head -n 3)"
nreads=$(find "$reads" -name '*[0-9]' | wc -l)
[ "$nreads" -gt 0 ] || fail "the reader never read"
for f in "$reads"/*[0-9]; do
  size=$(stat -c %s "$f")
  cmp -s "$f" <(head -c "$size" "$SRC/log") || fail "read $(basename "$f") ($size bytes) is not a prefix of the log"
done
it_log "$nreads reads alongside the appends, each a prefix of the log"

check "the log reads back equal" cmp "$SRC/log" "$MNT/log"
# The empty file's commit and the first append are not held (the file was
# not being rewritten yet); each later version is, until the next replaces
# it. 300 appends: at most a few versions queued, the rest dropped.
superseded=$(stat_get superseded_chunks)
expect_le "appends whose chunk was dropped unuploaded" 290 "$superseded"
expect_eq "held chunks: the log's last version" 1 "$(stat_get held_chunks)"
expect_le "chunks in the store or queued" "$(stat_get pending_chunks)" 2

# A copy names the held chunk too (cp shares it through copy_file_range,
# or writes the same bytes, which dedup finds): it keeps the chunk when the
# log moves on.
check "cp of the log" cp "$MNT/log" "$MNT/copy"
cp "$SRC/log" "$SRC/copy"
expect_eq "the copy ended the hold" 0 "$(stat_get held_chunks)"
echo "one more line" >>"$MNT/log"
echo "one more line" >>"$SRC/log"
check "the copy reads back equal" cmp "$SRC/copy" "$MNT/copy"

# kill -9: held chunks are queued chunks; the next daemon uploads them.
for i in $(seq 1 20); do
  echo "after the copy $i" >>"$MNT/log"
  echo "after the copy $i" >>"$SRC/log"
done
pid=$DAEMON_PID
kill -9 "$pid"
wait_pid_exit "$pid" 10 || fail "daemon $pid survived kill -9"
wfs_mount --tail-hold 3600
drop_caches
check "the log equals the source after kill -9" cmp "$SRC/log" "$MNT/log"
check "the copy equals the source after kill -9" cmp "$SRC/copy" "$MNT/copy"
expect_eq "no hold survives a restart" 0 "$(stat_get held_chunks)"

# The unmount does not wait for holds: everything reaches the store.
for i in $(seq 1 10); do echo "last $i" >>"$MNT/log"; echo "last $i" >>"$SRC/log"; done
wfs_unmount
wfs_mount --tail-hold 3600
expect_eq "nothing pending after the unmount" 0 "$(stat_get pending_chunks)"
drop_caches
check "the log equals the source, from the store" cmp "$SRC/log" "$MNT/log"
check "the copy equals the source, from the store" cmp "$SRC/copy" "$MNT/copy"
wfs_unmount

# With the default hold (2 s) the last version goes up on its own.
wfs_mount
for i in $(seq 1 50); do echo "default $i" >>"$MNT/log"; echo "default $i" >>"$SRC/log"; done
wait_uploaded "the held tail is uploaded once its hold ends"
wfs_unmount
wfs_mount
check "the log equals the source after the default hold" cmp "$SRC/log" "$MNT/log"
wfs_unmount
pass "held tails: replaced versions never uploaded, a racing reader and a copy unharmed, kill -9 and unmount lose nothing"
