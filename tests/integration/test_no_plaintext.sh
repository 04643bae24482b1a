#!/usr/bin/env bash
# Invariant 4: file content never reaches local disk or the store in
# plaintext. Files full of a unique marker are written straight into the
# mount (no local copy exists); the marker must not be found in the store,
# WAVEFS_HOME (keys, metadata, spill, logs), the rest of the test dir or the
# usual temp dirs, while mounted (spill staging, file still open) and after
# unmount. File names are metadata, but the store must not see them either.
source "$(dirname "$0")/lib.sh"

MARK="WAVEFS-MARKER-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
NAME_MARK="wavefs-name-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

# write_marker FILE BYTES: BYTES of repeated marker lines, no local copy.
write_marker() {
  python3 - "$1" "$2" "$MARK" <<'PY'
import sys
path, n, mark = sys.argv[1], int(sys.argv[2]), sys.argv[3]
line = (mark + "\n").encode()
data = (line * (n // len(line) + 1))[:n]
with open(path, "wb") as f:
    f.write(data)
PY
}

# not_found_anywhere WHEN: grep every place the daemon could have written.
not_found_anywhere() {
  local when=$1 hits
  hits=$(grep -r -a -l -F -- "$MARK" "$(store_snapshot)" "$WAVEFS_HOME" "$SPILL_DIR" "$META_DIR" 2>/dev/null || true)
  [ -z "$hits" ] || fail "marker found $when in: $hits"
  hits=$(find "$T" -path "$MNT" -prune -o -type f -print0 2>/dev/null |
           xargs -0 -r grep -a -l -F -- "$MARK" 2>/dev/null || true)
  [ -z "$hits" ] || fail "marker found $when in: $hits"
  # Only files changed since the test started can hold the marker.
  # (A Ceph RGW data directory is checked through the bucket's objects.)
  # A search cut short must not pass as "nothing found": xargs exits 0
  # (found) or 123 (a grep found nothing, or could not read a file that
  # went away meanwhile); a timeout, a killed or missing grep is a failure.
  # (find's own status is left out: other users' unreadable dirs.)
  local rc=0
  hits=$( (find /tmp /var/tmp /dev/shm -xdev \( -path "$T" -o -path "${WAVEFS_RGW_DIR:-$T}" \) -prune -o -type f -newer "$T/started" -print0 2>/dev/null || true) |
           timeout 120 xargs -0 -r grep -a -l -s -F -- "$MARK" 2>/dev/null) || rc=$?
  case "$rc" in
    0 | 123) ;;
    *) fail "the search of the temp dirs $when did not finish (exit $rc)" ;;
  esac
  [ -z "$hits" ] || fail "marker found $when in temp dirs: $hits"
  hits=$(grep -r -a -l -F -- "$NAME_MARK" "$(store_snapshot)" 2>/dev/null || true)
  [ -z "$hits" ] || fail "file name found in the store $when: $hits"
  pass "no plaintext marker on disk $when"
}

touch "$T/started"
wfs_init
wfs_mount
mkdir "$MNT/$NAME_MARK"
write_marker "$MNT/data.txt" $((5 * 1024 * 1024))        # 1 full chunk + a tail
write_marker "$MNT/$NAME_MARK/small.txt" 100             # a tiny file
write_marker "$MNT/sub-chunk.txt" $((1024 * 1024))       # less than a chunk

expect_eq "marker lines readable through the mount" \
  $((5 * 1024 * 1024 / (${#MARK} + 1))) "$(grep -c -F -- "$MARK" "$MNT/data.txt")"
sync
not_found_anywhere "while mounted (after close)"

# A file still open (by a live process) with written, unflushed data.
python3 - "$MNT/open.txt" "$MARK" "$T/ready" "$T/stop" <<'PY' &
import os, sys, time
path, mark, ready, stop = sys.argv[1:5]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, ((mark + "\n") * 200000).encode())
open(ready, "w").close()
deadline = time.time() + 300
while not os.path.exists(stop) and time.time() < deadline:
    time.sleep(0.05)
os.close(fd)
PY
writer=$!
for _ in $(seq 1 600); do [ -e "$T/ready" ] && break; sleep 0.1; done
[ -e "$T/ready" ] || fail "the writer never got its data written"
not_found_anywhere "while a written file is still open"
touch "$T/stop"
wait "$writer" || fail "the writer of open.txt failed"

wfs_unmount
not_found_anywhere "after unmount"

wfs_mount
drop_caches
expect_eq "small file content after remount" 100 "$(file_size "$MNT/$NAME_MARK/small.txt")"
check "marker present in the mounted file after remount" grep -q -F -- "$MARK" "$MNT/data.txt"
wfs_unmount
not_found_anywhere "after the second unmount"
