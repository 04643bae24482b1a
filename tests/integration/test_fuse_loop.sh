#!/usr/bin/env bash
# The FUSE loop (fs/fuse_loop.h): by default one worker receives requests
# and polls for the next one before it sleeps (--fuse-spin); the others
# wait off the device, and a watchdog hands the receiving role on when a
# request holds its worker for a millisecond. What a user must never see
# from that: one request that waits (a writer held by back-pressure) holding
# up everyone else's. For each loop (the polling one, and --fuse-spin 0,
# where every worker reads the device):
#   1. uploads are refused (the store's chunk directory immutable) and the
#      spill is a 40 MiB tmpfs, so a 160 MiB dd blocks inside a WRITE once
#      the spill is full and waits for space (--space-wait 120);
#   2. while it is blocked, stat, ls -l, cat, touch, mkdir, mv, ln -s and
#      setfattr each answer within 20 s (the writer's wait is
#      120 s, so a loop that let it hold everyone up fails here however fast
#      the machine), and so do a new 10 KiB file and an append to one,
#      whose chunks go to the index, not the spill (before 2026-12-07 they
#      waited for spill space behind the big writer); the writer is still
#      blocked after them;
#   3. with polling on, the watchdog moved the role (fuse_handoffs > 0);
#      with --fuse-spin 0 it never runs (fuse_handoffs = 0);
#   4. uploads are allowed again: the writer finishes, and every file reads
#      back equal, also after a remount.
# Polling only while a CPU is free for it: with a busy loop on every CPU
# (and one more), the receiver's looks at the CPUs find them contended
# (fuse_cpu_contended, most of the looks while 32 MiB go in by dd bs=8k)
# and it sleeps instead of polling; once the loops end, polling resumes
# (16 MiB of zeros by dd bs=8k, holes, so no seal thread runs: a look
# finds a CPU free). Everything written reads back equal.
# More files written at once than FUSE threads (--fuse-threads 1, 8 dd at
# once, a 48M memory limit: fewer write buffers than writers): every write
# that waits for a pool buffer holds its worker, so the loop must start
# more (fuse_threads_peak > 1, fuse_threads_added > 0) or the writers crawl
# through the pool's 50-250 ms evictions (2 GiB by 12 dd took 84 s before
# 2026-12-07); all eight read back equal, also after a remount. For both
# loops.
# More files written at once than --fuse-max-threads (1 here): the
# watchdog finds the loop saturated and a write waiting for a pool buffer
# evicts one at once (fs/write_pipeline.h, Unstick); all read back equal.
# And --fuse-spin or --fuse-max-threads out of range: one line, non-zero
# exit, nothing mounted.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to mount tmpfs and chattr"
command -v chattr >/dev/null 2>&1 || fail "'chattr' not found (run scripts/install-deps.sh)"

mkdir -p "$T/spillfs"
mount -t tmpfs -o size=40m tmpfs "$T/spillfs" || fail "cannot mount a tmpfs for the spill"
SPILL=$T/spillfs/spill
OPTS=(--spill-dir "$SPILL" --spill-reserve 4M --space-wait 120 --drain-timeout 120)

make_random "$SRC/big" 160M loop-big
make_random "$SRC/small" 10K loop-small
cat "$SRC/small" "$SRC/small" >"$T/small.twice"

unblock_uploads() { chattr -i "$(store_dir)/chunks" 2>/dev/null || true; }
# Uploads must be possible again before lib.sh's cleanup unmounts; the
# tmpfs goes after it. set +e: under errexit the `(exit rc)` that hands rc
# to it_cleanup would end the trap before it ran.
trap 'rc=$?; set +e; unblock_uploads; (exit $rc); it_cleanup' EXIT

# size_settled FILE: waits until FILE's size (through the mount, each look
# bounded by 20 s) has not changed for 2 s while the writer is alive.
size_settled() {
  local last=-1 same=0 size i
  for i in $(seq 1 240); do
    size=$(timeout 20 stat -c %s "$1") || fail "stat of $1 did not answer within 20 s while a writer waited"
    kill -0 "$WRITER" 2>/dev/null || fail "the writer ended before the spill filled (size $size)"
    if [ "$size" = "$last" ]; then
      same=$((same + 1))
      [ "$same" -ge 4 ] && { echo "$size"; return 0; }
    else
      same=0
    fi
    last=$size
    sleep 0.5
  done
  fail "the writer of $1 never blocked (size still changing: $size)"
}

run_round() {
  local spin=$1 label=$2 blocked handoffs
  rm -rf "$T/store" "$T/home" "$SPILL"
  mkdir -p "$T/home"
  wfs_init
  chattr +i "$(store_dir)/chunks" || fail "cannot chattr +i the store's chunks"
  wfs_mount "${OPTS[@]}" --fuse-spin "$spin"
  check "$label: a small file in" cp "$SRC/small" "$MNT/small"

  dd if="$SRC/big" of="$MNT/big" bs=1M status=none 2>"$T/dd.err" &
  WRITER=$!
  blocked=$(size_settled "$MNT/big")
  pass "$label: the writer waits for spill space at $blocked bytes"

  check "$label: ls -l answers" timeout 20 ls -l "$MNT"
  check "$label: cat of another file answers, equal" timeout 20 cmp "$SRC/small" "$MNT/small"
  check "$label: touch answers" timeout 20 touch "$MNT/new"
  check "$label: mkdir answers" timeout 20 mkdir "$MNT/dir"
  check "$label: mv answers" timeout 20 mv "$MNT/new" "$MNT/dir/moved"
  check "$label: ln -s answers" timeout 20 ln -s ../small "$MNT/dir/link"
  check "$label: setfattr answers" timeout 20 setfattr -n user.k -v v "$MNT/small"
  expect_eq "$label: the link reads back" "$(cat "$SRC/small" | sha256sum)" "$(timeout 20 cat "$MNT/dir/link" | sha256sum)"
  check "$label: a new small file goes in" timeout 20 cp "$SRC/small" "$MNT/small2"
  check "$label: an append to a small file goes in" timeout 20 sh -c 'cat "$1" >>"$2"' sh "$SRC/small" "$MNT/small"
  check "$label: the new small file reads back equal" timeout 20 cmp "$SRC/small" "$MNT/small2"
  check "$label: the appended file reads back equal" timeout 20 cmp "$T/small.twice" "$MNT/small"
  kill -0 "$WRITER" 2>/dev/null || fail "$label: the writer was not blocked any more after the checks"
  expect_eq "$label: the writer is still where it waited" "$blocked" "$(timeout 20 stat -c %s "$MNT/big")"
  pass "$label: every request answered while the writer was blocked"

  handoffs=$(timeout 20 getfattr --only-values -n user.wavefs.stats "$MNT" | sed -n 's/^fuse_handoffs=//p')
  if [ "$spin" -gt 0 ]; then
    expect_le "$label: the watchdog moved the receiving role" 1 "$handoffs"
  else
    expect_eq "$label: no watchdog without polling" 0 "$handoffs"
  fi

  unblock_uploads
  rc=0
  wait "$WRITER" || rc=$?
  [ "$rc" -eq 0 ] || fail "$label: the writer failed once uploads resumed: $(head -c 300 "$T/dd.err")"
  pass "$label: the writer finished once uploads resumed"
  check "$label: big reads back equal" cmp "$SRC/big" "$MNT/big"
  wfs_remount "${OPTS[@]}" --fuse-spin "$spin"
  check "$label: big equal after a remount" cmp "$SRC/big" "$MNT/big"
  check "$label: small equal after a remount" cmp "$T/small.twice" "$MNT/small"
  check "$label: small2 equal after a remount" cmp "$SRC/small" "$MNT/small2"
  expect_eq "$label: the xattr after a remount" v "$(getfattr --only-values -n user.k "$MNT/small")"
  [ -e "$MNT/dir/moved" ] || fail "$label: the moved file is gone after a remount"
  wfs_unmount
}

HOGS=()
stop_hogs() {
  local p
  for p in "${HOGS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${HOGS[@]}"; do wait "$p" 2>/dev/null || true; done
  HOGS=()
}
trap 'rc=$?; set +e; stop_hogs; unblock_uploads; (exit $rc); it_cleanup' EXIT

# stat_delta KEY BEFORE: KEY's growth since BEFORE.
stat_delta() { echo $(($(stat_get "$1") - $2)); }

contention_round() {
  local i n looks contended looks2 contended2
  rm -rf "$T/store" "$T/home" "$SPILL"
  mkdir -p "$T/home"
  wfs_init
  wfs_mount --fuse-spin 100
  n=$(($(nproc) + 1))
  for i in $(seq 1 "$n"); do
    # timeout: the loops end even if this test is killed before its trap.
    timeout 300 sh -c 'while :; do :; done' &
    HOGS+=($!)
  done
  sleep 1
  looks=$(stat_get fuse_cpu_looks)
  contended=$(stat_get fuse_cpu_contended)
  check "busy CPUs: 32 MiB in by dd bs=8k" dd if="$SRC/big" of="$MNT/paced" bs=8k count=4096 status=none
  looks=$(stat_delta fuse_cpu_looks "$looks")
  contended=$(stat_delta fuse_cpu_contended "$contended")
  it_log "busy CPUs: $contended of $looks looks found them contended"
  expect_le "busy CPUs: the receiver looked at the CPUs" 5 "$looks"
  expect_le "busy CPUs: most looks found them contended" $(((looks + 1) / 2)) "$contended"
  stop_hogs
  looks2=$(stat_get fuse_cpu_looks)
  contended2=$(stat_get fuse_cpu_contended)
  check "free CPUs: 16 MiB of zeros" dd if=/dev/zero of="$MNT/zeros" bs=8k count=2048 status=none
  looks2=$(stat_delta fuse_cpu_looks "$looks2")
  contended2=$(stat_delta fuse_cpu_contended "$contended2")
  it_log "free CPUs: $contended2 of $looks2 looks found them contended"
  expect_lt "free CPUs: polling resumed (a look found a CPU free)" "$contended2" "$looks2"
  check "the files read back equal" cmp "$MNT/paced" <(head -c 32M "$SRC/big")
  check "the zeros read back equal" cmp "$MNT/zeros" <(head -c 16M /dev/zero)
  wfs_remount
  check "equal after a remount" cmp "$MNT/paced" <(head -c 32M "$SRC/big")
  check "zeros equal after a remount" cmp "$MNT/zeros" <(head -c 16M /dev/zero)
  wfs_unmount
}

# writers_round LABEL NAME N MIB CHECK OPTS...: a fresh store mounted with
# OPTS; N dd of MIB MiB each (slices of big) into NAME0.. at once; then
# CHECK LABEL (the round's assertions on the stats); every file reads back
# its slice, also after a remount with OPTS.
writers_round() {
  local label=$1 name=$2 n=$3 mib=$4 check_fn=$5 i pids=()
  shift 5
  rm -rf "$T/store" "$T/home" "$SPILL"
  mkdir -p "$T/home"
  wfs_init
  wfs_mount "$@"
  for i in $(seq 0 $((n - 1))); do
    dd if="$SRC/big" of="$MNT/$name$i" bs=1M skip=$((i * mib)) count="$mib" status=none &
    pids+=($!)
  done
  for i in $(seq 0 $((n - 1))); do
    wait "${pids[$i]}" || fail "$label: writer $i failed"
  done
  "$check_fn" "$label"
  local when
  for when in "reads back equal" "equal after a remount"; do
    [ "$when" = "reads back equal" ] || wfs_remount "$@"
    for i in $(seq 0 $((n - 1))); do
      check "$label: $name$i $when" cmp "$MNT/$name$i" <(dd if="$SRC/big" bs=1M skip=$((i * mib)) count="$mib" status=none)
    done
  done
  wfs_unmount
}

# The loop grew: --fuse-threads 1, eight dd at once, a 48M memory limit.
loop_grew() {
  local label=$1 peak added
  peak=$(stat_get fuse_threads_peak)
  added=$(stat_get fuse_threads_added)
  it_log "$label: fuse_threads_peak=$peak fuse_threads_added=$added write_buffers=$(stat_get write_buffers)"
  expect_le "$label: the loop grew past --fuse-threads 1" 2 "$peak"
  expect_le "$label: workers were added" 1 "$added"
}

# many_writers_round SPIN LABEL
many_writers_round() {
  writers_round "$2" w 8 20 loop_grew --fuse-spin "$1" --fuse-threads 1 --memory-limit 48M
}

# More files written at once than the loop may have workers
# (--fuse-threads 1 --fuse-max-threads 1, six dd at once, a 24M memory
# limit: two write buffers). The lone worker waits inside a write for a
# buffer that half-written chunks of other files hold, whose next writes
# it cannot take: the watchdog finds the loop saturated
# (fuse_saturations > 0) and the waiting write evicts a buffer at once
# (write_buffer_early_evictions > 0) rather than after the pool's 50 ms.
loop_saturated() {
  local label=$1 sat early
  sat=$(stat_get fuse_saturations)
  early=$(stat_get write_buffer_early_evictions)
  it_log "$label: fuse_saturations=$sat write_buffer_early_evictions=$early page_outs=$(stat_get page_outs) fuse_threads_peak=$(stat_get fuse_threads_peak)"
  expect_eq "$label: the loop never grew past one worker" 1 "$(stat_get fuse_threads_peak)"
  expect_le "$label: the watchdog found the loop saturated" 1 "$sat"
  expect_le "$label: waiting writes evicted at once" 1 "$early"
}

# saturated_round SPIN LABEL
saturated_round() {
  writers_round "$2" s 6 24 loop_saturated --fuse-spin "$1" --fuse-threads 1 --fuse-max-threads 1 --memory-limit 24M
}

[ "${LOOP_ROUNDS:-both}" = wide ] || saturated_round 100 "saturated, polling"
[ "${LOOP_ROUNDS:-both}" = poll ] || saturated_round 0 "saturated, every worker reading"
[ "${LOOP_ROUNDS:-both}" = wide ] || many_writers_round 100 "many writers, polling"
[ "${LOOP_ROUNDS:-both}" = poll ] || many_writers_round 0 "many writers, every worker reading"
[ "${LOOP_ROUNDS:-both}" = wide ] || run_round 100 "polling receiver"
[ "${LOOP_ROUNDS:-both}" = wide ] || contention_round
[ "${LOOP_ROUNDS:-both}" = poll ] || run_round 0 "every worker reading"

# Out of range: refused before anything is mounted.
MOUNT_ARGS=("$STORE" "$MNT" --fuse-spin 5000)
mount_fails "--fuse-spin 5000"
grep -q -- "--fuse-spin" "$T/err" || fail "the error does not name --fuse-spin: $(cat "$T/err")"
MOUNT_ARGS=("$STORE" "$MNT" --fuse-spin -1)
mount_fails "--fuse-spin -1"
MOUNT_ARGS=("$STORE" "$MNT" --fuse-threads 3 --fuse-max-threads 2)
mount_fails "--fuse-max-threads below --fuse-threads"
grep -q -- "--fuse-max-threads" "$T/err" || fail "the error does not name --fuse-max-threads: $(cat "$T/err")"
MOUNT_ARGS=("$STORE" "$MNT" --fuse-max-threads 5000)
mount_fails "--fuse-max-threads 5000"

pass "all"
