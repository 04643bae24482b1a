# shellcheck shell=bash
# Shared helpers for wavefs's integration tests. Source it first thing:
#
#   source "$(dirname "$0")/lib.sh"
#
# It makes a fresh work directory $T (not on tmpfs) holding
#   $T/home   WAVEFS_HOME (keys, metadata, spill, logs)
#   $T/store  the chunk store
#   $T/mnt    the mount point
#   $T/src    source files made by the test
#   $T/local  a plain local directory for "same operations" comparisons
# and installs an EXIT trap that always unmounts everything under $T, stops
# and reaps every daemon the test started, reports sanitizer logs, and removes
# $T (kept when WAVEFS_IT_KEEP=1 or when something could not be unmounted).
#
# Environment:
#   WAVEFS_BIN      the wavefs binary (required; CMake passes it)
#   WAVEFS_IT_TMP   parent directory for $T (default /var/tmp)
#   WAVEFS_IT_KEEP  1 = keep $T after the test
#   WAVEFS_IT_TIMEOUT  seconds after which the test aborts itself (CMake sets
#                   it a little below the CTest TIMEOUT)
#   WAVEFS_IT_STORE s3 = run the test on an S3 store: a bucket of its own on
#                   the server WAVEFS_S3_ENDPOINT names (with AWS_ACCESS_KEY_ID
#                   and AWS_SECRET_ACCESS_KEY; tests/s3/with_rgw.sh starts
#                   Ceph RGW and sets them); emptied and removed at the end
set -euo pipefail
export LC_ALL=C

IT_NAME=$(basename "$0" .sh)
IT_NAME=${IT_NAME#test_}

# ---------------------------------------------------------------- reporting

it_log() { printf '[%s] %s\n' "$IT_NAME" "$*"; }
pass() { printf 'PASS: %s: %s\n' "$IT_NAME" "$*"; }
fail() {
  printf 'FAIL: %s: %s\n' "$IT_NAME" "$*" >&2
  IT_FAILED_MSG=$*
  exit 1
}
# skip REASON: exits with 77, which CTest reports as "Skipped".
skip() {
  printf 'SKIP: %s: %s\n' "$IT_NAME" "$*"
  exit 77
}

# check DESCRIPTION CMD...: runs CMD; PASS line if it succeeds, FAIL otherwise.
check() {
  local desc=$1
  shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ -n "$out" ] && printf '%s\n' "$out" | head -n 20 >&2
    fail "$desc (command: $*; exit $rc)"
  fi
  pass "$desc"
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
  if [ "$2" != "$3" ]; then
    fail "$1: expected '$2', got '$3'"
  fi
  pass "$1 ($3)"
}

# expect_le DESCRIPTION A B: integer A <= B
expect_le() {
  [[ "$2" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] || fail "$1: not integers: '$2' '$3'"
  if [ "$2" -gt "$3" ]; then
    fail "$1: expected $2 <= $3"
  fi
  pass "$1 ($2 <= $3)"
}

# expect_lt DESCRIPTION A B: integer A < B
expect_lt() {
  [[ "$2" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] || fail "$1: not integers: '$2' '$3'"
  if [ "$2" -ge "$3" ]; then
    fail "$1: expected $2 < $3"
  fi
  pass "$1 ($2 < $3)"
}

# ---------------------------------------------------------------- setup

: "${WAVEFS_BIN:=}"
if [ -z "$WAVEFS_BIN" ]; then
  echo "FAIL: $IT_NAME: WAVEFS_BIN is not set (path to the built wavefs binary)" >&2
  exit 1
fi
if [ ! -x "$WAVEFS_BIN" ]; then
  echo "FAIL: $IT_NAME: WAVEFS_BIN=$WAVEFS_BIN is not an executable" >&2
  exit 1
fi
WAVEFS_BIN=$(cd "$(dirname "$WAVEFS_BIN")" && pwd)/$(basename "$WAVEFS_BIN")
for tool in fusermount3 getfattr mountpoint openssl cmp python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAIL: $IT_NAME: '$tool' not found (run scripts/install-deps.sh)" >&2
    exit 1
  fi
done
if [ ! -c /dev/fuse ]; then
  echo "FAIL: $IT_NAME: /dev/fuse is missing (modprobe fuse?)" >&2
  exit 1
fi

IT_TMP_PARENT=${WAVEFS_IT_TMP:-/var/tmp}
mkdir -p "$IT_TMP_PARENT"
if [ "$(stat -f -c %T "$IT_TMP_PARENT")" = tmpfs ]; then
  it_log "warning: $IT_TMP_PARENT is tmpfs; large files will live in RAM"
fi
T=$(mktemp -d "$IT_TMP_PARENT/wavefs-it.$IT_NAME.XXXXXX")
T=$(cd "$T" && pwd -P)
export WAVEFS_HOME=$T/home
STORE=$T/store
IT_S3_BUCKET=""
if [ "${WAVEFS_IT_STORE:-local}" = s3 ]; then
  for v in WAVEFS_S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
    if [ -z "${!v:-}" ]; then
      echo "FAIL: $IT_NAME: WAVEFS_IT_STORE=s3 needs $v (run through tests/s3/with_rgw.sh)" >&2
      exit 1
    fi
  done
  IT_S3_BUCKET=$(printf 'wavefs-it-%s-%s' "${IT_NAME//_/-}" "$(basename "$T" | tr -dc 'a-z0-9' | tail -c 7)" | cut -c1-63)
  STORE="s3://$IT_S3_BUCKET/store?endpoint=$WAVEFS_S3_ENDPOINT"
fi
MNT=$T/mnt
SRC=$T/src
LOCAL=$T/local
mkdir -p "$WAVEFS_HOME" "$MNT" "$SRC" "$LOCAL" "$T/asan"

# Sanitizer reports go to files (not stderr, which some tests count lines of);
# the cleanup prints them and fails the test if there are any.
export ASAN_OPTIONS="log_path=$T/asan/asan:detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/asan/ubsan:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

DAEMON_PID=""       # daemon of the current mount of $MNT
DAEMON_PIDS=()      # every daemon pid seen during the test
SPILL_DIR=""        # from the stats of the current mount
META_DIR=""
IT_FAILED_MSG=""
IT_START=$(date +%s)

it_log "work dir $T"
it_log "binary $WAVEFS_BIN"

# ---------------------------------------------------------------- processes

pid_alive() {
  # True while any thread of PID is not a zombie. Not only the main thread:
  # after kill -9 it turns zombie while other threads may still be exiting
  # (one blocked in the kernel), and until the last one has, the process
  # keeps its files: /dev/fuse (the mount is not yet seen as dead: a mount
  # right then failed with "already a mount point") and the index lock.
  local pid=$1 state task
  [ -n "$pid" ] || return 1
  [ -d "/proc/$pid/task" ] || return 1
  for task in /proc/"$pid"/task/*; do
    state=$(awk '/^State:/ {print $2; exit}' "$task/status" 2>/dev/null) || continue
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] && return 0
  done
  return 1
}

# wait_pid_exit PID SECONDS: true if PID is gone within SECONDS.
wait_pid_exit() {
  local pid=$1 deadline=$(( $(date +%s) + $2 ))
  while pid_alive "$pid"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
  return 0
}

# Pids of live wavefs processes (running $WAVEFS_BIN) with an argument in
# $T: the path itself, a path under it, or an option's value
# (--spill-dir=$T/...): the daemons this test started. Whole arguments
# only: a process elsewhere that merely mentions a longer path containing
# this one (a grep over /var/tmp/cleanroot/var/tmp, i.e. a clean root's $T,
# run on the host while that root's tests ran) is not ours, and once made a
# test fail for "a daemon that did not exit". Only wavefs itself: another
# test's grep over /var/tmp (it_no_plaintext) names files under this $T,
# and was taken for a daemon of ours, waited for, killed and reported as
# "daemon PID did not exit after unmount" when tests ran side by side.
IT_BIN_REAL=$(readlink -f "$WAVEFS_BIN")
pids_under_t() {
  local d pid arg exe
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$pid" = "$BASHPID" ] && continue
    {
      while IFS= read -r -d '' arg; do
        if [[ "$arg" == "$T" || "$arg" == "$T/"* || "$arg" == *"=$T/"* ]]; then
          exe=$(readlink "$d/exe") && [ "${exe% (deleted)}" = "$IT_BIN_REAL" ] &&
            pid_alive "$pid" && echo "$pid"
          break
        fi
      done <"$d/cmdline"
    } 2>/dev/null
  done
  return 0
}

# Mount points under $T: FUSE mounts first, then the others, each group
# deepest first. A daemon must go before the file systems it stages on (a
# test's tmpfs spill or store): unmounted under a live daemon, they would
# take its staged chunks with them, whatever the names sort as.
mounts_under_t() {
  awk -v t="$T" '{
      p = $5; gsub(/\\040/, " ", p)
      if (p != t && index(p, t "/") != 1) next
      for (i = 7; i <= NF && $i != "-"; i++) {}
      print (($(i + 1) ~ /^fuse/) ? 0 : 1) "\t" p
    }' /proc/self/mountinfo | sort -t "$(printf '\t')" -k1,1n -k2,2r | cut -f 2-
}

is_mounted() {
  local p
  p=$(cd "$1" 2>/dev/null && pwd -P || echo "$1")
  awk -v m="$p" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# ---------------------------------------------------------------- data

# make_random FILE SIZE SEED: SIZE bytes (suffixes K M G = KiB MiB GiB) of a
# deterministic stream (AES-256-CTR keystream keyed by SEED).
to_bytes() {
  local s=$1
  case "$s" in
    *K) echo $(( ${s%K} * 1024 )) ;;
    *M) echo $(( ${s%M} * 1024 * 1024 )) ;;
    *G) echo $(( ${s%G} * 1024 * 1024 * 1024 )) ;;
    *) echo $(( s )) ;;
  esac
}

seed_stream() {
  local seed=$1 key iv
  key=$(printf 'key:%s' "$seed" | sha256sum | cut -c1-64)
  iv=$(printf 'iv:%s' "$seed" | sha256sum | cut -c1-32)
  openssl enc -aes-256-ctr -K "$key" -iv "$iv" -in /dev/zero 2>/dev/null || true
}

make_random() {
  local file=$1 size seed=$3
  size=$(to_bytes "$2")
  seed_stream "$seed" | head -c "$size" >"$file"
  local got
  got=$(stat -c %s "$file")
  [ "$got" = "$size" ] || fail "make_random $file: wanted $size bytes, got $got"
}

file_size() { stat -c %s "$1"; }

# expect_source_or_zeros DESCRIPTION SOURCE GOT: every 4 KiB block of GOT is
# the same block of SOURCE or all zeros (what a file cut short by a crash or
# a full disk may hold: writes land in order, and unwritten parts are holes).
expect_source_or_zeros() {
  check "$1" python3 - "$2" "$3" <<'PY'
import sys
src, got = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
pos = 0
while True:
    g = got.read(1 << 20)
    if not g:
        break
    s = src.read(len(g))
    for i in range(0, len(g), 4096):
        gb, sb = g[i:i + 4096], s[i:i + 4096]
        if gb != sb and gb.count(0) != len(gb):
            sys.exit(f"block at {pos + i} is neither the source's nor zeros")
    pos += len(g)
PY
}

# ---------------------------------------------------------------- wavefs
# $STORE (a path or file:// URL) is what wfs_init and wfs_mount use.

wfs() { "$WAVEFS_BIN" "$@"; }

# ---------------------------------------------------------------- S3 helpers

# s3_curl METHOD PATH-AND-QUERY [CURL ARGS...]: a signed request to the test
# server (path style; the query must be sorted and encoded for SigV4).
s3_curl() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 60 -X "$method" --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$WAVEFS_S3_ENDPOINT/$path"
}

# s3_keys PREFIX: every key of the test bucket under PREFIX, one a line.
s3_keys() {
  local prefix=$1 token="" q page
  while true; do
    q="list-type=2&prefix=${prefix//\//%2F}"
    [ -n "$token" ] && q="continuation-token=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$token")&$q"
    page=$(s3_curl GET "$IT_S3_BUCKET?$q") || return 1
    grep -o '<Key>[^<]*</Key>' <<<"$page" | sed -e 's/<Key>//' -e 's/<\/Key>//'
    grep -q '<IsTruncated>true</IsTruncated>' <<<"$page" || return 0
    token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | sed 's/<NextContinuationToken>//')
  done
}

# store_snapshot: a local directory holding every object of the store (the
# store itself when local; a fresh download of the bucket for S3).
store_snapshot() {
  if [ -z "$IT_S3_BUCKET" ]; then
    store_dir
    return
  fi
  local out=$T/bucket-snapshot key
  rm -rf "$out"
  mkdir -p "$out"
  while read -r key; do
    [ -n "$key" ] || continue
    mkdir -p "$out/$(dirname "$key")"
    s3_curl GET "$IT_S3_BUCKET/$key" -o "$out/$key" || fail "cannot download $key"
  done < <(s3_keys "")
  printf '%s\n' "$out"
}

s3_cleanup() {
  [ -n "$IT_S3_BUCKET" ] || return 0
  local key
  while read -r key; do
    [ -n "$key" ] && s3_curl DELETE "$IT_S3_BUCKET/$key" >/dev/null 2>&1
  done < <(s3_keys "" 2>/dev/null)
  s3_curl DELETE "$IT_S3_BUCKET" >/dev/null 2>&1
  return 0
}

# store_format: the store's chunk format (the format= line of its config).
store_format() {
  local text
  if [ -n "$IT_S3_BUCKET" ]; then
    text=$(s3_curl GET "$IT_S3_BUCKET/store/wavefs-store.conf") || return 1
  else
    text=$(cat "$(store_dir)/wavefs-store.conf") || return 1
  fi
  sed -n 's/^format=//p' <<<"$text"
}

# object_hash FILE [FORMAT]: what a chunk object's name must be, by the
# store's format (docs/format.md): SHA-256 in format 3, BLAKE2b-256 in 1, 2,
# SHA-256 of the trailer and the tags in 4 (object_address4.py).
object_hash() {
  local format=${2:-$(store_format)}
  if [ "$format" = 4 ]; then
    python3 "$(dirname "${BASH_SOURCE[0]}")/object_address4.py" "$1"
  elif [ "$format" = 3 ]; then
    sha256sum "$1" | cut -c1-64
  else
    b2sum -l 256 "$1" | cut -c1-64
  fi
}

# check_store_objects [FORMAT]: every chunk object of the store (a file
# named by 64 hex digits under chunks/, in store_snapshot) hashes to its
# name by FORMAT (default the store's, store_format); each one that does
# not is logged and the test fails. Sets STORE_OBJECTS_CHECKED to the
# number of objects checked.
STORE_OBJECTS_CHECKED=0
check_store_objects() {
  local format=${1:-$(store_format)} dir f n=0 bad=0
  [ -n "$format" ] || fail "cannot read the store's format"
  dir=$(store_snapshot)
  while IFS= read -r f; do
    n=$((n + 1))
    if [ "$(object_hash "$f" "$format")" != "$(basename "$f")" ]; then
      it_log "chunk object $f does not hash to its name (format $format)"
      bad=$((bad + 1))
    fi
  done < <(find "$dir" -type f -regextype posix-extended -regex '.*/chunks/.*/?[0-9a-f]{64}')
  [ -z "$IT_S3_BUCKET" ] || rm -rf "$dir"
  [ "$bad" -eq 0 ] || fail "$bad of $n chunks in the store do not hash to their address"
  STORE_OBJECTS_CHECKED=$n
}

wfs_init() {
  local rc=0
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_curl PUT "$IT_S3_BUCKET" -o /dev/null || fail "cannot create bucket $IT_S3_BUCKET"
  fi
  timeout 60 "$WAVEFS_BIN" init "$STORE" "$@" >"$T/init.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$T/init.out" >&2
    fail "wavefs init $STORE failed (exit $rc)"
  fi
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_keys store/ | grep -qx 'store/wavefs-store.conf' || \
      fail "wavefs init did not create store/wavefs-store.conf in bucket $IT_S3_BUCKET"
    return 0
  fi
  [ -f "$(store_dir)/wavefs-store.conf" ] || fail "wavefs init did not create $(store_dir)/wavefs-store.conf"
  [ -d "$(store_dir)/chunks" ] || fail "wavefs init did not create $(store_dir)/chunks"
}

# stats_raw [MNT]: the user.wavefs.stats text.
stats_raw() {
  getfattr --only-values -n user.wavefs.stats "${1:-$MNT}" 2>/dev/null
}

# stat_get KEY [MNT]: one value from user.wavefs.stats; fails the test when
# the key is missing.
stat_get() {
  local key=$1 mnt=${2:-$MNT} raw val
  raw=$(stats_raw "$mnt") || fail "cannot read xattr user.wavefs.stats on $mnt"
  val=$(printf '%s\n' "$raw" | sed -n "s/^$key=//p" | head -n 1)
  [ -n "$val" ] || fail "user.wavefs.stats on $mnt has no '$key=' line; got: $(printf '%s' "$raw" | tr '\n' ' ')"
  printf '%s\n' "$val"
}

# wait_uploaded DESCRIPTION [MNT]: waits up to 30 s for the mount's upload
# queue to empty; fails the test if it does not.
wait_uploaded() {
  local mnt=${2:-$MNT}
  for _ in $(seq 1 300); do
    [ "$(stat_get pending_chunks "$mnt")" -eq 0 ] && break
    sleep 0.1
  done
  expect_eq "$1" 0 "$(stat_get pending_chunks "$mnt")"
}

# wfs_mount [EXTRA ARGS...]: mounts $STORE on $MNT and records the daemon.
# Output goes to a file, not a pipe: a daemon that kept the pipe open would
# otherwise hang the test.
# WAVEFS_IT_MOUNT_ARGS: extra `wavefs mount` options for every mount of a
# test (the it_wb_* variants run with --writeback-cache).
read -r -a IT_MOUNT_ARGS <<<"${WAVEFS_IT_MOUNT_ARGS:-}"

wfs_mount() {
  local rc=0
  timeout 60 "$WAVEFS_BIN" mount "$STORE" "$MNT" "${IT_MOUNT_ARGS[@]}" "$@" >"$T/mount.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$T/mount.out" >&2
    fail "wavefs mount $STORE $MNT $* failed (exit $rc)"
  fi
  is_mounted "$MNT" || fail "wavefs mount returned 0 but $MNT is not mounted"
  DAEMON_PID=$(stat_get pid)
  [[ "$DAEMON_PID" =~ ^[0-9]+$ ]] || fail "stats pid='$DAEMON_PID' is not a pid"
  pid_alive "$DAEMON_PID" || fail "daemon pid $DAEMON_PID from stats is not running"
  DAEMON_PIDS+=("$DAEMON_PID")
  SPILL_DIR=$(stat_get spill_dir)
  # shellcheck disable=SC2034  # used by tests
  META_DIR=$(stat_get meta_dir)
  it_log "mounted (daemon pid $DAEMON_PID)"
}

# mount_fails DESC [ENV=VALUE...]: `wavefs mount "${MOUNT_ARGS[@]}"` with
# ENV added must fail with one line on stderr (kept in $T/err), a non-zero
# exit, nothing mounted and no process left.
mount_fails() {
  local desc=$1 rc=0 lines
  shift
  env "$@" timeout 120 "$WAVEFS_BIN" mount "${MOUNT_ARGS[@]}" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  [ "$rc" -ne 0 ] || fail "$desc: mount exited 0"
  [ "$rc" -ne 124 ] || fail "$desc: mount hung"
  lines=$(grep -c . "$T/err" || true)
  [ "$lines" -eq 1 ] || { cat "$T/err" >&2; fail "$desc: expected one line on stderr, got $lines"; }
  is_mounted "$MNT" && fail "$desc: $MNT is mounted"
  [ -z "$(pids_under_t)" ] || fail "$desc: a process was left behind"
  pass "$desc: $(cat "$T/err")"
}

# Staged chunk files in the spill directory (64 hex digit names).
spill_count() {
  if [ -z "$SPILL_DIR" ] || [ ! -d "$SPILL_DIR" ]; then
    echo 0
    return 0
  fi
  find "$SPILL_DIR" -type f -regextype posix-extended -regex '.*/[0-9a-f]{64}' | wc -l
}

# The store's directory ($STORE may be a file:// URL).
store_dir() { printf '%s\n' "${STORE#file://}"; }

store_chunk_count() {
  if [ -n "$IT_S3_BUCKET" ]; then
    s3_keys store/chunks/ | grep -c '/[0-9a-f]\{64\}$' || true
    return
  fi
  find "$(store_dir)/chunks" -type f -name '[0-9a-f]*' | wc -l
}

# After a clean unmount: the daemon is gone and nothing is left staged.
assert_flushed() {
  local how=$1 left
  wait_pid_exit "$DAEMON_PID" 15 || fail "daemon $DAEMON_PID still running 15 s after $how"
  is_mounted "$MNT" && fail "$MNT still mounted after $how"
  left=$(spill_count)
  [ "$left" -eq 0 ] || fail "$left staged chunk(s) left in the spill $SPILL_DIR after $how"
  DAEMON_PID=""
}

# wfs_unmount: `wavefs unmount`, which must return after the flush and exit.
wfs_unmount() {
  local rc=0
  timeout 600 "$WAVEFS_BIN" unmount "$MNT" >"$T/unmount.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$T/unmount.out" >&2
    fail "wavefs unmount $MNT failed (exit $rc)"
  fi
  if pid_alive "$DAEMON_PID"; then
    it_log "warning: daemon $DAEMON_PID still alive right after wavefs unmount returned"
  fi
  assert_flushed "wavefs unmount"
  it_log "unmounted"
}

# fuse_unmount: plain fusermount3 -u; the daemon must still flush and exit.
fuse_unmount() {
  local pid=$DAEMON_PID
  fusermount3 -u "$MNT" || fail "fusermount3 -u $MNT failed"
  wait_pid_exit "$pid" 600 || fail "daemon $pid did not exit within 600 s of fusermount3 -u"
  assert_flushed "fusermount3 -u"
  it_log "unmounted with fusermount3 -u"
}

wfs_remount() {
  wfs_unmount
  wfs_mount "$@"
}

drop_caches() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    it_log "note: cannot drop the page cache (not root?)"
  fi
}

# pin_range FILE OFFSET LENGTH: holds FILE's pages in [OFFSET, OFFSET+LENGTH)
# in the page cache (mmap + mlock, pin_pages.py says why) until unpin_all
# or the cleanup. Pages not cached yet are read in by the pinning.
PIN_PIDS=()
pin_range() {
  local out=$T/pin.$RANDOM i
  python3 "$(dirname "${BASH_SOURCE[0]}")/pin_pages.py" "$1" "$2" "$3" >"$out" 2>&1 &
  PIN_PIDS+=("$!")
  for ((i = 0; i < 300; i++)); do
    grep -q '^pinned$' "$out" 2>/dev/null && return 0
    pid_alive "$!" || break
    sleep 0.1
  done
  fail "cannot pin $1 [$2, +$3) in the page cache: $(cat "$out")"
}
unpin_all() {
  local pid
  for pid in "${PIN_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true  # 143: it was killed, as asked
  done
  PIN_PIDS=()
}

# set_pipe_max_size BYTES: sets fs.pipe-max-size for the rest of the test;
# the cleanup puts the first value back. Below 1 MiB, a daemon without
# CAP_SYS_RESOURCE cannot grow its pipes to hold a write request (1016 KiB
# plus a header page), and libfuse reads requests into memory instead.
IT_PIPE_MAX_OLD=""
set_pipe_max_size() {
  [ -n "$IT_PIPE_MAX_OLD" ] || IT_PIPE_MAX_OLD=$(cat /proc/sys/fs/pipe-max-size)
  echo "$1" >/proc/sys/fs/pipe-max-size 2>/dev/null ||
    fail "cannot set fs.pipe-max-size to $1 (not root?)"
}

# vm_hwm_kib PID: VmHWM of PID in KiB (empty if unreadable).
vm_hwm_kib() {
  awk '/^VmHWM:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || true
}

# ---------------------------------------------------------------- cleanup

it_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local m pid leftover=0
  if [ -n "$IT_WATCHDOG" ]; then
    kill "$IT_WATCHDOG" 2>/dev/null
    wait "$IT_WATCHDOG" 2>/dev/null
  fi
  if [ -e "$T/timed-out" ]; then
    rc=1
    IT_FAILED_MSG="timed out after ${WAVEFS_IT_TIMEOUT}s (mounts lazily unmounted, daemons killed)"
  fi

  # 1. unmount everything under $T (deepest first), once nothing of this
  # test holds it busy: pinning helpers, and descriptors this shell opened
  # into the mount (exec 3<"$MNT/f") and a failure left open.
  unpin_all
  local fd target
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] || continue
    target=$(readlink "/proc/$$/fd/$fd" 2>/dev/null) || continue
    [[ "$target" == "$T/"* ]] && eval "exec $fd<&-"
  done
  while read -r m; do
    [ -n "$m" ] || continue
    it_log "cleanup: unmounting $m"
    fusermount3 -u "$m" 2>/dev/null || timeout 20 umount "$m" 2>/dev/null || \
      fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done < <(mounts_under_t)

  # 2. let the daemons flush and exit, then stop the rest; reap our children.
  local all=("${DAEMON_PIDS[@]}")
  while read -r pid; do [ -n "$pid" ] && all+=("$pid"); done < <(pids_under_t)
  for pid in "${all[@]}"; do
    pid_alive "$pid" || continue
    if ! wait_pid_exit "$pid" 30; then
      it_log "cleanup: daemon $pid still running, sending SIGTERM"
      # Name the process: a leftover that is not one of our daemons was
      # seen once in a chroot run and could not be identified afterwards.
      it_log "cleanup: $(ps -o pid=,ppid=,stat=,etime=,args= -p "$pid" 2>/dev/null | cut -c1-300)"
      kill -TERM "$pid" 2>/dev/null
      if ! wait_pid_exit "$pid" 10; then
        it_log "cleanup: daemon $pid ignores SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        wait_pid_exit "$pid" 10
      fi
      [ "$rc" -eq 0 ] && { rc=1; IT_FAILED_MSG="daemon $pid did not exit after unmount"; }
    fi
  done
  wait 2>/dev/null

  # 3. sanitizer reports fail the test.
  local f
  for f in "$T"/asan/*; do
    [ -s "$f" ] || continue
    echo "---- sanitizer report $f ----" >&2
    head -n 80 "$f" >&2
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; then
      rc=1
      IT_FAILED_MSG="sanitizer report(s) in $T/asan"
    fi
  done

  # 4. on failure show the daemon logs.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    while IFS= read -r -d '' f; do
      echo "---- last lines of $f ----" >&2
      tail -n 30 "$f" >&2
    done < <(find "$WAVEFS_HOME" "$T" -name 'wavefs*.log' -type f -print0 2>/dev/null | sort -zu)
  fi

  # 5. the test's bucket goes (an S3 run); fs.pipe-max-size comes back.
  if [ -n "$IT_PIPE_MAX_OLD" ]; then
    echo "$IT_PIPE_MAX_OLD" >/proc/sys/fs/pipe-max-size 2>/dev/null ||
      echo "cleanup: cannot put fs.pipe-max-size back to $IT_PIPE_MAX_OLD" >&2
  fi
  s3_cleanup

  # 6. remove $T unless something is still mounted there.
  if [ -n "$(mounts_under_t)" ]; then
    leftover=1
    echo "cleanup: still mounted under $T, not removing it:" >&2
    mounts_under_t >&2
    [ "$rc" -eq 0 ] && rc=1
  fi
  if [ "$leftover" -eq 0 ] && [ "${WAVEFS_IT_KEEP:-0}" != 1 ]; then
    rm -rf "$T"
  else
    it_log "kept $T"
  fi

  local secs=$(( $(date +%s) - IT_START ))
  if [ "$rc" -eq 0 ]; then
    echo "PASS: $IT_NAME (${secs}s)"
  elif [ "$rc" -eq 77 ]; then
    echo "SKIPPED: $IT_NAME"
  else
    echo "FAIL: $IT_NAME (exit $rc${IT_FAILED_MSG:+: $IT_FAILED_MSG}; ${secs}s)" >&2
  fi
  exit "$rc"
}
trap it_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Watchdog: CTest kills a test that overruns its TIMEOUT with SIGKILL, which
# would leave the daemon and its mount behind. A little earlier than that,
# unmount lazily and kill the daemons (which unblocks any tool stuck on the
# mount), then TERM the test so that it_cleanup runs.
IT_WATCHDOG=""
if [[ "${WAVEFS_IT_TIMEOUT:-}" =~ ^[0-9]+$ ]]; then
  (
    for ((i = 0; i < WAVEFS_IT_TIMEOUT; i++)); do sleep 1; done
    touch "$T/timed-out"
    while read -r m; do [ -n "$m" ] && umount -l "$m"; done < <(mounts_under_t)
    while read -r p; do [ -n "$p" ] && kill -KILL "$p"; done < <(pids_under_t)
    kill -TERM "$$"
  ) >/dev/null 2>&1 &
  IT_WATCHDOG=$!
fi

