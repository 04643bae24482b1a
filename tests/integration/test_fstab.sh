#!/usr/bin/env bash
# wavefs mounted like any filesystem: `mount -t fuse.wavefs`, an fstab line
# (`mount -T FILE`), `umount` that waits until every chunk is in the store,
# the options mount(8) and systemd consume, and a clear error for an
# unknown option. Runs the helpers mount.fuse.wavefs / umount.fuse.wavefs.
source "$(dirname "$0")/lib.sh"

for tool in mount umount chattr flock; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found (run scripts/install-deps.sh)"
done
[ "$(id -u)" -eq 0 ] || skip "needs root: mount(8) helpers live in /sbin"

# libmount runs helpers from /sbin, /sbin/fs.d and /sbin/fs only ($PATH is
# not searched, util-linux 2.38 FS_SEARCH_PATH), so the built binary is
# linked in there for the test's duration under the helpers' names. A lock
# keeps concurrent runs apart; helpers installed before are set aside and
# put back by the trap, whatever happens.
HELPER_DIR=/sbin
HELPERS=(mount.fuse.wavefs umount.fuse.wavefs)
exec 9>/run/lock/wavefs-it-mount-helper.lock
flock -w 240 9 || fail "another run holds /run/lock/wavefs-it-mount-helper.lock"
mkdir -p "$T/saved-helpers"
HELPERS_INSTALLED=0

fstab_cleanup() {
  # Uploads must be possible again before lib.sh's cleanup unmounts.
  [ -d "$STORE/chunks" ] && chattr -i "$STORE/chunks" 2>/dev/null
  # Through umount(8) while the helpers are there, so that the utab entry
  # goes too; lib.sh's cleanup then finds nothing left to unmount.
  is_mounted "$MNT" && timeout 60 command umount "$MNT" 9>&- 2>/dev/null
  if [ -f /run/mount/utab ] && grep -q "TARGET=$T/" /run/mount/utab; then
    sed -i "\\#TARGET=$T/#d" /run/mount/utab
  fi
  if [ "$HELPERS_INSTALLED" = 1 ]; then
    local h
    for h in "${HELPERS[@]}"; do
      rm -f "$HELPER_DIR/$h"
      if [ -e "$T/saved-helpers/$h" ] || [ -L "$T/saved-helpers/$h" ]; then
        mv -f "$T/saved-helpers/$h" "$HELPER_DIR/$h"
      fi
    done
    HELPERS_INSTALLED=0
  fi
  return 0
}
# set +e: under errexit the `(exit rc)` that hands rc to it_cleanup would
# end the trap before it ran.
trap 'rc=$?; set +e; fstab_cleanup; (exit $rc); it_cleanup' EXIT

for h in "${HELPERS[@]}"; do
  if [ -e "$HELPER_DIR/$h" ] || [ -L "$HELPER_DIR/$h" ]; then
    mv -f "$HELPER_DIR/$h" "$T/saved-helpers/$h"
  fi
done
HELPERS_INSTALLED=1
# Daemons must not inherit the lock (fd 9): a daemon left by a failed run
# would keep the next run waiting.
mount() { command mount "$@" 9>&-; }
umount() { command umount "$@" 9>&-; }
for h in "${HELPERS[@]}"; do ln -s "$WAVEFS_BIN" "$HELPER_DIR/$h"; done
it_log "helpers linked into $HELPER_DIR"

# After a mount by mount(8): check it and record the daemon for cleanup.
record_mount() {
  is_mounted "$MNT" || fail "$1 returned 0 but $MNT is not mounted"
  DAEMON_PID=$(stat_get pid)
  pid_alive "$DAEMON_PID" || fail "daemon pid $DAEMON_PID from stats is not running"
  DAEMON_PIDS+=("$DAEMON_PID")
  SPILL_DIR=$(stat_get spill_dir)
  META_DIR=$(stat_get meta_dir)
  it_log "mounted by $1 (daemon pid $DAEMON_PID)"
}

# `umount` must return only after the flush: the daemon gone, nothing staged.
umount_flushed() {
  local pid=$DAEMON_PID rc=0
  timeout 300 umount "$MNT" >"$T/umount.out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$T/umount.out" >&2; fail "umount $MNT failed (exit $rc)"; }
  pid_alive "$pid" && fail "umount returned while daemon $pid was still running (not flushed)"
  assert_flushed "umount"
  pass "umount returned after the daemon flushed and exited"
}

wfs_init
SPILL=$T/spill
META=$T/meta
mkdir -p "$SPILL" "$META"
chmod 700 "$META"

# 1. mount -t fuse.wavefs with wavefs options as -o.
rc=0
mount -t fuse.wavefs "$STORE" "$MNT" -o "spill-dir=$SPILL,meta_dir=$META,upload-threads=2" \
  >"$T/mount.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/mount.out" >&2; fail "mount -t fuse.wavefs failed (exit $rc)"; }
record_mount "mount -t fuse.wavefs"
expect_eq "mount(8) is silent on success" "" "$(cat "$T/mount.out")"
expect_eq "-o spill-dir= reaches wavefs" "$SPILL" "$SPILL_DIR"
expect_eq "-o meta_dir= (underscores) reaches wavefs" "$META" "$META_DIR"
expect_eq "mountinfo type" "fuse.wavefs" "$(findmnt -n -o FSTYPE "$MNT")"
expect_eq "mountinfo source is the store, as fstab names it" "$STORE" "$(findmnt -n -o SOURCE "$MNT")"

make_random "$SRC/a" 20M fstab-a
check "cp into a mount made by mount(8)" cp "$SRC/a" "$MNT/a"
check "read back" cmp "$SRC/a" "$MNT/a"

# 2. umount waits for the drain. Uploads are blocked (the store's chunk
# directory made immutable) so chunks are surely pending when umount runs.
chattr +i "$STORE/chunks" || fail "cannot chattr +i $STORE/chunks"
make_random "$SRC/b" 12M fstab-b
check "cp while uploads are blocked" cp "$SRC/b" "$MNT/b"
pending=$(stat_get pending_chunks)
expect_le "chunks pending before umount" 1 "$pending"
pid=$DAEMON_PID
umount "$MNT" >"$T/umount-bg.out" 2>&1 &
umount_pid=$!
state=""
for _ in $(seq 1 300); do
  state=$(sed -n 's/^state=//p' "$META/daemon-status" 2>/dev/null || true)
  [ "$state" = draining ] && break
  sleep 0.1
done
expect_eq "daemon drains after the kernel unmount" draining "$state"
is_mounted "$MNT" && fail "$MNT still mounted while the daemon drains"
kill -0 "$umount_pid" 2>/dev/null || fail "umount returned while chunks were pending"
pass "umount is still waiting while chunks are pending"
chattr -i "$STORE/chunks"
rc=0
wait "$umount_pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/umount-bg.out" >&2; fail "umount failed (exit $rc)"; }
pid_alive "$pid" && fail "umount returned while daemon $pid still ran"
assert_flushed "umount"
expect_eq "umount(8) is silent on success" "" "$(cat "$T/umount-bg.out")"
expect_le "chunks of both files are in the store" 8 "$(store_chunk_count)"

# 3. An fstab line with the options mount(8) and systemd consume.
opts="noauto,_netdev,x-systemd.automount,x-systemd.mount-timeout=5min,nofail"
printf '%s %s fuse.wavefs %s,spill-dir=%s,meta-dir=%s 0 0\n' \
  "$STORE" "$MNT" "$opts" "$SPILL" "$META" >"$T/fstab"
rc=0
mount -T "$T/fstab" "$MNT" >"$T/mount.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/mount.out" >&2; fail "mount -T fstab $MNT failed (exit $rc)"; }
record_mount "mount -T fstab"
check "file a after remount by fstab" cmp "$SRC/a" "$MNT/a"
check "file b after remount by fstab" cmp "$SRC/b" "$MNT/b"
# `mount -a` must see the line as mounted (the source matches) and leave it.
printf '%s %s fuse.wavefs spill-dir=%s,meta-dir=%s 0 0\n' "$STORE" "$MNT" "$SPILL" "$META" >"$T/fstab-auto"
check "mount -a skips an fstab line that is already mounted" mount -a -T "$T/fstab-auto"
expect_eq "still the first daemon after mount -a" "$DAEMON_PID" "$(stat_get pid)"
umount_flushed

# 4. Kernel flags and `users` (which implies noexec,nosuid,nodev).
rc=0
mount -t fuse.wavefs "$STORE" "$MNT" -o "ro,users,nofail,_netdev,spill-dir=$SPILL,meta-dir=$META" \
  >"$T/mount.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/mount.out" >&2; fail "mount -o ro,users,... failed (exit $rc)"; }
record_mount "mount -o ro,users"
check "read on a ro mount made by mount(8)" cmp "$SRC/a" "$MNT/a"
if touch "$MNT/new" 2>/dev/null; then fail "-o ro mount accepted a new file"; fi
pass "-o ro refuses writes"
findmnt -n -o OPTIONS "$MNT" | grep -q 'nosuid' || fail "users did not imply nosuid: $(findmnt -n -o OPTIONS "$MNT")"
pass "users implies nosuid,nodev,noexec"
umount_flushed

# 5. Bad options: one line, non-zero, nothing mounted, no daemon.
bad_mount() {
  local desc=$1 want=$2 rc=0 lines
  shift 2
  mount -t fuse.wavefs "$STORE" "$MNT" "$@" >"$T/bad.out" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "$desc: mount succeeded"
  is_mounted "$MNT" && fail "$desc: $MNT got mounted"
  lines=$(wc -l <"$T/bad.out")
  expect_eq "$desc: one line of output" 1 "$lines"
  grep -q -- "$want" "$T/bad.out" || fail "$desc: message lacks '$want': $(cat "$T/bad.out")"
  pass "$desc: exit $rc: $(cat "$T/bad.out")"
}
bad_mount "unknown option" "unknown mount option 'bogus-opt=1'" -o "spill-dir=$SPILL,bogus-opt=1"
bad_mount "option without its value" "'spill-dir' needs a value" -o spill-dir
bad_mount "flag with a value" "'foreground' takes no value" -o foreground=1
bad_mount "a bad value" "thread counts" -o "meta-dir=$META,spill-dir=$SPILL,upload-threads=100"
[ -z "$(pids_under_t)" ] || fail "a daemon is left after failed mounts: $(pids_under_t)"
pass "no daemon left after failed mounts"

# 6. mount -f (fake) checks and mounts nothing; -s drops unknown options.
check "mount -f exits 0" mount -f -t fuse.wavefs "$STORE" "$MNT" -o "spill-dir=$SPILL"
is_mounted "$MNT" && fail "mount -f mounted"
pass "mount -f mounts nothing"
rc=0
mount -s -t fuse.wavefs "$STORE" "$MNT" -o "spill-dir=$SPILL,meta-dir=$META,bogus" \
  >"$T/mount.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/mount.out" >&2; fail "mount -s with an unknown option failed (exit $rc)"; }
record_mount "mount -s"
grep -q "ignoring unknown option 'bogus'" "$T/mount.out" || fail "-s did not warn: $(cat "$T/mount.out")"
pass "mount -s warns about and ignores an unknown option"
umount_flushed

# 7. The helpers leave no utab entry behind (a stale one would feed old
# userspace options to the next mount at this place).
if grep -q "TARGET=$MNT " /run/mount/utab 2>/dev/null; then
  fail "a /run/mount/utab entry for $MNT is left: $(grep "TARGET=$MNT " /run/mount/utab)"
fi
pass "no utab entry left for $MNT"
