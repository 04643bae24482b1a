# shellcheck shell=bash
# The --store s3 mode of scripts/bench.sh, sourced by it (it uses bench.sh's
# helpers: record, timed_copy, unmount_timed, start_sampler, wfs_mount, ...).
#
# S3 server: a single-node Ceph RGW (scripts/ceph-rgw.sh: 1 mon, 1 bluestore
# OSD on a sparse --osd-size file, pool size 1) started in .bench/rgw and
# destroyed at the end (also on failure), unless --s3-env FILE names the env
# line of a running one. Every system gets a fresh bucket per size and run,
# emptied and deleted afterwards so the OSD does not fill.
#
# Systems (interleaved per run, like the local mode):
#   curl          what the link can do: the file split into 4 MiB pieces
#                 (split time not counted), uploaded as 4 MiB objects by 4
#                 parallel signed curl streams (each one curl process that
#                 PUTs its quarter of the pieces over one kept-alive
#                 connection); cold read = 4 parallel GET streams, each
#                 checksummed; random = the 1 MiB reads of the random test as
#                 sequential ranged GETs (two when a read crosses an object)
#   wavefs        wavefs init + mount of s3://BUCKET/store (defaults, i.e.
#                 --upload-threads 4 for S3); in bucket = cp + `wavefs unmount`
#   s3fs          s3fs 1.90, path-style, no use_cache (tmpdir in .bench/work);
#                 in bucket = cp + sync + fusermount -u
#   rclone        rclone mount s3remote:BUCKET --vfs-cache-mode writes
#                 --vfs-write-back 0s; in bucket = cp + time until the bucket
#                 lists the object at its full size + unmount
#   rclone-crypt  the same through a crypt remote over s3remote:BUCKET
# Reads (FUSE systems): remount, page cache (and the OSD's BlueStore cache,
# when the cluster is ours) dropped, `dd bs=1M | openssl dgst -sha256`
# checked; then 200 random 1 MiB preads (bench.sh's randread.py, checked).
# Small files (FUSE systems, after the sizes): `tar -x` of the regular files
# of /usr/include until every file is in the bucket, then a fresh mount's
# files checked against the tarball (not timed; one GET per file, so this
# takes minutes, and s3fs's extraction alone ~17 min).
# --tls: every system talks to the server's HTTPS endpoint instead
# (WAVEFS_S3_TLS_ENDPOINT, its certificate trusted through
# WAVEFS_S3_CA_FILE: curl --cacert, wavefs ca_file=, s3fs CURL_CA_BUNDLE,
# rclone --ca-cert), and wavefs's store is what init makes over TLS.
# Requests are counted on the RGW side (perf counter rgw.req through its
# admin socket) when the cluster's directory is known; otherwise the upload
# figure is the number of objects in the bucket.

S3_OBJ=$((4 * 1024 * 1024))
RGW_DIR=""        # the cluster this script started: destroyed at the end
RGW_CONF_DIR=""   # the ceph-rgw.sh directory of the cluster in use, if known
RGW_ASOK=""       # radosgw admin socket (request counters)
RGW_OSD_ASOK=""   # osd admin socket (cache drop), only for our own cluster
S3_SOURCE=""
S3_AUTH=""
S3_POLLS=0        # list requests made while waiting for rclone's upload
S3_RUN=0
declare -A S3_BUCKETS=()
declare -A S3_NOTES=()

# ---------------------------------------------------------------- server

s3_cleanup() {
  local b
  if [ -n "$RGW_DIR" ]; then
    log "cleanup: destroying the Ceph RGW in $RGW_DIR"
    "$ROOT/scripts/ceph-rgw.sh" destroy "$RGW_DIR" >>"$LOGS/ceph-rgw.log" 2>&1 ||
      log "warning: scripts/ceph-rgw.sh destroy $RGW_DIR failed (see $LOGS/ceph-rgw.log)"
    RGW_DIR=""
  elif [ -n "$S3_AUTH" ] && [ -f "$S3_AUTH" ]; then
    for b in "${!S3_BUCKETS[@]}"; do
      log "cleanup: removing bucket $b"
      s3_purge "$b"
    done
  fi
}

s3_start() {
  if [ -n "$S3_ENV_FILE" ]; then
    # shellcheck disable=SC1090
    . "$S3_ENV_FILE"
    S3_SOURCE="a running Ceph RGW given by --s3-env $S3_ENV_FILE"
    local d
    d=$(dirname "$S3_ENV_FILE")
    [ -f "$d/state" ] && [ -f "$d/ceph.conf" ] && RGW_CONF_DIR=$d
  else
    RGW_DIR=$BENCH/rgw
    if [ -e "$RGW_DIR" ]; then
      log "removing the Ceph RGW a previous run left in $RGW_DIR"
      "$ROOT/scripts/ceph-rgw.sh" destroy "$RGW_DIR" >>"$LOGS/ceph-rgw.log" 2>&1 ||
        die "cannot destroy the old cluster in $RGW_DIR (see $LOGS/ceph-rgw.log)"
    fi
    log "starting a Ceph RGW in $RGW_DIR (bluestore, sparse $OSD_SIZE OSD)"
    local env_text
    env_text=$("$ROOT/scripts/ceph-rgw.sh" start "$RGW_DIR" --osd-size "$OSD_SIZE" 2>>"$LOGS/ceph-rgw.log") ||
      { tail -n 20 "$LOGS/ceph-rgw.log" >&2; die "scripts/ceph-rgw.sh start failed"; }
    eval "$env_text"
    RGW_CONF_DIR=$RGW_DIR
    S3_SOURCE="started by this run in .bench/rgw, destroyed at the end"
  fi
  [ -n "${WAVEFS_S3_ENDPOINT:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ] ||
    die "no WAVEFS_S3_ENDPOINT / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the S3 server"
  S3_CA=""
  if [ "$S3_TLS" -eq 1 ]; then
    [ -n "${WAVEFS_S3_TLS_ENDPOINT:-}" ] && [ -r "${WAVEFS_S3_CA_FILE:-}" ] ||
      die "--tls: the S3 server has no WAVEFS_S3_TLS_ENDPOINT or no readable WAVEFS_S3_CA_FILE"
    WAVEFS_S3_ENDPOINT=$WAVEFS_S3_TLS_ENDPOINT
    S3_CA=$WAVEFS_S3_CA_FILE
  fi
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY WAVEFS_S3_ENDPOINT AWS_REGION=${AWS_REGION:-us-east-1}
  S3_AUTH=$WORK/s3auth.curl
  (
    umask 077
    cat >"$S3_AUTH" <<CONF
aws-sigv4 = "aws:amz:$AWS_REGION:s3"
user = "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"
silent
show-error
fail
connect-timeout = 10
max-time = 900
CONF
    [ -z "$S3_CA" ] || printf 'cacert = "%s"\n' "$S3_CA" >>"$S3_AUTH"
  )
  if [ -n "$RGW_CONF_DIR" ]; then
    local sock osd
    read -r sock osd < <(. "$RGW_CONF_DIR/state" && printf '%s %s\n' "$SOCKDIR_USED" "$OSD_ID")
    RGW_ASOK=$sock/client.rgw.gw.asok
    if [[ "$(rgw_reqs)" =~ ^[0-9]+\ [0-9]+$ ]]; then
      [ -z "$RGW_DIR" ] || RGW_OSD_ASOK=$sock/osd.$osd.asok
    else
      log "warning: cannot read radosgw's perf counters via $RGW_ASOK: counting objects instead"
      RGW_ASOK=""
    fi
  fi
  s3 "$WAVEFS_S3_ENDPOINT/" -o /dev/null || die "the S3 server at $WAVEFS_S3_ENDPOINT does not answer a signed request"
}

# rgw_reqs: radosgw's counters "REQUESTS GET_BYTES" (every S3 request it
# served; object bytes it sent), or "" when not reachable.
rgw_reqs() {
  [ -n "$RGW_ASOK" ] || return 0
  timeout 20 ceph --admin-daemon "$RGW_ASOK" perf dump rgw 2>/dev/null |
    jq -r '"\(.rgw.req) \(.rgw.get_b)"' 2>/dev/null || true
}

# The OSD's own caches (BlueStore reads with O_DIRECT: dropping the page
# cache does not reach them). Only on the cluster this run started.
drop_caches() {
  sync
  [ "$CAN_DROP" -eq 1 ] && echo 3 >/proc/sys/vm/drop_caches
  if [ -n "$RGW_OSD_ASOK" ]; then
    timeout 20 ceph --admin-daemon "$RGW_OSD_ASOK" cache drop >/dev/null 2>&1 ||
      log "warning: OSD cache drop failed"
  fi
  return 0
}

# ---------------------------------------------------------------- S3 calls

s3() { curl -K "$S3_AUTH" "$@"; }
s3_url() { printf '%s/%s' "$WAVEFS_S3_ENDPOINT" "$1"; }

s3_mkbucket() {
  s3 -X PUT "$(s3_url "$1")" -o /dev/null || die "cannot create bucket $1"
  S3_BUCKETS[$1]=1
}

# s3_list BUCKET [PREFIX]: "KEY SIZE" per object (all pages).
s3_list() {
  local b=$1 prefix=${2:-} token="" q page
  while :; do
    q="list-type=2"
    [ -z "$prefix" ] || q="$q&prefix=$(jq -rn --arg v "$prefix" '$v|@uri')"
    [ -z "$token" ] || q="continuation-token=$(jq -rn --arg v "$token" '$v|@uri')&$q"
    page=$(s3 "$(s3_url "$b")?$q") || return 1
    awk 'BEGIN { RS = "</Contents>" } {
      if (!match($0, /<Key>[^<]*<\/Key>/)) next
      k = substr($0, RSTART + 5, RLENGTH - 11)
      if (!match($0, /<Size>[0-9]*<\/Size>/)) next
      print k, substr($0, RSTART + 6, RLENGTH - 13) }' <<<"$page"
    [[ "$page" == *"<IsTruncated>true</IsTruncated>"* ]] || return 0
    token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | sed 's/<NextContinuationToken>//')
    [ -n "$token" ] || return 0
  done
}

# s3_purge BUCKET: delete every object, then the bucket (warns, never dies).
s3_purge() {
  local b=$1
  # Keys percent-encoded (SigV4 signs the encoded path: a raw `+`, as in
  # include/c++/, fails the signature check), their slashes kept.
  s3_list "$b" | jq -Rr --arg u "$(s3_url "$b")" \
    'sub(" [0-9]+$"; "") | $u + "/" + (@uri | gsub("%2F"; "/"))' |
    xargs -r -P4 -n 64 curl -K "$S3_AUTH" -X DELETE >/dev/null 2>>"$LOGS/s3-purge.log" ||
    log "warning: deleting the objects of bucket $b failed (see $LOGS/s3-purge.log)"
  s3 -X DELETE "$(s3_url "$b")" -o /dev/null 2>>"$LOGS/s3-purge.log" ||
    log "warning: deleting bucket $b failed (see $LOGS/s3-purge.log)"
  unset "S3_BUCKETS[$b]"
}

s3_bucket_name() { printf 'wb-%s-%s-r%s-%s' "$1" "${2,,}" "$S3_RUN" "$$"; }

counted() { [[ "$1" =~ ^[0-9]+\ [0-9]+$ && "$2" =~ ^[0-9]+\ [0-9]+$ ]]; }

# rec_reqs SIZE SYS METRIC C0 C1: counter deltas, when counted: requests as
# METRIC, object bytes of the GETs (MiB, the ranges asked for) as METRIC_got.
rec_reqs() {
  counted "$4" "$5" || return 0
  record "$1" "$2" "$3" $(( ${5% *} - ${4% *} ))
  record "$1" "$2" "$3_got" "$(awk -v a="${4#* }" -v b="${5#* }" 'BEGIN { printf "%.1f", (b - a) / 1048576 }')"
}

# rec_upload_reqs SIZE SYS C0 C1 BUCKET [MINUS]: requests of the upload (RGW
# counter, less MINUS requests the bench made itself), else the number of
# objects in the bucket.
rec_upload_reqs() {
  if counted "$3" "$4"; then
    record "$1" "$2" wreq $(( ${4% *} - ${3% *} - ${6:-0} ))
  else
    record "$1" "$2" wreq "$(s3_list "$5" | wc -l)"
  fi
}

rec_until() {   # SIZE SYS: until-in-bucket of this run = copy + flush
  local c f
  c=$(awk '{print $NF}' <<<"${R["$1|$2|copy"]:-0}")
  f=$(awk '{print $NF}' <<<"${R["$1|$2|flush"]}")
  record "$1" "$2" until "$(awk -v a="${c:-0}" -v b="$f" 'BEGIN { printf "%.3f", a + b }')"
}

# measure_reads_s3 SIZE SYS FILE: cold sequential read (dd | openssl sha256)
# and cold random reads, both checked, with their request counts.
measure_reads_s3() {
  local size=$1 sys=$2 file=$3 bytes t0 t1 c0 c1 sum out
  bytes=$(to_bytes "$size")
  drop_caches
  c0=$(rgw_reqs); t0=$(now)
  sum=$(dd if="$file" bs=1M status=none | openssl dgst -sha256 | awk '{print $NF}') ||
    die "$sys $size: sequential read failed"
  t1=$(now); c1=$(rgw_reqs)
  [ "$sum" = "$(cat "$DATA/src-$size.sha256")" ] || die "$sys $size: sequential read returned wrong bytes"
  record "$size" "$sys" seq "$(secs "$t0" "$t1")"
  rec_reqs "$size" "$sys" sreq "$c0" "$c1"
  drop_caches
  c0=$(rgw_reqs)
  out=$(python3 "$BENCH/randread.py" "$file" "$bytes" "$RAND_READS" "$RAND_SEED") ||
    die "$sys $size: random reads failed"
  c1=$(rgw_reqs)
  [ "${out#* }" = "$(cat "$DATA/src-$size.rand")" ] || die "$sys $size: random reads returned wrong bytes"
  record "$size" "$sys" rand "${out%% *}"
  rec_reqs "$size" "$sys" rreq "$c0" "$c1"
}

record_read_rss() {   # SIZE SYS: VmHWM of the read mount (after unmount_timed)
  record "$1" "$2" rssread "$(kib_mib "$UT_PEAK_KIB")"
}

# ---------------------------------------------------------------- curl

bench_s3_curl() {
  local size=$1 bytes b pieces=$WORK/curl-pieces n per j k t0 t1 c0 c1 rc cfg got want
  local -a keys pids
  bytes=$(to_bytes "$size")
  b=$(s3_bucket_name curl "$size")
  rm -rf "$pieces"; mkdir -p "$pieces"
  split -b "$S3_OBJ" -d -a 5 "$DATA/src-$size" "$pieces/p"
  mapfile -t keys < <(cd "$pieces" && ls)
  n=${#keys[@]}
  per=$(( (n + 3) / 4 ))
  # four streams, each a contiguous quarter of the pieces: one curl process
  # (one connection) per stream, for PUT and for GET
  for j in 0 1 2 3; do
    cat "$S3_AUTH" >"$WORK/curl-put-$j"
    cat "$S3_AUTH" >"$WORK/curl-get-$j"
    : >"$WORK/curl-sum-$j"
    for k in "${keys[@]:$(( j * per )):$per}"; do
      printf 'upload-file = "%s"\nurl = "%s"\noutput = "/dev/null"\n' "$pieces/$k" "$(s3_url "$b/$k")" >>"$WORK/curl-put-$j"
      printf 'url = "%s"\n' "$(s3_url "$b/$k")" >>"$WORK/curl-get-$j"
    done
    if [ "$(( j * per ))" -lt "$n" ]; then
      ( cd "$pieces" && cat "${keys[@]:$(( j * per )):$per}" ) | sha256sum | cut -c1-64 >"$WORK/curl-sum-$j"
    fi
  done
  # ranged GETs for the random reads (same offsets as randread.py)
  cfg=$WORK/curl-ranges
  : >"$cfg"
  python3 "$ROOT/scripts/bench/s3ranges.py" "$bytes" "$RAND_READS" "$RAND_SEED" "$S3_OBJ" >"$WORK/curl-ranges.txt"
  while read -r k first last; do
    [ ! -s "$cfg" ] || echo next >>"$cfg"
    { cat "$S3_AUTH"; printf 'range = "%s-%s"\nurl = "%s"\n' "$first" "$last" "$(s3_url "$b/$k")"; } >>"$cfg"
  done <"$WORK/curl-ranges.txt"

  s3_mkbucket "$b"
  drop_caches
  c0=$(rgw_reqs); t0=$(now)
  pids=()
  for j in 0 1 2 3; do
    [ -s "$WORK/curl-sum-$j" ] || continue
    curl -K "$WORK/curl-put-$j" 2>>"$LOGS/curl.log" & pids+=($!)
  done
  rc=0
  for j in "${pids[@]}"; do wait "$j" || rc=1; done
  t1=$(now); c1=$(rgw_reqs)
  [ "$rc" -eq 0 ] || die "curl $size: a PUT failed (see $LOGS/curl.log)"
  record "$size" curl flush "$(secs "$t0" "$t1")"
  rec_until "$size" curl
  rec_upload_reqs "$size" curl "$c0" "$c1" "$b"
  read -r got want < <(s3_list "$b" | awk '{ n++; s += $2 } END { printf "%d %.0f\n", n, s }')
  [ "$got $want" = "$n $bytes" ] || die "curl $size: bucket holds $got objects, $want bytes; expected $n, $bytes"

  drop_caches
  c0=$(rgw_reqs); t0=$(now)
  pids=()
  for j in 0 1 2 3; do
    [ -s "$WORK/curl-sum-$j" ] || continue
    ( set -o pipefail; curl -K "$WORK/curl-get-$j" 2>>"$LOGS/curl.log" | sha256sum | cut -c1-64 >"$WORK/curl-got-$j" ) &
    pids+=($!)
  done
  rc=0
  for j in "${pids[@]}"; do wait "$j" || rc=1; done
  t1=$(now); c1=$(rgw_reqs)
  [ "$rc" -eq 0 ] || die "curl $size: a GET failed (see $LOGS/curl.log)"
  for j in 0 1 2 3; do
    [ -s "$WORK/curl-sum-$j" ] || continue
    cmp -s "$WORK/curl-sum-$j" "$WORK/curl-got-$j" || die "curl $size: GET stream $j returned wrong bytes"
  done
  record "$size" curl seq "$(secs "$t0" "$t1")"
  rec_reqs "$size" curl sreq "$c0" "$c1"

  drop_caches
  c0=$(rgw_reqs); t0=$(now)
  got=$(set -o pipefail; curl -K "$cfg" 2>>"$LOGS/curl.log" | sha256sum | cut -c1-64) ||
    die "curl $size: a ranged GET failed (see $LOGS/curl.log)"
  t1=$(now); c1=$(rgw_reqs)
  [ "$got" = "$(cat "$DATA/src-$size.rand")" ] || die "curl $size: ranged GETs returned wrong bytes"
  record "$size" curl rand "$(secs "$t0" "$t1")"
  if counted "$c0" "$c1"; then rec_reqs "$size" curl rreq "$c0" "$c1"
  else record "$size" curl rreq "$(wc -l <"$WORK/curl-ranges.txt")"; fi

  s3_purge "$b"
  rm -rf "$pieces" "$WORK"/curl-*
}

# ---------------------------------------------------------------- wavefs

wfs_stats_log() {   # MNT LABEL: user.wavefs.stats into the log
  { echo "== $2"; getfattr --only-values -n user.wavefs.stats "$1" 2>&1 | grep -E '^(store_|uploaded_|pending_|waves|upload_)'; } \
    >>"$LOGS/wavefs-s3-stats.log" 2>&1 || true
}

# wfs_s3_init BUCKET: a new bucket and a wavefs store in it, with a fresh
# index and key (WAVEFS_HOME); its URL in WFS_STORE.
wfs_s3_init() {
  WFS_STORE="s3://$1/store?endpoint=$WAVEFS_S3_ENDPOINT${S3_CA:+&ca_file=$S3_CA}"
  rm -rf "$WORK/wavefs-home"
  export WAVEFS_HOME=$WORK/wavefs-home
  s3_mkbucket "$1"
  "$WAVEFS" init "$WFS_STORE" >>"$LOGS/wavefs-mount.log" 2>&1 || die "wavefs init $WFS_STORE failed (see $LOGS/wavefs-mount.log)"
}

# wfs_s3_done BUCKET: the bucket and the local index go.
wfs_s3_done() {
  s3_purge "$1"
  rm -rf "$WAVEFS_HOME"
  unset WAVEFS_HOME
}

bench_s3_wavefs() {
  local size=$1 bytes b mnt=$MNTS/wavefs c0 c1 chunks want f warns
  bytes=$(to_bytes "$size")
  b=$(s3_bucket_name wavefs "$size")
  mkdir -p "$mnt"
  wfs_s3_init "$b"
  c0=$(rgw_reqs)
  wfs_mount "$WFS_STORE" "$mnt"
  start_sampler "$WFS_PID"
  timed_copy "$size" wavefs "$mnt/f"
  wfs_stats_log "$mnt" "$size run $S3_RUN: after cp, before unmount"
  unmount_and_record "$size" wavefs "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  c1=$(rgw_reqs)
  rec_until "$size" wavefs
  rec_upload_reqs "$size" wavefs "$c0" "$c1" "$b"
  chunks=$(s3_list "$b" store/chunks/ | wc -l)
  want=$(( (bytes + S3_OBJ - 1) / S3_OBJ ))
  [ "$chunks" -eq "$want" ] ||
    S3_NOTES["wavefs $size run $S3_RUN: $chunks chunk objects in the bucket after unmount, expected $want"]=1
  wfs_mount "$WFS_STORE" "$mnt"
  measure_reads_s3 "$size" wavefs "$mnt/f"
  wfs_stats_log "$mnt" "$size run $S3_RUN: after the reads (second mount)"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  record_read_rss "$size" wavefs
  for f in "$WAVEFS_HOME"/*/wavefs.log; do
    [ -f "$f" ] || continue
    cp "$f" "$LOGS/wavefs-s3-$size-r$S3_RUN.log"
    warns=$(grep -ciE '\[(warn|warning|error|critical)\]' "$f" || true)
    [ "$warns" -eq 0 ] ||
      S3_NOTES["wavefs $size run $S3_RUN: $warns warning/error lines in its log ($LOGS/wavefs-s3-$size-r$S3_RUN.log)"]=1
  done
  wfs_s3_done "$b"
}

# ---------------------------------------------------------------- s3fs

S3FS_PID=""
s3fs_mount() {   # BUCKET MNT
  mkdir -p "$WORK/s3fs-tmp"
  ( umask 077; printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/s3fs-passwd" )
  CURL_CA_BUNDLE=${S3_CA:-${CURL_CA_BUNDLE:-}} s3fs "$1" "$2" -f -o "url=$WAVEFS_S3_ENDPOINT,use_path_request_style,passwd_file=$WORK/s3fs-passwd,endpoint=$AWS_REGION,tmpdir=$WORK/s3fs-tmp" \
    >>"$LOGS/s3fs.log" 2>&1 &
  S3FS_PID=$!
  CHILD_PIDS[$S3FS_PID]=1
  wait_mounted "$2" "$S3FS_PID" 60 || die "s3fs did not mount (see $LOGS/s3fs.log)"
}

s3fs_unmount() { sync; fusermount -u "$1"; }

bench_s3_s3fs() {
  local size=$1 bytes b mnt=$MNTS/s3fs c0 c1 got
  bytes=$(to_bytes "$size")
  b=$(s3_bucket_name s3fs "$size")
  mkdir -p "$mnt"
  s3_mkbucket "$b"
  c0=$(rgw_reqs)
  s3fs_mount "$b" "$mnt"
  start_sampler "$S3FS_PID"
  timed_copy "$size" s3fs "$mnt/f"
  unmount_and_record "$size" s3fs "$mnt" "$S3FS_PID" s3fs_unmount "$mnt"
  c1=$(rgw_reqs)
  rec_until "$size" s3fs
  rec_upload_reqs "$size" s3fs "$c0" "$c1" "$b"
  got=$(s3_list "$b" | awk '$1 == "f" { print $2 }')
  [ "$got" = "$bytes" ] || die "s3fs $size: object f has size '${got:-missing}' in the bucket after unmount, expected $bytes"
  rm -rf "$WORK/s3fs-tmp"
  s3fs_mount "$b" "$mnt"
  measure_reads_s3 "$size" s3fs "$mnt/f"
  unmount_timed "$mnt" "$S3FS_PID" s3fs_unmount "$mnt"
  record_read_rss "$size" s3fs
  s3_purge "$b"
  rm -rf "$WORK/s3fs-tmp"
}

# ---------------------------------------------------------------- rclone

RCS_PID=""
rcs_mount() {   # REMOTE MNT
  env -u AWS_CA_BUNDLE rclone mount "$1" "$2" --config "$WORK/rclone-s3.conf" \
    ${S3_CA:+--ca-cert "$S3_CA"} \
    --vfs-cache-mode writes --vfs-write-back 0s --cache-dir "$WORK/rclone-cache" \
    --log-file "$LOGS/rclone-s3.log" --log-level INFO &
  RCS_PID=$!
  CHILD_PIDS[$RCS_PID]=1
  wait_mounted "$2" "$RCS_PID" 60 || die "rclone mount did not mount (see $LOGS/rclone-s3.log)"
}

# rcs_flush_until BUCKET MNT PAUSE AWK: rclone uploads from its write cache
# after close; list the bucket every PAUSE seconds until the awk program
# AWK exits 0 on the listing ("KEY SIZE" lines), then unmount. S3_POLLS:
# the listing requests this made (one per 1000 keys listed).
rcs_flush_until() {
  local b=$1 mnt=$2 pause=$3 done_when=$4 end listing
  sync
  end=$(( $(date +%s) + 3600 ))
  S3_POLLS=0
  while :; do
    listing=$(s3_list "$b") || listing=""   # a failed listing: not yet
    S3_POLLS=$(( S3_POLLS + $(grep -c . <<<"$listing" || true) / 1000 + 1 ))
    awk "$done_when" <<<"$listing" && break
    [ "$(date +%s)" -lt "$end" ] || die "rclone never finished uploading to $b"
    sleep "$pause"
  done
  fusermount3 -u "$mnt"
}

# rcs_flush BUCKET MNT WANT: until the bucket lists an object of WANT bytes.
rcs_flush() {
  rcs_flush_until "$1" "$2" 0.1 "\$2 == $3 { f = 1 } END { exit !f }"
}

# rcs_config BUCKET: remotes s3remote: (the RGW) and crypt: (over BUCKET).
rcs_config() {
  (
    umask 077
    cat >"$WORK/rclone-s3.conf" <<CONF
[s3remote]
type = s3
provider = Ceph
endpoint = $WAVEFS_S3_ENDPOINT
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = $AWS_REGION
force_path_style = true

[crypt]
type = crypt
remote = s3remote:$1
password = $(rclone obscure wavefs-bench-password)
CONF
  )
}

# bench_rclone_s3 SIZE SYS CRYPT(0|1)
bench_rclone_s3() {
  local size=$1 sys=$2 crypt=$3 bytes b mnt=$MNTS/$2 c0 c1 want remote
  bytes=$(to_bytes "$size")
  b=$(s3_bucket_name "$sys" "$size")
  want=$bytes
  remote="s3remote:$b"
  if [ "$crypt" -eq 1 ]; then
    # crypt format: 32-byte header, 16-byte tag per 64 KiB block.
    want=$(( 32 + bytes + 16 * ((bytes + 65535) / 65536) ))
    remote="crypt:"
  fi
  rcs_config "$b"
  rm -rf "$WORK/rclone-cache"; mkdir -p "$mnt"
  s3_mkbucket "$b"
  c0=$(rgw_reqs)
  rcs_mount "$remote" "$mnt"
  start_sampler "$RCS_PID"
  timed_copy "$size" "$sys" "$mnt/f"
  unmount_and_record "$size" "$sys" "$mnt" "$RCS_PID" rcs_flush "$b" "$mnt" "$want"
  c1=$(rgw_reqs)
  rec_until "$size" "$sys"
  rec_upload_reqs "$size" "$sys" "$c0" "$c1" "$b" "$S3_POLLS"
  rm -rf "$WORK/rclone-cache"   # nothing local may serve the reads
  rcs_mount "$remote" "$mnt"
  measure_reads_s3 "$size" "$sys" "$mnt/f"
  unmount_timed "$mnt" "$RCS_PID"
  record_read_rss "$size" "$sys"
  s3_purge "$b"
  rm -rf "$WORK/rclone-cache"
}

bench_s3_rclone() { bench_rclone_s3 "$1" rclone 0; }
bench_s3_rclone_crypt() { bench_rclone_s3 "$1" rclone-crypt 1; }

# ---------------------------------------------------------------- small files

# `tar -x` of the regular files of /usr/include (a tarball made once; no
# symlinks, which rclone mount refuses) into each FUSE system, until every
# file is in the bucket: wavefs `wavefs unmount`; s3fs sync + unmount (it
# uploads at close); rclone until the bucket lists every file, then
# unmount. Then a fresh mount's files are read back with caches dropped,
# one `cat` after the other in the tarball's order (as `cp -r` or a backup
# reads a tree; wavefs numbers inodes in creation order, so this is also
# their inode order), timed and checked against the tarball.
S3_TAR=""
S3_TAR_FILES=0
S3_TAR_SHA=""   # of every file's bytes, in the tarball's order

s3_small_input() {
  S3_TAR=$DATA/usr-include-files.tar
  if [ ! -s "$S3_TAR" ]; then
    (cd /usr && find include -type f -print0 |
      tar --null --no-recursion -cf "$S3_TAR.tmp" -T -) || die "cannot make $S3_TAR from /usr/include"
    mv "$S3_TAR.tmp" "$S3_TAR"
  fi
  S3_TAR_FILES=$(tar -tf "$S3_TAR" | wc -l)
  S3_TAR_SHA=$(tar -xOf "$S3_TAR" | openssl dgst -sha256 -r | cut -d' ' -f1)
}

# s3_small_extract SYS MNT: the timed `tar -x` (recorded as copy).
s3_small_extract() {
  local t0 t1
  drop_caches
  t0=$(now)
  tar -xf "$S3_TAR" --no-same-owner -C "$2" 2>>"$LOGS/small-$1.log" ||
    die "$1: tar -x into $2 failed (see $LOGS/small-$1.log)"
  t1=$(now)
  record small "$1" copy "$(secs "$t0" "$t1")"
}

# s3_small_check SYS MNT: the files read back (timed, caches dropped) equal
# the tarball's.
s3_small_check() {
  local got t0 t1
  tar -tf "$S3_TAR" >"$WORK/small-names"
  drop_caches
  t0=$(now)
  got=$(cd "$2" && xargs -d '\n' cat <"$WORK/small-names" | openssl dgst -sha256 -r | cut -d' ' -f1)
  t1=$(now)
  [ "$got" = "$S3_TAR_SHA" ] || die "$1: the files read back from the bucket differ from the tarball"
  record small "$1" read "$(secs "$t0" "$t1")"
}

# s3_small_record SYS C0 C1 BUCKET [POLLS]: after unmount_timed.
s3_small_record() {
  record small "$1" flush "$UT_SECS"
  record small "$1" rss "$(kib_mib "$UT_PEAK_KIB")"
  rec_upload_reqs small "$1" "$2" "$3" "$4" "${5:-0}"
  rec_until small "$1"
}

bench_s3_small_wavefs() {
  local b mnt=$MNTS/wavefs c0 c1
  b=$(s3_bucket_name wavefs small)
  mkdir -p "$mnt"
  wfs_s3_init "$b"
  c0=$(rgw_reqs)
  wfs_mount "$WFS_STORE" "$mnt"
  s3_small_extract wavefs "$mnt"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  c1=$(rgw_reqs)
  s3_small_record wavefs "$c0" "$c1" "$b"
  wfs_mount "$WFS_STORE" "$mnt"
  s3_small_check wavefs "$mnt"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  wfs_s3_done "$b"
}

bench_s3_small_s3fs() {
  local b mnt=$MNTS/s3fs c0 c1
  b=$(s3_bucket_name s3fs small)
  mkdir -p "$mnt"
  s3_mkbucket "$b"
  c0=$(rgw_reqs)
  s3fs_mount "$b" "$mnt"
  s3_small_extract s3fs "$mnt"
  unmount_timed "$mnt" "$S3FS_PID" s3fs_unmount "$mnt"
  c1=$(rgw_reqs)
  s3_small_record s3fs "$c0" "$c1" "$b"
  rm -rf "$WORK/s3fs-tmp"
  s3fs_mount "$b" "$mnt"
  s3_small_check s3fs "$mnt"
  unmount_timed "$mnt" "$S3FS_PID" s3fs_unmount "$mnt"
  s3_purge "$b"
  rm -rf "$WORK/s3fs-tmp"
}

# rcs_flush_count BUCKET MNT N: until the bucket lists N objects (every
# file); a listing of thousands of keys is polled once a second.
rcs_flush_count() {
  rcs_flush_until "$1" "$2" 1 "NF { n++ } END { exit n < $3 }"
}

# bench_rclone_small SYS CRYPT(0|1)
bench_rclone_small() {
  local sys=$1 b mnt=$MNTS/$1 c0 c1 remote
  b=$(s3_bucket_name "$sys" small)
  remote="s3remote:$b"
  [ "$2" -eq 1 ] && remote="crypt:"
  rcs_config "$b"
  rm -rf "$WORK/rclone-cache"; mkdir -p "$mnt"
  s3_mkbucket "$b"
  c0=$(rgw_reqs)
  rcs_mount "$remote" "$mnt"
  s3_small_extract "$sys" "$mnt"
  unmount_timed "$mnt" "$RCS_PID" rcs_flush_count "$b" "$mnt" "$S3_TAR_FILES"
  c1=$(rgw_reqs)
  s3_small_record "$sys" "$c0" "$c1" "$b" "$S3_POLLS"
  rm -rf "$WORK/rclone-cache"
  rcs_mount "$remote" "$mnt"
  s3_small_check "$sys" "$mnt"
  unmount_timed "$mnt" "$RCS_PID"
  s3_purge "$b"
  rm -rf "$WORK/rclone-cache"
}

bench_s3_small_rclone() { bench_rclone_small rclone 0; }
bench_s3_small_rclone_crypt() { bench_rclone_small rclone-crypt 1; }

# ---------------------------------------------------------------- main

s3_median() {
  # shellcheck disable=SC2086
  printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
s3_med() { s3_median "${R["$1|$2|$3"]:-}"; }
s3_fmt() { if [ -n "$1" ]; then awk -v v="$1" -v p="${2:-2}" 'BEGIN { printf "%.*f", p, v }'; else printf '–'; fi; }
s3_ratio() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "–" }'
  else printf '–'; fi
}
s3_per_gib() {   # COUNT BYTES
  if [ -n "$1" ]; then awk -v c="$1" -v b="$2" 'BEGIN { printf "%.0f", c * 1073741824 / b }'; else printf '–'; fi
}

s3_main() {
  local size bytes avail need run sys
  command -v jq >/dev/null 2>&1 || die "jq is needed for --store s3"
  if [[ " ${SYSTEMS[*]} " == *" wavefs "* ]] && [ ! -x "$WAVEFS" ]; then
    die "$WAVEFS not found (run scripts/build.sh or pass --bin)"
  fi
  s3_start
  log "S3 at $WAVEFS_S3_ENDPOINT ($S3_SOURCE); request counts: $([ -n "$RGW_ASOK" ] && echo "radosgw perf counters" || echo "objects in the bucket")"

  for size in "${SIZE_LIST[@]}"; do
    bytes=$(to_bytes "$size")
    make_data "$size"
    avail=$(df --output=avail -B1 "$BENCH" | tail -n 1)
    # pieces or spill or cache (1x), OSD growth incl. GC lag (2x), slack
    need=$(( 3 * bytes + 2 * 1024 * 1024 * 1024 ))
    [ "$avail" -ge "$need" ] || die "not enough free space in $BENCH for $size: $avail bytes free, need $need"
    for run in $(seq 1 "$RUNS"); do
      S3_RUN=$run
      for sys in "${SYSTEMS[@]}"; do
        [ -n "${MISSING[$sys]:-}" ] && continue
        log "$size run $run/$RUNS: $sys"
        "bench_s3_${sys//-/_}" "$size"
      done
    done
  done

  if [ "$S3_SMALL" -eq 1 ]; then
    s3_small_input
    for run in $(seq 1 "$RUNS"); do
      S3_RUN=$run
      for sys in "${SYSTEMS[@]}"; do
        [ "$sys" = curl ] && continue   # no per-file baseline
        [ -n "${MISSING[$sys]:-}" ] && continue
        log "small files ($S3_TAR_FILES) run $run/$RUNS: $sys"
        "bench_s3_small_${sys//-/_}"
      done
    done
  fi

  s3_report
}

s3_report() {
  local cpu mem commit dirty ceph_ver store conf_desc table size bytes sys
  local c u cu rss rssr s cs r cr w sr rr sg rg
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
  ceph_ver=$(ceph --version 2>/dev/null | awk '{print $3, "(" $5 ")"}')
  store="?"
  if [ -n "$RGW_CONF_DIR" ] && [ -f "$RGW_CONF_DIR/ceph.conf" ]; then
    store=$(awk -F' *= *' '$1 == "osd objectstore" {print $2; exit}' "$RGW_CONF_DIR/ceph.conf")
    conf_desc="Ceph $ceph_ver, 1 mon + 1 OSD ($store on a sparse $( . "$RGW_CONF_DIR/state" && echo "$OSD_SIZE") file, pool size 1, 8 PGs) + 1 radosgw (beast), all on 127.0.0.1, no mgr (scripts/ceph-rgw.sh); $S3_SOURCE"
  else
    conf_desc="$S3_SOURCE (its configuration is not known here)"
  fi

  table=$(
    echo "## wavefs S3 benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); wavefs commit $commit$dirty ($WAVEFS)"
    echo "- machine: $(nproc) cores ($cpu), $mem RAM, kernel $(uname -r); work dir on $(stat -f -c %T "$BENCH")"
    echo "- S3 server: $conf_desc; endpoint $WAVEFS_S3_ENDPOINT"
    [ -z "$S3_CA" ] || echo "- TLS (--tls): every system over HTTPS, the server's self-signed certificate trusted through $S3_CA; wavefs's store is what \`init\` makes over HTTPS (chunk format 4: PUTs checked by TLS, no MD5 pass)"
    echo "- command: \`$CMDLINE\`"
    echo "- sizes: ${SIZES}; runs: $RUNS (medians shown); data: incompressible, fixed seed; systems: ${SYSTEMS[*]}"
    echo "- versions: $(curl --version | head -n 1 | cut -d' ' -f1-2), $(s3fs --version 2>/dev/null | head -n 1 | awk '{print "s3fs", $7}' || true), $(rclone version 2>/dev/null | head -n 1 || true)"
    [ "$CAN_DROP" -eq 1 ] || echo "- WARNING: page cache could not be dropped: reads were not cold"
    echo
    echo "| size | system | copy s | in bucket s | vs curl | peak RSS MiB | read RSS MiB | cold seq read s | seq vs curl | random ${RAND_READS}×1MiB s | random vs curl ranged | upload req/GiB | seq-read req/GiB | random req | MiB asked seq / random |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for size in "${SIZE_LIST[@]}"; do
      bytes=$(to_bytes "$size")
      cu=$(s3_med "$size" curl until); cs=$(s3_med "$size" curl seq); cr=$(s3_med "$size" curl rand)
      for sys in "${SYSTEMS[@]}"; do
        if [ -n "${MISSING[$sys]:-}" ]; then
          echo "| $size | $sys | not installed | | | | | | | | | | | | |"
          continue
        fi
        c=$(s3_med "$size" "$sys" copy); u=$(s3_med "$size" "$sys" until)
        rss=$(s3_med "$size" "$sys" rss); rssr=$(s3_med "$size" "$sys" rssread)
        s=$(s3_med "$size" "$sys" seq); r=$(s3_med "$size" "$sys" rand)
        w=$(s3_med "$size" "$sys" wreq); sr=$(s3_med "$size" "$sys" sreq); rr=$(s3_med "$size" "$sys" rreq)
        sg=$(s3_med "$size" "$sys" sreq_got); rg=$(s3_med "$size" "$sys" rreq_got)
        echo "| $size | $sys | $(s3_fmt "$c") | $(s3_fmt "$u") | $(s3_ratio "$u" "$cu") | $(s3_fmt "$rss" 1) | $(s3_fmt "$rssr" 1) | $(s3_fmt "$s") | $(s3_ratio "$s" "$cs") | $(s3_fmt "$r") | $(s3_ratio "$r" "$cr") | $(s3_per_gib "$w" "$bytes") | $(s3_per_gib "$sr" "$bytes") | $(s3_fmt "$rr" 0) | $(s3_fmt "$sg" 0) / $(s3_fmt "$rg" 0) |"
      done
    done
    echo
    if [ "$S3_SMALL" -eq 1 ]; then
      echo "Small files: \`tar -x\` of the $S3_TAR_FILES regular files of /usr/include ($(( $(stat -c %s "$S3_TAR") >> 20 )) MiB tarball), until every file is in the bucket:"
      echo
      echo "| system | tar -x s | in bucket s | vs wavefs | upload requests | peak RSS MiB | read back s | read vs wavefs |"
      echo "|---|---|---|---|---|---|---|---|"
      local wu wr r
      wu=$(s3_med small wavefs until)
      wr=$(s3_med small wavefs read)
      for sys in "${SYSTEMS[@]}"; do
        [ "$sys" = curl ] && continue
        [ -n "${MISSING[$sys]:-}" ] && continue
        c=$(s3_med small "$sys" copy); u=$(s3_med small "$sys" until)
        rss=$(s3_med small "$sys" rss); w=$(s3_med small "$sys" wreq)
        r=$(s3_med small "$sys" read)
        echo "| $sys | $(s3_fmt "$c") | $(s3_fmt "$u") | $(s3_ratio "$u" "$wu") | $(s3_fmt "$w" 0) | $(s3_fmt "$rss" 1) | $(s3_fmt "$r") | $(s3_ratio "$r" "$wr") |"
      done
    fi
    echo
    echo "Notes:"
    echo "- curl = the link's ceiling: 4 MiB objects, 4 parallel signed PUT streams (one kept-alive curl each; splitting the file is not timed);"
    echo "  its seq read = 4 parallel GET streams of all objects, each sha256-checked; its random = the same ${RAND_READS} 1 MiB reads as sequential"
    echo "  ranged GETs over one connection (a read that crosses an object boundary takes two)."
    echo "- copy = \`cp\` into the mount (page cache dropped first); in bucket = copy + the flush until every byte is in the bucket:"
    echo "  wavefs: \`wavefs unmount\` (returns when every chunk is uploaded); s3fs: \`sync\` + \`fusermount -u\` (s3fs uploads on close), object size checked;"
    echo "  rclone: \`--vfs-cache-mode writes --vfs-write-back 0s\`, until the bucket lists the object at its full (encrypted) size, then unmount."
    echo "- peak RSS = daemon VmHWM over the upload mount (sampled every 0.1 s through the unmount); read RSS = VmHWM of the second (read) mount."
    echo "- cold seq read = \`dd bs=1M | openssl dgst -sha256\` of the file after a remount with the page cache dropped$([ -n "$RGW_OSD_ASOK" ] && echo " and the OSD's BlueStore cache dropped (\`cache drop\`)"), checksum checked;"
    echo "  random = ${RAND_READS} preads of 1 MiB at seeded offsets (same offsets for every system), caches dropped, bytes checked."
    echo "  s3fs runs without use_cache (its tmpdir is per open file); rclone's write cache is removed before the read mount."
    if [ -n "$RGW_ASOK" ]; then
      echo "- requests = counted on the server: delta of radosgw's \`rgw.req\` perf counter (every S3 request served, incl. HEAD, LIST, multipart"
      echo "  steps) around each phase; upload = from mount to the end of the unmount (the bench's own LIST polls for rclone subtracted)."
      echo "  MiB asked = object bytes of the GETs radosgw served in the phase (\`rgw.get_b\`: the ranges asked for): read amplification"
      echo "  (the file is the row's size; the random pass reads ${RAND_READS} MiB). rclone asks for 128 MiB ranges and drops the"
      echo "  connection when it seeks, so its figure is what it asked for, far more than what moved."
    else
      echo "- requests: the server's counters were not reachable: upload = objects in the bucket afterwards; read columns for curl only."
    fi
    if [ "$S3_SMALL" -eq 1 ]; then
      echo "- small files: in bucket = \`tar -x\` + the flush (wavefs \`wavefs unmount\`; s3fs sync + unmount; rclone until the bucket"
      echo "  lists every file, then unmount; its listing requests subtracted). Upload requests counted as above (every request, incl."
      echo "  directory objects and metadata updates). read back = a new mount, caches dropped, \`cat\` of every file in the tarball's"
      echo "  order (for wavefs also their inode order, so \`--prefetch-files\` fetches the next small files ahead), checked against the tarball."
    fi
    echo "- s3fs keeps what it downloaded for an open file in its tmpdir until the file is closed: within one open (the whole"
    echo "  random-read pass) a byte range is fetched at most once, and it fetches large parts around each read."
    for n in "${!S3_NOTES[@]}"; do echo "- $n"; done
  )

  write_table "$table"
}
