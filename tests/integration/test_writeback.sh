#!/usr/bin/env bash
# --writeback-cache: the kernel gathers small writes in its page cache and
# sends them in ~1 MiB pieces. Without the option 8 MiB written by `dd bs=8k`
# reach the daemon as 1024 WRITE requests; with it as a handful. Either way
# every file must behave exactly like one on a local disk, step by step:
# appends through separate opens, O_APPEND, overwrites in the middle,
# truncates, mtime and size after close, and after an fsync the data
# survives kill -9 of the daemon. (The it_wb_* tests rerun other
# integration tests with the option.)
source "$(dirname "$0")/lib.sh"

make_random "$SRC/s" 8M wb-s

# same_as_local NAME: the mount's file equals the local one (bytes, size).
same_as_local() {
  check "$1 equals the local copy" cmp "$LOCAL/$1" "$MNT/$1"
  expect_eq "$1 has the local size" "$(file_size "$LOCAL/$1")" "$(file_size "$MNT/$1")"
}

wfs_init
wfs_mount
expect_eq "writeback cache is off by default" 0 "$(stat_get writeback_cache)"
before=$(stat_get write_requests)
check "dd bs=8k without the cache" dd if="$SRC/s" of="$MNT/plain" bs=8k status=none
after=$(stat_get write_requests)
expect_eq "8 MiB in 8 KiB writes are 1024 WRITE requests without the cache" 1024 $((after - before))
expect_eq "none of them marked as the kernel's writeback" 0 "$(stat_get writeback_writes)"
check "the file written without the cache equals its source" cmp "$SRC/s" "$MNT/plain"
wfs_unmount

wfs_mount --writeback-cache
expect_eq "writeback cache is on with --writeback-cache" 1 "$(stat_get writeback_cache)"
before=$(stat_get write_requests)
check "dd bs=8k with the cache" dd if="$SRC/s" of="$MNT/wb" bs=8k status=none
after=$(stat_get write_requests)
expect_le "8 MiB in 8 KiB writes reach the daemon in at most 32 WRITE requests" $((after - before)) 32
# The daemon tells them from an application's writes (FUSE_WRITE_CACHE):
# only the kernel's pieces may seal a chunk once a gap in it fills.
expect_eq "every one of them marked as the kernel's writeback" $((after - before)) "$(stat_get writeback_writes)"
check "the file written through the cache equals its source" cmp "$SRC/s" "$MNT/wb"
before=$(stat_get write_requests)
head -c 4M "$SRC/s" | tee "$MNT/tee" >/dev/null || fail "tee into the mount failed"
after=$(stat_get write_requests)
expect_le "tee's small writes are gathered too" $((after - before)) 16
check "tee's file equals its source" cmp <(head -c 4M "$SRC/s") "$MNT/tee"

# Appends, each through its own open (a log), and O_APPEND with a writer
# that seeks elsewhere first: the kernel sets the offsets.
for i in $(seq 1 300); do
  echo "line $i of a log" >>"$LOCAL/log"
  echo "line $i of a log" >>"$MNT/log"
done
same_as_local log
for d in "$LOCAL" "$MNT"; do
  python3 - "$d/app" <<'PY' || fail "O_APPEND writer failed on $d"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.write(fd, b"a" * 5000)
os.lseek(fd, 0, os.SEEK_SET)
os.write(fd, b"b" * 3000)  # O_APPEND: still at the end
os.close(fd)
PY
done
same_as_local app

# An existing file changed in place, step by step against a local copy.
cp "$SRC/s" "$LOCAL/edit"
cp "$SRC/s" "$MNT/edit"
same_as_local edit
for d in "$LOCAL" "$MNT"; do
  printf 'patched in the middle' | dd of="$d/edit" bs=1 seek=5000000 conv=notrunc status=none
done
same_as_local edit
truncate -s 3000001 "$LOCAL/edit" "$MNT/edit"
same_as_local edit
for d in "$LOCAL" "$MNT"; do
  dd if="$SRC/s" of="$d/edit" bs=8k count=100 seek=500 conv=notrunc status=none
done
same_as_local edit
truncate -s 9M "$LOCAL/edit" "$MNT/edit"
same_as_local edit
cp "$SRC/s" "$LOCAL/short"; head -c 1000 "$SRC/s" >"$LOCAL/short"
cp "$SRC/s" "$MNT/short"; head -c 1000 "$SRC/s" >"$MNT/short"
same_as_local short

# mtime: an explicit one sticks; a later write moves it to now.
touch -d @1000000000 "$MNT/edit"
expect_eq "touch -d sets mtime" 1000000000 "$(stat -c %Y "$MNT/edit")"
# The kernel stamps mtime from its coarse clock, which lags the clock
# date(1) reads by up to a tick: at a second boundary `date +%s` can already
# say N while the write is stamped N - 1 (seen once in CI). Hence one second
# of slack; a stuck mtime is still 1000000000.
t0=$(( $(date +%s) - 1 ))
echo more >>"$MNT/edit"
echo more >>"$LOCAL/edit"
mt=$(stat -c %Y "$MNT/edit")
expect_le "a write after touch moves mtime to now" "$t0" "$mt"

# fsync: with the cache the data is still the daemon's before fsync
# returns; it survives kill -9.
DAEMON=$DAEMON_PID python3 - "$MNT/synced" "$SRC/s" <<'PY' || fail "fsync writer failed"
import os, sys
src = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(0, len(src), 8192):
    os.write(fd, src[i:i + 8192])
os.fsync(fd)
print("fsynced", flush=True)
os.kill(int(os.environ["DAEMON"]), 9)
PY
wait_pid_exit "$DAEMON_PID" 10 || fail "daemon $DAEMON_PID survived kill -9"
pass "daemon killed right after fsync"
wfs_mount --writeback-cache
check "the fsynced file survived kill -9" cmp "$SRC/s" "$MNT/synced"
same_as_local log
same_as_local edit
same_as_local app
same_as_local short
check "wb survived too (closed before the kill)" cmp "$SRC/s" "$MNT/wb"

# Random writes over more than FUSE's strict dirty limit (~48 MiB): with it
# relaxed (fs/kernel_readahead.h) the pages wait for the close and each
# chunk is sealed about once, not fetched and resealed every time the
# kernel's writeback sweep passes it.
bdi=/sys/class/bdi/$(awk -v m="$MNT" '$5 == m {d = $3} END {print d}' /proc/self/mountinfo)
expect_eq "the mount's dirty pages have no strict limit" 0 "$(cat "$bdi/strict_limit")"
wait_uploaded "earlier files uploaded"
put_before=$(stat_get store_bytes_put)
# random_writes FILE: 128 MiB of seeded writes of 4 KiB-1 MiB at random
# offsets in a 128 MiB file (fio's randwrite --bsrange=4k-1m).
random_writes() {
  python3 - "$1" <<'PY'
import os, random, sys
rng = random.Random(11)
size = 128 << 20
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, size)
done = 0
while done < size:
    n = rng.randrange(1, 257) * 4096
    off = rng.randrange(0, size - n + 1) // 4096 * 4096
    os.pwrite(fd, rng.randbytes(n), off)
    done += n
os.close(fd)
PY
}
check "128 MiB of random writes into the mount" random_writes "$MNT/random"
check "the same into a local file" random_writes "$LOCAL/random"
same_as_local random
wait_uploaded "the random-written file uploaded"
put=$(($(stat_get store_bytes_put) - put_before))
it_log "random writes of 128 MiB put $((put >> 20)) MiB in the store"
expect_le "random writes put at most 1.25x the file in the store" "$put" $((160 << 20))
wfs_unmount
