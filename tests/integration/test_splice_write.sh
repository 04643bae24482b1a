#!/usr/bin/env bash
# Write data in pipes: libfuse splices each write request into a pipe and
# the daemon reads the data from there straight into its dirty buffers
# (OpWriteBuf). max_write is 1016 KiB so that a request fits the 1 MiB
# pipe any process may have at the default fs.pipe-max-size, and max_pages
# stays 256 so that a 1 MiB read is still one request.
# Checks that this path is taken at that default, without CAP_SYS_RESOURCE,
# with requests of the expected size; that whole-chunk, unaligned and
# chunk-crossing writes and overwrites read back equal to a local copy; and
# that with --no-splice or pipes too small the daemon says why in its log
# and the same writes still work; and that the daemon switches between
# splicing big writes and reading other requests without losing one.
source "$(dirname "$0")/lib.sh"

MiB=$((1 << 20))
make_random "$SRC/big" 24M splice-big
make_random "$SRC/patch" 3M splice-patch

# write_mix DIR: the same writes into DIR/f (the mount or a local copy).
write_mix() {
  local d=$1
  cp "$SRC/big" "$d/f" || return 1
  # 1 MiB pieces, then pieces that cross the 4 MiB chunk boundaries at
  # unaligned offsets, then small writes (which libfuse keeps in memory).
  dd if="$SRC/patch" of="$d/f" bs=1M seek=2 count=3 conv=notrunc status=none &&
    dd if="$SRC/patch" of="$d/f" bs=777777 seek=5 count=3 conv=notrunc status=none &&
    dd if="$SRC/patch" of="$d/f" bs=4095 seek=1000 count=7 conv=notrunc status=none &&
    dd if="$SRC/patch" of="$d/f" bs=1M seek=23 count=3 status=none
}

has_cap_sys_resource() {
  local eff
  eff=$(awk '/^CapEff:/ {print $2}' "/proc/$1/status")
  (( (16#$eff >> 24) & 1 ))
}

wfs_init
mkdir -p "$T/local"

# 1. fs.pipe-max-size at its default (1 MiB): the data comes spliced, also
# to a daemon without CAP_SYS_RESOURCE (this CI's root has none), in
# requests of at most 1016 KiB.
set_pipe_max_size $((1 * MiB))
wfs_mount
check "splice read is on" grep -q "splice read on" "$(stat_get log_file)"
check "the writes through the mount" write_mix "$MNT"
check "the same writes to a local directory" write_mix "$T/local"
check "the file reads back equal while mounted" cmp "$T/local/f" "$MNT/f"
spliced=$(stat_get spliced_writes)
expect_lt "write requests came spliced" 0 "$spliced"
it_log "spliced_writes=$spliced of write_requests=$(stat_get write_requests)"
# A 4 MiB write(2) at offset 0 is 5 requests: 4 of 1016 KiB (254 pages;
# unaligned ones span 255, and the header page fills a 1 MiB pipe's 256th
# slot) and one of 32 KiB.
before=$(stat_get write_requests)
check "a 4 MiB write" dd if="$SRC/big" of="$MNT/g" bs=4M count=1 status=none
after=$(stat_get write_requests)
expect_eq "a 4 MiB write is 5 requests of at most 1016 KiB" 5 $((after - before))
# Reads keep 256 pages per request: a cold 1 MiB pread is one request.
expect_eq "the INIT reply asked for 256 pages per request" 256 "$(stat_get max_pages)"
drop_caches
before=$(stat_get read_requests)
check "a cold 1 MiB pread" python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
assert len(os.pread(fd, 1 << 20, 3 << 20)) == 1 << 20" "$MNT/g"
after=$(stat_get read_requests)
expect_eq "a cold 1 MiB pread is one read request" 1 $((after - before))
check "an unaligned 4 MiB write" dd if="$SRC/big" of="$MNT/g" bs=4M count=1 \
  seek=1000 oflag=seek_bytes conv=notrunc status=none
check "both read back equal" cmp <(head -c 1000 "$SRC/big"; cat "$SRC/big" | head -c $((4 * MiB))) "$MNT/g"
wfs_remount
drop_caches
check "the file reads back equal after a remount" cmp "$T/local/f" "$MNT/f"
wfs_unmount

# 1b. Spliced and read by turns (fs/fuse_wire.h): writes of 128 KiB or
# more come spliced, other requests are read into memory, and the daemon
# switches between the two as they come, on its three FUSE threads. rsync
# writes with one process while another looks names up, so a thread that
# took a spliced write may read its next request: libfuse's read path kept
# that buffer's "in the pipe" flag, so before fs/fuse_loop.cc cleared it
# that request was lost and rsync hung (found so with /usr/share/doc, and
# here in every run without the fix; every step has a timeout). Which
# thread takes which request is the kernel's choice: this tree is rsynced
# four times.
mkdir -p "$SRC/tree"
for j in $(seq 300); do
  head -c $((j * 37)) "$SRC/patch" >"$SRC/tree/f$j"
  if ((j % 50 == 0)); then
    tail -c $((2 * MiB + j)) "$SRC/big" >"$SRC/tree/f${j}big"
  fi
done
wfs_mount
check "the log says big writes are spliced and the rest read" \
  grep -q "splice read on (for writes of 128 KiB or more" "$(stat_get log_file)"
switches=$(stat_get splice_switches)
rounds=$(seq 4)
for i in $rounds; do
  check "round $i: rsync -a of small and big files" \
    timeout -k 5 60 rsync -a "$SRC/tree/" "$MNT/tree$i/"
  check "round $i: 8 KiB writes (read)" timeout 60 dd if="$SRC/patch" \
    of="$MNT/s$i" bs=8k count=64 status=none
done
expect_lt "it switched at least 8 times" 7 \
  $(($(stat_get splice_switches) - switches))
for i in $rounds; do
  check "round $i: the tree reads back equal" diff -r "$SRC/tree" "$MNT/tree$i"
  check "round $i: the 8 KiB writes read back equal" \
    cmp <(head -c $((64 * 8192)) "$SRC/patch") "$MNT/s$i"
done
wfs_remount
check "after a remount too" diff -r "$SRC/tree" "$MNT/tree4"
wfs_unmount

# 2. --no-splice: requests are read into memory, and the log says so.
wfs_mount --no-splice
check "the log says splice read is off by --no-splice" \
  grep -q "splice read off (--no-splice)" "$(stat_get log_file)"
rm -f "$T/local/f"
check "the writes through the mount" write_mix "$MNT"
check "the same writes to a local directory" write_mix "$T/local"
check "the file reads back equal" cmp "$T/local/f" "$MNT/f"
expect_eq "no write request came spliced" 0 "$(stat_get spliced_writes)"
wfs_unmount

# 3. Pipes too small (fs.pipe-max-size 512 KiB): libfuse reads requests
# into memory. A daemon with CAP_SYS_RESOURCE grows its pipes anyway.
set_pipe_max_size $((MiB / 2))
wfs_mount
if has_cap_sys_resource "$DAEMON_PID"; then
  it_log "the daemon has CAP_SYS_RESOURCE: its pipes grow past fs.pipe-max-size"
  check "splice read is on" grep -q "splice read on" "$(stat_get log_file)"
else
  check "the log says why splice read is off" \
    grep -q "splice read off (a pipe cannot hold" "$(stat_get log_file)"
fi
rm -f "$T/local/f"
check "the writes through the mount" write_mix "$MNT"
check "the same writes to a local directory" write_mix "$T/local"
check "the file reads back equal" cmp "$T/local/f" "$MNT/f"
if ! has_cap_sys_resource "$DAEMON_PID"; then
  expect_eq "no write request came spliced" 0 "$(stat_get spliced_writes)"
fi
wfs_unmount
