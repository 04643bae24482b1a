#!/usr/bin/env bash
# wavefs benchmark (issue 3): copy-in, flush, peak RSS, cold sequential read
# and random reads of big incompressible files, side by side with baselines.
#
#   scripts/bench.sh [--sizes 1G,4G,16G] [--runs 3] [--peers] [--out FILE]
#                    [--install-peers] [--no-build] [--drop-data]
#                    [--systems cp,passthrough,wavefs,gocryptfs,rclone]
#                    [--bin PATH/TO/wavefs (implies --no-build)]
#   scripts/bench.sh --store s3 [--s3-env FILE] [--osd-size 40G] [--sizes ..]
#                   [--no-small-files] [--tls]
#                    [--runs N] [--out FILE] [--no-build] [--bin PATH]
#                    [--systems curl,wavefs,s3fs,rclone,rclone-crypt]
#   scripts/bench.sh --workloads [--quick] [--runs N] [--out FILE]
#                    [--systems ext4,passthrough,wavefs,wavefs-wb,gocryptfs] [--bin PATH]
#   scripts/bench.sh --scale [--quick] [--huge-size 100G] [--files 1000000]
#                    [--runs N] [--out FILE] [--bin PATH]
#
# --scale measures far past the everyday instead (scripts/bench/scale.sh
# says how): one 100 GiB file written and read back, and a million files
# created and listed. Default --out there: docs/bench-scale-latest.md.
#
# --workloads measures everyday work instead (scripts/bench/workloads.sh
# says what): tar -x, rsync -a, git clone, appends, a tee of 8 KiB writes
# and fio random writes. Default --out there: docs/bench-workloads-latest.md.
#
# --store s3 measures against a real S3 server instead (scripts/bench/s3.sh
# says how): a single-node Ceph RGW started in .bench/rgw (bluestore on a
# sparse --osd-size file) and destroyed at the end, or the one whose env line
# (as `scripts/ceph-rgw.sh start` prints it) is in --s3-env FILE. Default
# --out there: docs/bench-s3-latest.md. After the sizes it extracts a tree of
# small files into each mount (--no-small-files skips it: s3fs alone takes
# ~17 min there). --tls runs every system over the server's HTTPS endpoint
# (scripts/ceph-rgw.sh's self-signed one, or WAVEFS_S3_TLS_ENDPOINT and
# WAVEFS_S3_CA_FILE in the --s3-env file), as AWS users are; its default
# --out is docs/bench-s3-tls-latest.md. The rest of this text is local mode.
#
# Systems measured for each size and run (interleaved, so drift hits all):
#   cp           plain `cp` + `sync` into a local directory
#   passthrough  libfuse's do-nothing passthrough_ll example, built here,
#                with its xattr support on (as wavefs and gocryptfs have)
#   wavefs       build/wavefs with a fresh local-directory store per run
#   gocryptfs    (--peers, when installed)
#   rclone       (--peers, when installed) crypt remote over a local dir,
#                `rclone mount --vfs-cache-mode writes`
# Figures: copy-in time, flush time (sync + unmount; for wavefs `wavefs
# unmount`), daemon peak RSS (VmHWM, read before the unmount and sampled
# through it), cold sequential read after a remount with the page cache
# dropped (sha256 checked), 200 random 1 MiB reads (fixed seed, page cache
# dropped, bytes checked). Medians over runs; ratios against cp and the
# passthrough. Work dir: ./.bench (must be on local disk; the source data
# is kept there between invocations unless removed).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SIZES=1G,4G,16G
RUNS=3
PEERS=0
INSTALL_PEERS=0
BUILD=1
OUT=
STORE_KIND=local
S3_ENV_FILE=
OSD_SIZE=40G
CMDLINE=$(printf '%q ' "$0" "$@"); CMDLINE=${CMDLINE% }
KEEP_DATA=1
RAND_READS=200
RAND_SEED=20240501
ONLY_SYSTEMS=""
WAVEFS=""
WORKLOADS=0
SCALE=0
QUICK=0
S3_SMALL=1
S3_TLS=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }
need_val() { [ "$2" -ge 2 ] || die "$1 needs a value"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --sizes) need_val "$1" "$#"; SIZES=$2; shift ;;
    --runs) need_val "$1" "$#"; RUNS=$2; shift ;;
    --out) need_val "$1" "$#"; OUT=$2; shift ;;
    --peers) PEERS=1 ;;
    --systems) need_val "$1" "$#"; ONLY_SYSTEMS=$2; shift ;;
    --install-peers) PEERS=1; INSTALL_PEERS=1 ;;
    --no-build) BUILD=0 ;;
    --bin) need_val "$1" "$#"; WAVEFS=$(realpath "$2"); BUILD=0; shift ;;
    --keep-data) KEEP_DATA=1 ;;
    --drop-data) KEEP_DATA=0 ;;
    --store) need_val "$1" "$#"; STORE_KIND=$2; shift ;;
    --s3-env) need_val "$1" "$#"; S3_ENV_FILE=$(realpath "$2"); shift ;;
    --osd-size) need_val "$1" "$#"; OSD_SIZE=$2; shift ;;
    --no-small-files) S3_SMALL=0 ;;
    --tls) S3_TLS=1 ;;
    --workloads) WORKLOADS=1 ;;
    --scale) SCALE=1 ;;
    --huge-size) need_val "$1" "$#"; SC_HUGE_ARG=$2; shift ;;
    --files) need_val "$1" "$#"; SC_FILES_ARG=$2; shift ;;
    --quick) QUICK=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[ "$WORKLOADS" -eq 0 ] || [ "$STORE_KIND" = local ] || die "--workloads measures local stores only"
[ "$QUICK" -eq 0 ] || [ "$WORKLOADS" -eq 1 ] || [ "$SCALE" -eq 1 ] || die "--quick goes with --workloads or --scale"
[ "$SCALE" -eq 0 ] || [ "$WORKLOADS" -eq 0 ] || die "--scale and --workloads are separate runs"
[ "$SCALE" -eq 0 ] || [ "$STORE_KIND" = local ] || die "--scale measures local stores only"
[ -z "${SC_HUGE_ARG:-}${SC_FILES_ARG:-}" ] || [ "$SCALE" -eq 1 ] || die "--huge-size and --files go with --scale"
[ "$WORKLOADS" -eq 0 ] || : "${OUT:=docs/bench-workloads-latest.md}"
[ "$SCALE" -eq 0 ] || : "${OUT:=docs/bench-scale-latest.md}"
case "$STORE_KIND" in
  local) : "${OUT:=docs/bench-latest.md}" ;;
  s3) if [ "$S3_TLS" -eq 1 ]; then : "${OUT:=docs/bench-s3-tls-latest.md}"; else : "${OUT:=docs/bench-s3-latest.md}"; fi ;;
  *) die "--store must be local or s3, got '$STORE_KIND'" ;;
esac
[ -z "$S3_ENV_FILE" ] || [ "$STORE_KIND" = s3 ] || die "--s3-env needs --store s3"
[ "$S3_SMALL" -eq 1 ] || [ "$STORE_KIND" = s3 ] || die "--no-small-files needs --store s3"
[ "$S3_TLS" -eq 0 ] || [ "$STORE_KIND" = s3 ] || die "--tls needs --store s3"
[ -z "$S3_ENV_FILE" ] || [ -f "$S3_ENV_FILE" ] || die "--s3-env: no file '$S3_ENV_FILE'"

BENCH=$ROOT/.bench
mkdir -p "$BENCH"
[ "$(stat -f -c %T "$BENCH")" != tmpfs ] || die "$BENCH is on tmpfs; the benchmark needs a real disk"
DATA=$BENCH/data
WORK=$BENCH/work
MNTS=$BENCH/mnt
LOGS=$BENCH/logs
rm -rf "$WORK" "$MNTS"
mkdir -p "$DATA" "$WORK" "$MNTS" "$LOGS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

to_bytes() {
  local s=${1^^}
  case "$s" in
    *G) echo $(( ${s%G} * 1024 * 1024 * 1024 )) ;;
    *M) echo $(( ${s%M} * 1024 * 1024 )) ;;
    *K) echo $(( ${s%K} * 1024 )) ;;
    *[!0-9]*|"") die "bad size '$1' (use e.g. 512M, 1G, 16G)" ;;
    *) echo "$s" ;;
  esac
}
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for s in "${SIZE_LIST[@]}"; do to_bytes "$s" >/dev/null; done

# ---------------------------------------------------------------- setup

if [ "$BUILD" -eq 1 ]; then
  scripts/install-deps.sh
  scripts/build.sh >"$LOGS/build.log" 2>&1 || { tail -n 30 "$LOGS/build.log" >&2; die "build failed"; }
fi
: "${WAVEFS:=$ROOT/build/wavefs}"

PT=$BENCH/passthrough_ll
EX=/usr/share/doc/libfuse3-dev/examples
if [ "$STORE_KIND" = local ] && { [ ! -x "$PT" ] || [ "$EX/passthrough_ll.c" -nt "$PT" ]; }; then
  [ -f "$EX/passthrough_ll.c" ] || die "$EX/passthrough_ll.c not found (package libfuse3-dev)"
  # shellcheck disable=SC2046
  gcc -O2 -I"$EX" "$EX/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$PT" \
    >"$LOGS/passthrough-build.log" 2>&1 || { cat "$LOGS/passthrough-build.log" >&2; die "building passthrough_ll failed"; }
fi

if [ "$INSTALL_PEERS" -eq 1 ]; then
  SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gocryptfs rclone fio >"$LOGS/peers-install.log" 2>&1 ||
    log "installing gocryptfs/rclone/fio failed (see $LOGS/peers-install.log); measuring without them"
fi

SYSTEMS=(cp passthrough wavefs)
declare -A MISSING=()
if [ "$PEERS" -eq 1 ]; then
  for p in gocryptfs rclone; do
    SYSTEMS+=("$p")
    command -v "$p" >/dev/null 2>&1 || MISSING[$p]=1
  done
fi

if [ "$STORE_KIND" = s3 ]; then
  # the S3 systems (scripts/bench/s3.sh); --peers is implied
  SYSTEMS=(curl wavefs s3fs rclone rclone-crypt)
  MISSING=()
  if [ -n "$ONLY_SYSTEMS" ]; then
    IFS=, read -r -a SYSTEMS <<<"$ONLY_SYSTEMS"
    ONLY_SYSTEMS=""
  fi
  for w in "${SYSTEMS[@]}"; do
    case "$w" in
      curl|wavefs) ;;
      s3fs|rclone) command -v "$w" >/dev/null 2>&1 || MISSING[$w]=1 ;;
      rclone-crypt) command -v rclone >/dev/null 2>&1 || MISSING[$w]=1 ;;
      *) die "unknown system '$w' for --store s3 (curl,wavefs,s3fs,rclone,rclone-crypt)" ;;
    esac
  done
fi

if [ -n "$ONLY_SYSTEMS" ] && [ "$WORKLOADS" -eq 0 ] && [ "$SCALE" -eq 0 ]; then
  IFS=, read -r -a wanted <<<"$ONLY_SYSTEMS"
  for w in "${wanted[@]}"; do
    case "$w" in cp|passthrough|wavefs|gocryptfs|rclone) ;; *) die "unknown system '$w'" ;; esac
    if [[ "$w" == gocryptfs || "$w" == rclone ]] && ! command -v "$w" >/dev/null 2>&1; then
      MISSING[$w]=1
    fi
  done
  SYSTEMS=("${wanted[@]}")
fi

if [[ " ${SYSTEMS[*]} " == *" wavefs "* ]] && [ ! -x "$WAVEFS" ]; then
  die "$WAVEFS not found (run scripts/build.sh)"
fi

CAN_DROP=1
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
  CAN_DROP=0
  log "warning: cannot drop the page cache (needs root): reads are not cold"
fi
drop_caches() {
  sync
  [ "$CAN_DROP" -eq 1 ] && echo 3 >/proc/sys/vm/drop_caches
  return 0
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- processes

declare -A CHILD_PIDS=()   # pids of daemons this script started
mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

pid_alive() {
  local st
  [ -r "/proc/$1/status" ] || return 1
  st=$(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

wait_gone() {   # PID SECONDS
  local end=$(( $(date +%s) + $2 ))
  while pid_alive "$1"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

wait_mounted() {   # MNT PID SECONDS
  local end=$(( $(date +%s) + $3 ))
  until mounted "$1"; do
    pid_alive "$2" || return 1
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

hwm_kib() { awk '/^VmHWM:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || true; }
# cpu_ticks PID: user + system CPU of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
# per_gib TICKS BYTES: CPU seconds per GiB.
# kib_mib KIB: the same in MiB, one decimal.
kib_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# wfs_fresh_store DIR: a new local store there, with a new WAVEFS_HOME (no
# dedup across runs, no index left from an earlier one).
wfs_fresh_store() {
  rm -rf "$1" "$WORK/wavefs-home"
  export WAVEFS_HOME=$WORK/wavefs-home
  "$WAVEFS" init "$1" >>"$LOGS/wavefs-mount.log" 2>&1 || die "wavefs init failed"
}

per_gib() { awk -v t="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz / (b / 1073741824) }'; }

# start_sampler PID: samples PID's VmRSS (keeping the maximum), VmHWM and
# CPU ticks every 0.1 s into $WORK/sample until PID exits.
SAMPLER_PID=""
start_sampler() {
  local pid=$1
  rm -f "$WORK/sample"
  (
    max=0
    while pid_alive "$pid"; do
      read -r rss hwm < <(awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {print r + 0, h + 0}' \
                           "/proc/$pid/status" 2>/dev/null || echo "0 0")
      ticks=$(cpu_ticks "$pid")
      [ "${rss:-0}" -gt "$max" ] && max=$rss
      [ "${hwm:-0}" -gt 0 ] && echo "$max $hwm ${ticks:-0}" >"$WORK/sample"
      sleep 0.1
    done
  ) &
  SAMPLER_PID=$!
}

# unmount_timed MNT PID [CMD...]: unmounts with CMD (default sync +
# fusermount3 -u), waits for PID to exit and reaps it. Sets UT_SECS (time
# until the daemon is gone), UT_PEAK_KIB (VmHWM: read before the unmount, or
# the last value sampled during it if higher), UT_RSS_KIB (the largest
# VmRSS sampled since start_sampler, 0 without a sampler) and UT_CPU_TICKS
# (the daemon's CPU from its start: read before the unmount, or the last
# value sampled during it, at most 0.1 s before the daemon exited).
UT_SECS=""
UT_PEAK_KIB=""
UT_RSS_KIB=""
UT_CPU_TICKS=""
unmount_timed() {
  local mnt=$1 pid=$2 t0 t1 hwm rss ticks
  shift 2
  UT_PEAK_KIB=$(hwm_kib "$pid")
  [ -n "$UT_PEAK_KIB" ] || die "cannot read VmHWM of pid $pid"
  UT_CPU_TICKS=$(cpu_ticks "$pid")
  UT_RSS_KIB=0
  t0=$(now)
  if [ "$#" -gt 0 ]; then
    "$@" >>"$LOGS/unmount.log" 2>&1 || die "'$*' failed (see $LOGS/unmount.log)"
  else
    sync
    fusermount3 -u "$mnt" || die "fusermount3 -u $mnt failed"
  fi
  wait_gone "$pid" 3600 || die "daemon $pid did not exit after unmounting $mnt"
  t1=$(now)
  wait "$pid" 2>/dev/null || true
  unset "CHILD_PIDS[$pid]"
  if [ -n "$SAMPLER_PID" ]; then
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    if [ -s "$WORK/sample" ]; then
      read -r rss hwm ticks <"$WORK/sample"
      UT_RSS_KIB=$rss
      [ "$hwm" -gt "$UT_PEAK_KIB" ] && UT_PEAK_KIB=$hwm
      [ "${ticks:-0}" -gt "$UT_CPU_TICKS" ] && UT_CPU_TICKS=$ticks
    fi
  fi
  UT_SECS=$(secs "$t0" "$t1")
}

cleanup() {
  local rc=$? m pid
  set +e
  trap - EXIT INT TERM
  while read -r m; do
    [ -n "$m" ] || continue
    log "cleanup: unmounting $m"
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v b="$BENCH/" 'index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for pid in "${!CHILD_PIDS[@]}"; do
    wait_gone "$pid" 60 || { kill -TERM "$pid" 2>/dev/null; wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
  done
  if declare -F s3_cleanup >/dev/null; then s3_cleanup; fi
  rm -rf "$WORK" "$MNTS"
  [ "$KEEP_DATA" -eq 1 ] || rm -rf "$DATA"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- data

cat >"$BENCH/randread.py" <<'PY'
# randread.py FILE SIZE COUNT SEED: COUNT preads of 1 MiB at seeded offsets;
# prints "seconds sha256-of-all-bytes-read".
import hashlib, os, random, sys, time
path, size, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
blk = 1 << 20
rng = random.Random(seed)
offs = [rng.randrange(0, max(1, size - blk + 1)) & ~4095 for _ in range(count)]
h = hashlib.sha256()
fd = os.open(path, os.O_RDONLY)
t0 = time.monotonic()
for off in offs:
    h.update(os.pread(fd, blk, off))
t1 = time.monotonic()
os.close(fd)
print(f"{t1 - t0:.3f} {h.hexdigest()}")
PY

# make_data SIZE: .bench/data/src-SIZE from a fixed seed (AES-256-CTR
# keystream), with its sha256 and the random-read digest cached beside it.
make_data() {
  local label=$1 bytes f
  bytes=$(to_bytes "$label")
  f=$DATA/src-$label
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$bytes" ] && [ -s "$f.sha256" ] && [ -s "$f.rand" ]; then
    return 0
  fi
  log "generating $label of incompressible data (fixed seed)"
  { openssl enc -aes-256-ctr -K "$(printf 'wavefs-bench' | sha256sum | cut -c1-64)" \
      -iv 000102030405060708090a0b0c0d0e0f -in /dev/zero 2>/dev/null || true; } |
    head -c "$bytes" >"$f"
  [ "$(stat -c %s "$f")" = "$bytes" ] || die "could not generate $f"
  sha256sum <"$f" | cut -d' ' -f1 >"$f.sha256"
  python3 "$BENCH/randread.py" "$f" "$bytes" "$RAND_READS" "$RAND_SEED" | cut -d' ' -f2 >"$f.rand"
}

# ---------------------------------------------------------------- results

declare -A R=()   # R[size|system|metric] = "v1 v2 ..."
record() { R["$1|$2|$3"]="${R["$1|$2|$3"]:-} $4"; }

# Common measurement of reads on a mounted FILE: cold sequential read with
# checksum, then cold random reads with checksum.
# measure_reads SIZE SYS FILE [DAEMON_PID]: the cold sequential read (and,
# with a daemon pid, its CPU per GiB read) and the random reads. The
# checksum is OpenSSL's SHA-256 (SHA-NI here: ~2 GB/s), faster than every
# system measured, so the figure is the filesystem's, not the checksum's
# (coreutils sha256sum runs ~6x slower on this CPU).
measure_reads() {
  local size=$1 sys=$2 file=$3 pid=${4:-} bytes t0 t1 sum out c0 c1
  bytes=$(to_bytes "$size")
  drop_caches
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  t0=$(now)
  sum=$(openssl dgst -sha256 -r <"$file" | cut -d' ' -f1)
  t1=$(now)
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid") && record "$size" "$sys" cpur "$(per_gib $((c1 - c0)) "$bytes")"
  [ "$sum" = "$(cat "$DATA/src-$size.sha256")" ] || die "$sys $size: sequential read returned wrong bytes"
  record "$size" "$sys" seq "$(secs "$t0" "$t1")"
  drop_caches
  out=$(python3 "$BENCH/randread.py" "$file" "$bytes" "$RAND_READS" "$RAND_SEED")
  [ "${out#* }" = "$(cat "$DATA/src-$size.rand")" ] || die "$sys $size: random reads returned wrong bytes"
  record "$size" "$sys" rand "${out%% *}"
}

# timed_copy SIZE SYS DEST: drop caches, cp, record copy time.
timed_copy() {
  local t0 t1
  drop_caches
  t0=$(now)
  cp "$DATA/src-$1" "$3"
  t1=$(now)
  record "$1" "$2" copy "$(secs "$t0" "$t1")"
}

# unmount_and_record SIZE SYS MNT PID [CMD...]: the flush figure and peak RSS.
unmount_and_record() {
  local size=$1 sys=$2
  shift 2
  unmount_timed "$@"
  record "$size" "$sys" flush "$UT_SECS"
  record "$size" "$sys" cpuw "$(per_gib "$UT_CPU_TICKS" "$(to_bytes "$size")")"
  record "$size" "$sys" rss "$(kib_mib "$UT_PEAK_KIB")"
  record "$size" "$sys" rssrun "$(kib_mib "$UT_RSS_KIB")"
}

# ---------------------------------------------------------------- systems

bench_cp() {
  local size=$1 d=$WORK/cp t0 t1
  rm -rf "$d"; mkdir -p "$d"
  timed_copy "$size" cp "$d/f"
  t0=$(now); sync; t1=$(now)
  record "$size" cp flush "$(secs "$t0" "$t1")"
  measure_reads "$size" cp "$d/f"
  rm -rf "$d"
}

PT_PID=""
pt_mount() {
  # -o xattr: passthrough_ll otherwise answers the first GETXATTR with
  # ENOSYS and the kernel never asks again, sparing it the two
  # security.capability round trips per written file (first write, chown)
  # that every filesystem with xattrs pays, wavefs and gocryptfs included:
  # ~1.2 s of a tar -x of /usr/include here (docs/architecture.md).
  "$PT" -f -o source="$1",xattr "$2" >>"$LOGS/passthrough.log" 2>&1 &
  PT_PID=$!
  CHILD_PIDS[$PT_PID]=1
  wait_mounted "$2" "$PT_PID" 30 || die "passthrough_ll did not mount (see $LOGS/passthrough.log)"
}

bench_passthrough() {
  local size=$1 under=$WORK/pt-under mnt=$MNTS/pt
  rm -rf "$under"; mkdir -p "$under" "$mnt"
  pt_mount "$under" "$mnt"
  start_sampler "$PT_PID"
  timed_copy "$size" passthrough "$mnt/f"
  unmount_and_record "$size" passthrough "$mnt" "$PT_PID"
  pt_mount "$under" "$mnt"
  measure_reads "$size" passthrough "$mnt/f" "$PT_PID"
  unmount_timed "$mnt" "$PT_PID"
  rm -rf "$under"
}

WFS_PID=""
# wfs_mount STORE MNT [MOUNT OPTIONS...]: sets WFS_PID.
wfs_mount() {
  "$WAVEFS" mount "$1" "$2" "${@:3}" >>"$LOGS/wavefs-mount.log" 2>&1 ||
    die "wavefs mount failed (see $LOGS/wavefs-mount.log)"
  WFS_PID=$(getfattr --only-values -n user.wavefs.stats "$2" 2>/dev/null | sed -n 's/^pid=//p')
  [[ "$WFS_PID" =~ ^[0-9]+$ ]] || die "cannot read the daemon pid from user.wavefs.stats"
  CHILD_PIDS[$WFS_PID]=1
}

bench_wavefs() {
  local size=$1 store=$WORK/wavefs-store mnt=$MNTS/wavefs
  mkdir -p "$mnt"
  wfs_fresh_store "$store"
  wfs_mount "$store" "$mnt"
  start_sampler "$WFS_PID"
  timed_copy "$size" wavefs "$mnt/f"
  unmount_and_record "$size" wavefs "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  wfs_mount "$store" "$mnt"
  measure_reads "$size" wavefs "$mnt/f" "$WFS_PID"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  find "$WAVEFS_HOME" -name '*.log' -exec cp {} "$LOGS/wavefs-daemon-$size.log" \; 2>/dev/null || true
  rm -rf "$store" "$WAVEFS_HOME"
  unset WAVEFS_HOME
}

# gc_init CIPHER_DIR: a new gocryptfs filesystem there (password in gc-pass).
gc_init() {
  echo "wavefs-bench-password" >"$WORK/gc-pass"
  gocryptfs -init -quiet -passfile "$WORK/gc-pass" "$1" >>"$LOGS/gocryptfs.log" 2>&1 ||
    die "gocryptfs -init failed (see $LOGS/gocryptfs.log)"
}

GC_PID=""
gc_mount() {
  gocryptfs -fg -quiet -passfile "$WORK/gc-pass" "$1" "$2" >>"$LOGS/gocryptfs.log" 2>&1 &
  GC_PID=$!
  CHILD_PIDS[$GC_PID]=1
  wait_mounted "$2" "$GC_PID" 60 || die "gocryptfs did not mount (see $LOGS/gocryptfs.log)"
}

bench_gocryptfs() {
  local size=$1 cipher=$WORK/gc-cipher mnt=$MNTS/gocryptfs
  rm -rf "$cipher"; mkdir -p "$cipher" "$mnt"
  gc_init "$cipher"
  gc_mount "$cipher" "$mnt"
  start_sampler "$GC_PID"
  timed_copy "$size" gocryptfs "$mnt/f"
  unmount_and_record "$size" gocryptfs "$mnt" "$GC_PID"
  gc_mount "$cipher" "$mnt"
  measure_reads "$size" gocryptfs "$mnt/f" "$GC_PID"
  unmount_timed "$mnt" "$GC_PID"
  rm -rf "$cipher"
}

RC_PID=""
rc_mount() {
  rclone mount crypt: "$1" --config "$WORK/rclone.conf" --vfs-cache-mode writes \
    --cache-dir "$WORK/rclone-cache" --log-file "$LOGS/rclone.log" &
  RC_PID=$!
  CHILD_PIDS[$RC_PID]=1
  wait_mounted "$1" "$RC_PID" 60 || die "rclone mount did not mount (see $LOGS/rclone.log)"
}

# rclone uploads from its write cache after close: the flush lasts until the
# encrypted file in the remote has its final size; then unmount.
rc_flush() {
  local remote=$1 mnt=$2 want=$3 end
  sync
  end=$(( $(date +%s) + 3600 ))
  while :; do
    if [ "$(find "$remote" -type f ! -name '*.partial' -size "${want}c" | wc -l)" -ge 1 ]; then break; fi
    [ "$(date +%s)" -lt "$end" ] || die "rclone never finished uploading"
    sleep 0.1
  done
  fusermount3 -u "$mnt"
}

bench_rclone() {
  local size=$1 remote=$WORK/rc-remote mnt=$MNTS/rclone bytes want
  bytes=$(to_bytes "$size")
  # crypt format: 32-byte header, 16-byte tag per 64 KiB block.
  want=$(( 32 + bytes + 16 * ((bytes + 65535) / 65536) ))
  rm -rf "$remote" "$WORK/rclone-cache"; mkdir -p "$remote" "$mnt"
  cat >"$WORK/rclone.conf" <<CONF
[local]
type = local

[crypt]
type = crypt
remote = local:$remote
password = $(rclone obscure wavefs-bench-password)
CONF
  rc_mount "$mnt"
  start_sampler "$RC_PID"
  timed_copy "$size" rclone "$mnt/f"
  unmount_and_record "$size" rclone "$mnt" "$RC_PID" rc_flush "$remote" "$mnt" "$want"
  rc_mount "$mnt"
  measure_reads "$size" rclone "$mnt/f" "$RC_PID"
  unmount_timed "$mnt" "$RC_PID"
  rm -rf "$remote" "$WORK/rclone-cache"
}

# ---------------------------------------------------------------- run

median() {
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { median "${R["$1|$2|$3"]:-}"; }
# write_table TEXT: prints the table and writes it to --out.
write_table() {
  echo
  printf '%s\n' "$1"
  mkdir -p "$(dirname "$OUT")"
  printf '%s\n' "$1" >"$OUT"
  log "table written to $OUT"
}
fmt() { [ -n "$1" ] && awk -v v="$1" -v p="${2:-2}" 'BEGIN { printf "%.*f", p, v }' || printf '–'; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "–" }' || printf '–'; }
sum2() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }' || true; }


if [ "$WORKLOADS" -eq 1 ]; then
  # shellcheck source=scripts/bench/workloads.sh
  . "$ROOT/scripts/bench/workloads.sh"
  wl_main
  exit 0
fi

if [ "$SCALE" -eq 1 ]; then
  # shellcheck source=scripts/bench/scale.sh
  . "$ROOT/scripts/bench/scale.sh"
  SC_HUGE=${SC_HUGE_ARG:-}
  SC_FILES=${SC_FILES_ARG:-}
  sc_main
  exit 0
fi

if [ "$STORE_KIND" = s3 ]; then
  # shellcheck source=scripts/bench/s3.sh
  . "$ROOT/scripts/bench/s3.sh"
  s3_main
  exit 0
fi

for size in "${SIZE_LIST[@]}"; do
  bytes=$(to_bytes "$size")
  make_data "$size"
  avail=$(df --output=avail -B1 "$BENCH" | tail -n 1)
  need=$(( 2 * bytes + 1024 * 1024 * 1024 ))
  [ "$avail" -ge "$need" ] || die "not enough free space in $BENCH for $size: $avail bytes free, need $need"
  for run in $(seq 1 "$RUNS"); do
    for sys in "${SYSTEMS[@]}"; do
      [ -n "${MISSING[$sys]:-}" ] && continue
      log "$size run $run/$RUNS: $sys"
      "bench_$sys" "$size"
    done
  done
done

# ---------------------------------------------------------------- report

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
fstype=$(stat -f -c %T "$BENCH")
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)

table=$(
  echo "## wavefs benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); wavefs commit $commit$dirty"
  echo "- machine: $(nproc) cores ($cpu), $mem RAM, kernel $(uname -r), work dir on $fstype"
  echo "- sizes: ${SIZES}; runs: $RUNS (medians shown); data: incompressible, fixed seed"
  [ "$CAN_DROP" -eq 1 ] || echo "- WARNING: page cache could not be dropped: reads were not cold"
  echo "- copy = \`cp\` into the target; flush = \`sync\` (+ unmount for FUSE systems; \`wavefs unmount\` for wavefs);"
  echo "  peak RSS = daemon VmHWM from mount to exit (includes start-up, e.g. a password KDF);"
  echo "  copy RSS = largest VmRSS sampled every 0.1 s during copy and flush; seq read = cold sha256 of the file after a remount;"
  echo "  random = ${RAND_READS} preads of 1 MiB at seeded offsets, page cache dropped, bytes checked;"
  echo "  CPU/GiB = the daemon's user+system CPU (/proc/PID/stat) per GiB: written = from mount to exit (copy and flush),"
  echo "  read = during the cold sequential read"
  echo
  echo "| size | system | copy s | flush s | copy+flush s | vs cp+sync | vs passthrough | peak RSS MiB | copy RSS MiB | CPU s/GiB written | seq read s | seq vs passthrough | CPU s/GiB read | random s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for size in "${SIZE_LIST[@]}"; do
    cp_total=$(sum2 "$(med "$size" cp copy)" "$(med "$size" cp flush)")
    pt_total=$(sum2 "$(med "$size" passthrough copy)" "$(med "$size" passthrough flush)")
    pt_seq=$(med "$size" passthrough seq)
    for sys in "${SYSTEMS[@]}"; do
      if [ -n "${MISSING[$sys]:-}" ]; then
        echo "| $size | $sys | not installed | | | | | | | | | | | |"
        continue
      fi
      c=$(med "$size" "$sys" copy); f=$(med "$size" "$sys" flush)
      tot=$(sum2 "$c" "$f")
      rss=$(med "$size" "$sys" rss); rssrun=$(med "$size" "$sys" rssrun)
      s=$(med "$size" "$sys" seq); r=$(med "$size" "$sys" rand)
      cw=$(med "$size" "$sys" cpuw); cr=$(med "$size" "$sys" cpur)
      echo "| $size | $sys | $(fmt "$c") | $(fmt "$f") | $(fmt "$tot") | $(ratio "$tot" "$cp_total") | $(ratio "$tot" "$pt_total") | $( [ "$sys" = cp ] && printf '–' || fmt "$rss" 1) | $( [ "$sys" = cp ] && printf '–' || fmt "$rssrun" 1) | $(fmt "$cw") | $(fmt "$s") | $(ratio "$s" "$pt_seq") | $(fmt "$cr") | $(fmt "$r") |"
    done
  done
)

write_table "$table"
