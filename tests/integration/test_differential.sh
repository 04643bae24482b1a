#!/usr/bin/env bash
# Differential test: fsdiff.py applies the same seeded random sequence of
# system calls (open flag combinations incl. O_TRUNC, writes and reads
# straddling the 4 MiB chunk boundary, truncate, fallocate, SEEK_DATA/HOLE,
# copy_file_range, renameat2 incl. RENAME_EXCHANGE, links, unlink of open
# files, xattrs, chmod/chown/utime, a non-owner's write to a setuid file,
# shared mmap writes and reads, SEEK_DATA/HOLE while mapped pages are
# dirty, O_DIRECT writes and reads beside cached handles, ...) to the mount and to a plain local directory, and after every step
# compares the results and the touched files. Each seed runs in its own
# subdirectory; after each seed both trees are compared again after a
# remount and a dropped page cache.
#
#   WAVEFS_DIFF_SEEDS   number of seeds (1..N) or a comma list (default 4)
#   WAVEFS_DIFF_STEPS   steps per seed (default 600)
#   WAVEFS_DIFF_OPS     op families, e.g. "all,-fallocate" (default all;
#                       python3 tests/integration/fsdiff.py --help lists them)
# The same can be given as arguments: --seeds N|LIST --steps N --ops LIST,
# e.g. a soak run: test_differential.sh --seeds 20 --steps 5000
source "$(dirname "$0")/lib.sh"

FSDIFF=$(cd "$(dirname "$0")" && pwd)/fsdiff.py
SEEDS=${WAVEFS_DIFF_SEEDS:-4}
STEPS=${WAVEFS_DIFF_STEPS:-600}
OPS=${WAVEFS_DIFF_OPS:-all}
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --ops) OPS=$2; shift 2 ;;
    *) fail "unknown argument '$1' (known: --seeds N|LIST, --steps N, --ops LIST)" ;;
  esac
done
[[ "$STEPS" =~ ^[0-9]+$ ]] || fail "steps '$STEPS' is not a number"
if [[ "$SEEDS" =~ ^[0-9]+$ ]]; then
  SEED_LIST=$(seq 1 "$SEEDS")
elif [[ "$SEEDS" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  SEED_LIST=${SEEDS//,/ }
else
  fail "seeds '$SEEDS' is neither a count nor a comma list"
fi

# chown and the killpriv child (which drops to uid 65534) need root.
[ "$(id -u)" = 0 ] || skip "needs root"

wfs_init
# allow_other: the killpriv child runs as uid 65534.
wfs_mount -o allow_other

# fsdiff PHASE-ARGS...: runs fsdiff.py, shows its output; fails the test with
# the mismatch report when it exits non-zero.
fsdiff() {
  local rc=0 out="$T/fsdiff.out"
  python3 "$FSDIFF" "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$out" >&2
    fail "fsdiff $* (exit $rc; report above)"
  fi
  cat "$out"
}

for seed in $SEED_LIST; do
  it_log "seed $seed: $STEPS steps (ops $OPS)"
  fsdiff --a "$MNT/s$seed" --b "$LOCAL/s$seed" --seed "$seed" --steps "$STEPS" --ops "$OPS"
  pass "seed $seed: $STEPS steps equal"
  wfs_remount -o allow_other
  drop_caches
  fsdiff --phase verify --a "$MNT" --b "$LOCAL" --ops "$OPS"
  pass "seed $seed: both trees equal after a remount"
done
wfs_unmount
