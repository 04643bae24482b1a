#!/usr/bin/env bash
# Reads are lazy: after a remount, reading 1 MiB in the middle of a 64 MiB
# file fetches only the 64 KiB segments under it, in one store request (the
# daemon raises the mount's kernel readahead to 1 MiB, so the kernel sends
# the read whole instead of in eight 128 KiB pieces), not its 4 MiB chunk
# and never the file.
source "$(dirname "$0")/lib.sh"

wfs_init
make_random "$SRC/big" 64M lazy-big
wfs_mount
check "cp 64 MiB into the mount" cp "$SRC/big" "$MNT/big"
wfs_unmount
expect_le "store holds the 16 chunks" 16 "$(store_chunk_count)"

wfs_mount
expect_eq "the mount's kernel readahead is 1 MiB" 1024 \
  "$(cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb")"
drop_caches
g0=$(stat_get store_gets)
expect_eq "store_gets right after mount" 0 "$g0"
check "stat of the file" stat "$MNT/big"
g_stat=$(stat_get store_gets)
expect_eq "stat fetches no chunk" 0 "$g_stat"

# 1 MiB at offset 30 MiB lies inside chunk 7 (28..32 MiB).
b0=$(stat_get store_bytes_got)
check "dd of 1 MiB at 30 MiB" dd if="$MNT/big" of="$T/piece" bs=1M skip=30 count=1 status=none
sleep 1   # let a prefetch, if any, be counted
g1=$(stat_get store_gets)
got=$((g1 - g0))
bytes=$(( $(stat_get store_bytes_got) - b0 ))
expect_eq "the 1 MiB read was one store request" 1 "$got"
expect_le "at least the 1 MiB was fetched" $((1 << 20)) "$bytes"
# 16 segments of 64 KiB and a tag each: nothing around them.
expect_le "only its segments and their tags were fetched" "$bytes" $(( (1 << 20) + 32 * 16 ))
dd if="$SRC/big" of="$T/piece.want" bs=1M skip=30 count=1 status=none
check "the 1 MiB read equals the source's range" cmp "$T/piece.want" "$T/piece"

# A second read of the same range, even through a new open, is served from
# the kernel's page cache without the store. The range is pinned in the
# page cache first (mmap + mlock): this machine's kernel was seen dropping a
# single clean page of the idle file between two reads, with the daemon
# asking nothing and every reclaim counter at 0, and drop_caches run by
# anything else on the machine would do the same. Pinned pages survive
# both, but not an invalidation by the mount: an open without keep_cache,
# the daemon's notify_inval_inode or a changed mtime seen by
# auto_inval_data drop them, and the re-read then goes to the store.
pin_range "$MNT/big" $((30 << 20)) $((1 << 20))
sleep 1   # the attribute timeout: the re-reads below revalidate them
g1=$(stat_get store_gets)
check "dd of the same range through a new open" dd if="$MNT/big" of=/dev/null bs=1M skip=30 count=1 status=none
check "dd of the same range again" dd if="$MNT/big" of="$T/piece.again" bs=1M skip=30 count=1 status=none
sleep 1   # let a fetch, if any, be counted
g2=$(stat_get store_gets)
if [ "$g2" -gt "$g1" ]; then
  it_log "re-read fetched again; kernel_invalidations=$(stat_get kernel_invalidations)" \
    "stat: $(stat -c 'size %s mtime %y ctime %z' "$MNT/big")" \
    "resident: $(fincore -nb -o RES "$MNT/big" 2>/dev/null)"
fi
expect_le "re-reading the same range fetched nothing new" "$g2" "$g1"
check "the re-read equals the source's range" cmp "$T/piece.want" "$T/piece.again"
unpin_all
wfs_unmount
