#!/usr/bin/env bash
# FUSE_HANDLE_KILLPRIV_V2 (fs/fuse_wire.h): the daemon, not the kernel,
# clears set-user-ID/set-group-ID bits, so the kernel stops asking for
# security.capability before every write(2). Checks that it is negotiated,
# that a stream of small writes costs no GETXATTR per write, and that every
# way a file loses its privileges on ext4 loses them here too, step by step
# against a local directory: writes (small ones, big ones that come spliced,
# or in memory in the it_nosplice_ variant, and O_DIRECT ones), a truncating
# open, ftruncate and chown by a user without CAP_FSETID, chown(-1, -1) by
# root, and a file capability (setcap) removed by the next write. Root's own
# writes keep the bits, as on ext4.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (chown, setcap, a child as uid 65534)"

LOCAL="$T/local"
mkdir -p "$LOCAL"
# uid 65534 must reach both trees and the sources.
chmod 755 "$T" "$SRC"
chmod 777 "$LOCAL"
make_random "$SRC/s" 8M killpriv-s
make_random "$SRC/big" 1M killpriv-big

wfs_init
# allow_other: the children run as uid 65534.
wfs_mount -o allow_other
chmod 777 "$MNT"
expect_eq "the kernel took FUSE_HANDLE_KILLPRIV_V2" 1 "$(stat_get killpriv_v2)"

# 1. Small writes cost no GETXATTR each. (Reading the counter is a
# GETXATTR or two itself: measured, then taken off.)
g0=$(stat_get getxattr_requests)
g1=$(stat_get getxattr_requests)
writes_before=$(stat_get write_requests)
g2=$(stat_get getxattr_requests)
check "dd bs=8k into the mount" dd if="$SRC/s" of="$MNT/stream" bs=8k status=none
g3=$(stat_get getxattr_requests)
if [ "$(stat_get writeback_cache)" = 0 ]; then
  expect_eq "8 MiB in 8 KiB writes are 1024 WRITE requests" 1024 \
    $(($(stat_get write_requests) - writes_before))
fi
expect_le "1024 write(2) calls cost at most 2 GETXATTR requests (1024 before)" \
  $((g3 - g2 - (g1 - g0))) 2
check "the streamed file equals its source" cmp "$SRC/s" "$MNT/stream"

# as_nobody CMD...: runs CMD as uid/gid 65534 with no supplementary groups
# and no capabilities.
as_nobody() {
  setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- "$@"
}

# both MODE HOW: the same privileged file in the mount and in $LOCAL, then
# HOW done to each; their modes and bytes must agree afterwards.
n=0
both() {
  local mode=$1 how=$2 d m l
  n=$((n + 1))
  for d in "$MNT" "$LOCAL"; do
    head -c 100000 "$SRC/s" >"$d/p$n"
    chown 0:0 "$d/p$n"
    chmod "$mode" "$d/p$n"
    case "$how" in
      nobody-write) as_nobody sh -c "printf K >>'$d/p$n'" ;;
      nobody-big-write) as_nobody dd if="$SRC/big" of="$d/p$n" bs=1M conv=notrunc status=none ;;
      nobody-direct-write) as_nobody dd if="$SRC/big" of="$d/p$n" bs=4096 count=1 oflag=direct conv=notrunc status=none ;;
      nobody-otrunc) as_nobody sh -c ": >'$d/p$n'" ;;
      nobody-ftruncate) as_nobody truncate -s 5 "$d/p$n" ;;
      root-write) printf K >>"$d/p$n" ;;
      root-chown) chown 65534 "$d/p$n" ;;
      root-chown-none) python3 -c "import os,sys; os.chown(sys.argv[1], -1, -1)" "$d/p$n" ;;
    esac || fail "$how on $d/p$n failed"
  done
  m=$(stat -c %a "$MNT/p$n")
  l=$(stat -c %a "$LOCAL/p$n")
  expect_eq "mode $mode after $how (local: $l)" "$l" "$m"
  check "bytes after $how equal the local file's" cmp "$LOCAL/p$n" "$MNT/p$n"
}

for mode in 4777 2777 6777 2767 6767; do
  for how in nobody-write nobody-big-write nobody-direct-write nobody-otrunc nobody-ftruncate root-write root-chown root-chown-none; do
    both "$mode" "$how"
  done
done

# 2. A file capability goes with the next write, as on ext4.
for d in "$MNT" "$LOCAL"; do
  printf 'x' >"$d/cap"
  setcap cap_net_raw+ep "$d/cap" || fail "setcap on $d/cap"
done
check "the capability is set in the mount" sh -c "getcap '$MNT/cap' | grep -q cap_net_raw"
for d in "$MNT" "$LOCAL"; do printf 'y' >>"$d/cap"; done
expect_eq "a write removed the capability as on ext4" "$(getcap "$LOCAL/cap")" "$(getcap "$MNT/cap")"
expect_eq "and getcap shows none" "" "$(getcap "$MNT/cap")"

# 3. All of it after a remount.
wfs_remount
for f in $(cd "$LOCAL" && ls); do
  expect_eq "$f keeps its mode after a remount" "$(stat -c %a "$LOCAL/$f")" "$(stat -c %a "$MNT/$f")"
done
wfs_unmount
pass "set-user-ID, set-group-ID and capabilities go exactly as on ext4"
