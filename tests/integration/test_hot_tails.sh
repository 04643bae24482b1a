#!/usr/bin/env bash
# Hot tails (--tail-hold): a log appended to by separate opens commits its
# appends as tail-journal records, sealing nothing (fs/tail_journal.h); every
# step reads back equal to a local copy, a reader running alongside never
# gets an error or bytes that are not a prefix of the log, a copy of the log
# stays right when the log moves on, kill -9 loses nothing (the records are
# applied again), and the unmount puts the last version into the store.
# Then the default hold (2 s) ends on its own. With --no-tail-journal each
# close seals, and only the first version and the last are uploaded (held
# chunks).
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
# Every append after the first is a close soon after a commit, committed
# as journal records: nothing sealed. The first append seals (the file was
# not being rewritten yet), and whether its version is held or already
# uploaded depends on when the reader's closes commit: at most one queued.
expect_le "appends committed as journal records" 295 "$(stat_get journal_commits)"
expect_le "chunks queued" "$(stat_get pending_chunks)" 1
expect_eq "hot files" 1 "$(stat_get hot_files)"

# A copy (cp shares whole chunks through copy_file_range, which seals the
# source first, or writes the same bytes) stays right when the log moves on.
check "cp of the log" cp "$MNT/log" "$MNT/copy"
cp "$SRC/log" "$SRC/copy"
echo "one more line" >>"$MNT/log"
echo "one more line" >>"$SRC/log"
check "the copy reads back equal" cmp "$SRC/copy" "$MNT/copy"

# kill -9 with appends in the journal: the next daemon applies them again.
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
expect_eq "the journaled log was replayed" 1 "$(stat_get journal_replays)"

# The unmount does not wait for holds: everything reaches the store.
for i in $(seq 1 10); do echo "last $i" >>"$MNT/log"; echo "last $i" >>"$SRC/log"; done
wfs_unmount
wfs_mount --tail-hold 3600
expect_eq "nothing pending after the unmount" 0 "$(stat_get pending_chunks)"
drop_caches
check "the log equals the source, from the store" cmp "$SRC/log" "$MNT/log"
check "the copy equals the source, from the store" cmp "$SRC/copy" "$MNT/copy"
wfs_unmount

# With the default hold (2 s) the journal ends on its own: the tail is
# sealed and uploaded.
wfs_mount
for i in $(seq 1 50); do echo "default $i" >>"$MNT/log"; echo "default $i" >>"$SRC/log"; done
expect_le "the appends were journaled" 49 "$(stat_get journal_commits)"
for _ in $(seq 1 200); do
  [ "$(stat_get hot_files)" -eq 0 ] && [ "$(stat_get pending_chunks)" -eq 0 ] && break
  sleep 0.1
done
expect_eq "no hot file once the hold ended" 0 "$(stat_get hot_files)"
wait_uploaded "the sealed tail is uploaded"
pid=$DAEMON_PID
kill -9 "$pid"
wait_pid_exit "$pid" 10 || fail "daemon $pid survived kill -9"
wfs_mount
expect_eq "nothing left to replay" 0 "$(stat_get journal_replays)"
drop_caches
check "the log equals the source after the default hold" cmp "$SRC/log" "$MNT/log"
wfs_unmount

# --no-tail-journal: each close seals. The first version is not held (the
# file was not being rewritten yet); each later one is, until the next
# replaces it: at most a few versions queued, the rest dropped.
wfs_mount --tail-hold 3600 --no-tail-journal
: >"$MNT/sealed"
: >"$SRC/sealed"
for i in $(seq 1 300); do
  echo "line $i of a log sealed at each close" >>"$MNT/sealed"
  echo "line $i of a log sealed at each close" >>"$SRC/sealed"
done
check "the sealed log reads back equal" cmp "$SRC/sealed" "$MNT/sealed"
expect_eq "no journal commits" 0 "$(stat_get journal_commits)"
expect_le "appends whose chunk was dropped unuploaded" 290 "$(stat_get superseded_chunks)"
expect_eq "held chunks: the log's last version" 1 "$(stat_get held_chunks)"
expect_le "chunks in the store or queued" "$(stat_get pending_chunks)" 2
# kill -9: held chunks are queued chunks; the next daemon uploads them.
pid=$DAEMON_PID
kill -9 "$pid"
wait_pid_exit "$pid" 10 || fail "daemon $pid survived kill -9"
wfs_mount --no-tail-journal
expect_eq "no hold survives a restart" 0 "$(stat_get held_chunks)"
drop_caches
check "the sealed log equals the source after kill -9" cmp "$SRC/sealed" "$MNT/sealed"
wfs_unmount
pass "hot tails: appends journaled, not sealed; a racing reader and a copy unharmed; kill -9 and unmount lose nothing; sealed tails held with --no-tail-journal"
