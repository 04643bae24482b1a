#!/usr/bin/env bash
# Write data in pipes: with fs.pipe-max-size raised (or CAP_SYS_RESOURCE),
# libfuse splices each write request into a pipe and the daemon reads the
# data from there straight into its dirty buffers (OpWriteBuf). Checks that
# this path is taken, that whole-chunk, unaligned and chunk-crossing writes
# and overwrites read back equal to a local copy, and that with pipes too
# small for a request the daemon says so in its log and writes still work.
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

# 1. Pipes big enough: the data comes spliced.
set_pipe_max_size $((4 * MiB))
wfs_mount
check "splice read is on" grep -q "splice read on" "$(stat_get log_file)"
check "the writes through the mount" write_mix "$MNT"
check "the same writes to a local directory" write_mix "$T/local"
check "the file reads back equal while mounted" cmp "$T/local/f" "$MNT/f"
spliced=$(stat_get spliced_writes)
expect_lt "write requests came spliced" 0 "$spliced"
it_log "spliced_writes=$spliced of write_requests=$(stat_get write_requests)"
wfs_remount
drop_caches
check "the file reads back equal after a remount" cmp "$T/local/f" "$MNT/f"
wfs_unmount

# 2. Pipes too small (fs.pipe-max-size 1 MiB): libfuse reads requests into
# memory. A daemon with CAP_SYS_RESOURCE grows its pipes anyway.
set_pipe_max_size $((1 * MiB))
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
