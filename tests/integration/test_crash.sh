#!/usr/bin/env bash
# Invariants 1 and 3: after close() returns, a file survives kill -9 of the
# daemon; uploads pending at the crash resume at the next mount, which also
# clears the dead mount; a file being written at the crash never reads back
# as an error or as bytes that were never written.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

wfs_init
make_random "$SRC/a" 40M crash-a
make_random "$SRC/b" 300M crash-b

wfs_mount
check "cp a into the mount" cp "$SRC/a" "$MNT/a"
check "cp a again into a subdirectory" bash -c "mkdir '$MNT/d' && cp '$SRC/a' '$MNT/d/a2'"
# Kill right away: the uploader lets a wave gather for 200 ms, so chunks of
# a are usually still queued; b is being copied.
cp "$SRC/b" "$MNT/b" 2>/dev/null &
cp_pid=$!
sleep 0.3
pending=$(stat_get pending_chunks)
it_log "killing daemon $DAEMON_PID with $pending chunks pending"
kill -9 "$DAEMON_PID"
wait "$cp_pid" 2>/dev/null || true
wait_pid_exit "$DAEMON_PID" 10 || fail "daemon $DAEMON_PID survived kill -9"
if stat "$MNT" >/dev/null 2>&1; then
  fail "$MNT still answers after its daemon was killed"
fi
pass "daemon killed mid-copy with $pending chunks pending"

wfs_mount   # must clear the dead mount by itself
check "a equals the source after kill -9" cmp "$SRC/a" "$MNT/a"
check "d/a2 equals the source after kill -9" cmp "$SRC/a" "$MNT/d/a2"
if [ -e "$MNT/b" ]; then
  # Whatever of b was committed reads back without EIO and is a prefix of
  # the source (cp writes in order), possibly followed by zeros.
  cat "$MNT/b" >"$T/b.read" || fail "reading the half-written b failed"
  pass "the half-written b reads without error"
  n=$(file_size "$T/b.read")
  expect_source_or_zeros "what b holds is the source's bytes or zeros" "$SRC/b" "$T/b.read"
  it_log "b after the crash: $n bytes"
fi
# Attributes a writer sets through its own descriptor before closing (tar,
# cp -p, rsync --inplace) are committed by its close, with its writes; one
# set by another process, or before an fsync, is committed at once. Each is
# checked against the same calls in a local directory, after kill -9 right
# after the calls and a remount.
mkdir -p "$T/local"
make_random "$T/local/old" 200K crash-old
cp "$T/local/old" "$MNT/old"
python3 "$HERE/attrs_at_close.py" "$T/local" >/dev/null
# "other" is still open at the kill: its mode and mtime must be there (set
# by another process), its bytes need not (with the writeback cache they
# never left the kernel).
attrs_of() {
  (cd "$1" && stat -c '%n %s %a %u %g %X.%x %Y.%y' new old synced &&
    stat -c '%n %a %Y.%y' other)
}
coproc HOLDER { exec python3 "$HERE/attrs_at_close.py" "$MNT" hold; }
holder_pid=$HOLDER_PID
read -r -t 60 line <&"${HOLDER[0]}" || fail "attrs_at_close.py gave no first line"
read -r -t 60 line <&"${HOLDER[0]}" || fail "attrs_at_close.py did not fsync"
[ "$line" = synced ] || fail "attrs_at_close.py: '$line'"
# The descriptors of "synced" and "other" are still open here.
kill -9 "$DAEMON_PID"
wait_pid_exit "$DAEMON_PID" 10 || fail "daemon $DAEMON_PID survived kill -9"
kill "$holder_pid" 2>/dev/null || true
wait "$holder_pid" 2>/dev/null || true
wfs_mount
expect_eq "sizes, modes, owners and times after kill -9 equal a local directory" \
  "$(attrs_of "$T/local")" "$(attrs_of "$MNT")"
for f in new old synced; do
  check "$f's bytes after kill -9 equal a local directory's" cmp "$T/local/$f" "$MNT/$f"
done
# The unmount drains what was pending at the crash: the spill ends empty
# (wfs_unmount checks) and every chunk comes from the store afterwards.
wfs_unmount
wfs_mount
drop_caches
check "a equals the source after the drain and a remount" cmp "$SRC/a" "$MNT/a"
expect_eq "nothing left pending" 0 "$(stat_get pending_chunks)"
wfs_unmount
