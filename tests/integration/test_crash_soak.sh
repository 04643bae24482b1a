#!/usr/bin/env bash
# Invariants 1, 2 and 3 under repeated kill -9: each iteration mounts, runs a
# writer (puts with O_TRUNC, cp over existing files, appends, renames,
# unlinks; crash_soak.py), kills the daemon with SIGKILL, remounts and
# checks:
#   - every file whose last step finished (its close() returned, logged by
#     the writer to a file outside the mount) reads back equal;
#   - the step in flight left its files in the state before it or after it
#     (for a put, also empty: the O_TRUNC at open is committed by itself),
#     never a mix, zeros, garbage or EIO (crash_soak.py states the rules);
#   - the daemon reports no lost chunks.
# The kill point is seeded: half the iterations kill the daemon while the
# writer is paused half-way through a step (a file open and half written:
# the case the test is for, forced rather than hoped for), the others after
# a random delay. Every 50 iterations, and at the end: a clean unmount must
# upload everything, every file reads back after a remount, and every chunk
# in the store hashes to its address (BLAKE2b-256); then a fresh store.
#
#   test_crash_soak.sh [--soak] [--iterations N] [--seed S]
#   WAVEFS_SOAK_ITERATIONS=N, WAVEFS_SOAK_SEED=S
# Default (CI): 5 iterations. --soak: 300.
source "$(dirname "$0")/lib.sh"

iterations=${WAVEFS_SOAK_ITERATIONS:-5}
seed=${WAVEFS_SOAK_SEED:-$(( $(date +%s) % 100000 ))}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --soak) iterations=${WAVEFS_SOAK_ITERATIONS:-300} ;;
    --iterations) iterations=$2; shift ;;
    --seed) seed=$2; shift ;;
    *) fail "unknown argument $1" ;;
  esac
  shift
done
EPOCH=50
# An S3 run keeps its one bucket (and store) for the whole run.
[ -z "$IT_S3_BUCKET" ] || EPOCH=$((iterations + 1))
PY=$(dirname "$0")/crash_soak.py
it_log "seed $seed, $iterations iterations (replay: --seed $seed --iterations $iterations)"
RANDOM=$seed

STATE=$T/state.json
LOG=$T/steps.log
mkdir -p "$T/cpsrc"
epoch=0
STORE_BASE=$STORE

new_store() {
  epoch=$((epoch + 1))
  if [ -z "$IT_S3_BUCKET" ]; then
    STORE=$STORE_BASE.$epoch
  fi
  rm -f "$STATE" "$LOG"
  wfs_init
  wfs_mount
  mkdir "$MNT/soak" || fail "mkdir soak"
}

# verify_store: every chunk object hashes to its name.
verify_store() {
  check_store_objects
  pass "all $STORE_OBJECTS_CHECKED chunks in the store hash to their address"
}

# end_of_epoch: clean unmount uploads all; remount; check; verify the store.
end_of_epoch() {
  python3 "$PY" check "$MNT/soak" "$STATE" "$LOG" >"$T/check.out" 2>&1 ||
    fail "check before the clean unmount: $(cat "$T/check.out")"
  expect_eq "no lost chunks" 0 "$(stat_get lost_chunks)"
  wfs_unmount
  wfs_mount
  drop_caches
  python3 "$PY" check "$MNT/soak" "$STATE" "$LOG" >"$T/check.out" 2>&1 ||
    fail "check after the drain and a remount: $(cat "$T/check.out")"
  expect_eq "nothing pending after the drain" 0 "$(stat_get pending_chunks)"
  "$WAVEFS_BIN" status "$MNT" >"$T/status.out" 2>&1 || fail "wavefs status failed: $(cat "$T/status.out")"
  grep -q '^lost chunks: *0$' "$T/status.out" || fail "wavefs status: $(grep lost "$T/status.out")"
  wfs_unmount
  verify_store
  if [ -z "$IT_S3_BUCKET" ]; then rm -rf "$(store_dir)"; fi
}

killed_mid=0
killed_pending=0
inflight_found=0
start=$(date +%s)
new_store
for ((i = 1; i <= iterations; i++)); do
  wseed=$((seed * 1000 + i))
  rm -f "$T/go"
  # Half the iterations: pause half-way through a step and kill there.
  mode=random
  if [ "$i" -eq 1 ] || [ $((RANDOM % 2)) -eq 0 ]; then mode=mid; fi
  pause_args=()
  if [ "$mode" = mid ]; then
    pause_at=$((RANDOM % 12))
    pause_args=(--pause-at "$pause_at" --go "$T/go")
  fi
  python3 "$PY" write "$MNT/soak" "$STATE" "$LOG" "$wseed" --src "$T/cpsrc" \
    --budget $((24 << 20)) "${pause_args[@]}" 2>"$T/writer.err" &
  writer=$!
  if [ "$mode" = mid ]; then
    deadline=$(( $(date +%s) + 60 ))
    until grep -q "\"ev\": \"mid\", \"n\": $pause_at}" "$LOG" 2>/dev/null; do
      pid_alive "$writer" || fail "iteration $i: the writer ended before step $pause_at: $(cat "$T/writer.err")"
      [ "$(date +%s)" -lt "$deadline" ] || fail "iteration $i: step $pause_at never reached its middle"
      sleep 0.01
    done
    killed_mid=$((killed_mid + 1))
  else
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
  fi
  pending=$(stats_raw | sed -n 's/^pending_chunks=//p')
  [ "${pending:-0}" -gt 0 ] && killed_pending=$((killed_pending + 1))
  kill -9 "$DAEMON_PID"
  touch "$T/go"
  wait_pid_exit "$DAEMON_PID" 10 || fail "daemon $DAEMON_PID survived kill -9"
  wait "$writer" || fail "iteration $i: the writer failed: $(cat "$T/writer.err")"
  wfs_mount   # clears the dead mount
  python3 "$PY" check "$MNT/soak" "$STATE" "$LOG" >"$T/check.out" 2>&1 ||
    fail "iteration $i (seed $seed, writer seed $wseed, kill $mode${pending:+, $pending chunks pending}): $(cat "$T/check.out")"
  grep -q '^in flight' "$T/check.out" && inflight_found=$((inflight_found + 1))
  it_log "iteration $i: kill $mode, ${pending:-?} pending: $(cat "$T/check.out")"
  lost=$(stat_get lost_chunks)
  [ "$lost" = 0 ] || fail "iteration $i: $lost lost chunks: $(stats_raw | grep lost)"
  if [ $((i % EPOCH)) -eq 0 ] && [ "$i" -lt "$iterations" ]; then
    end_of_epoch
    new_store
  fi
done
end_of_epoch
secs=$(( $(date +%s) - start ))
# The case the test is for really happened.
expect_le "kills with a step in flight" 1 "$inflight_found"
pass "$iterations iterations in ${secs}s (seed $seed): $killed_mid killed half-way through a step, $killed_pending with chunks pending, $inflight_found with a step in flight; no failures"
