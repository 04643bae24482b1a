#!/usr/bin/env bash
# A single-node Ceph (one mon, one bluestore OSD in a sparse file, one RGW) on
# 127.0.0.1 only, as a real S3 server for wavefs's tests and benchmarks. From
# Debian's packages (scripts/install-deps.sh), no systemd, no ceph-mgr; config,
# keys, data, logs and pid files all live in one directory DIR.
#
#   scripts/ceph-rgw.sh start DIR [--port N] [--osd-size SIZE]
#       Creates the cluster in DIR (first time) or starts its daemons again on
#       the existing data, waits until a signed S3 request answers, writes
#       DIR/env and prints it on stdout (progress goes to stderr), so
#       eval "$(scripts/ceph-rgw.sh start DIR)" works. Already running: just
#       prints the env. --port: RGW port (default 7480, or the port of the
#       last start; if that one is taken the next free port is used and
#       reported; an explicit --port that is taken is an error).
#       --osd-size: sparse bluestore file size, e.g. 8G (default; first start).
#   scripts/ceph-rgw.sh stop DIR         SIGTERM rgw, osd, mon (SIGKILL after a
#                                        bounded wait); the data stays
#   scripts/ceph-rgw.sh env DIR          print DIR/env (exit 1 if not started,
#                                        i.e. no successful start since the last stop)
#   scripts/ceph-rgw.sh status DIR       daemons, endpoint, health; exit 0 only
#                                        when all three run (and rgw is not paused)
#   scripts/ceph-rgw.sh destroy DIR      stop, then rm -rf DIR
#   scripts/ceph-rgw.sh pause-rgw DIR    SIGSTOP radosgw    (fault tests)
#   scripts/ceph-rgw.sh resume-rgw DIR   SIGCONT radosgw
#   scripts/ceph-rgw.sh kill-rgw DIR     SIGKILL radosgw
#   scripts/ceph-rgw.sh restart-rgw DIR  start radosgw again (same data and
#                                        port) and wait until S3 answers
#
# The env line: export AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=..
#   WAVEFS_S3_ENDPOINT=http://127.0.0.1:PORT AWS_REGION=us-east-1
#   WAVEFS_S3_TLS_ENDPOINT=https://127.0.0.1:TLS_PORT WAVEFS_S3_CA_FILE=DIR/tls/cert.pem
# (path-style URLs; sign with SigV4 and always send x-amz-content-sha256).
# RGW serves the same S3 over HTTPS on TLS_PORT (the next free port after
# PORT) with a self-signed certificate for 127.0.0.1 and localhost, made at
# the first start; WAVEFS_S3_CA_FILE is that certificate, the one a client
# must trust (curl --cacert, wavefs's ca_file=).
# Only processes whose pid is in DIR/run and whose command line names
# DIR/ceph.conf are ever signalled. Timeouts (seconds) can be raised with
# WAVEFS_CEPH_CLI_TIMEOUT, WAVEFS_CEPH_START_TIMEOUT, WAVEFS_CEPH_STOP_TIMEOUT.
set -euo pipefail
export LC_ALL=C

CLI_TIMEOUT=${WAVEFS_CEPH_CLI_TIMEOUT:-30}     # any one ceph / radosgw-admin call
START_TIMEOUT=${WAVEFS_CEPH_START_TIMEOUT:-180} # each wait for a daemon to be ready
STOP_TIMEOUT=${WAVEFS_CEPH_STOP_TIMEOUT:-30}   # each daemon's exit after SIGTERM

DEFAULT_RGW_PORT=7480
DEFAULT_MON_PORT=3300
DEFAULT_OSD_SIZE=8G
REGION=us-east-1
S3_UID=wavefs
MON_ID=a
RGW_NAME=client.rgw.gw
READY_BUCKET=wavefs-ceph-rgw-ready
# Daemons in start order; stop goes the other way.
DAEMONS=(mon osd rgw)

T0=$EPOCHREALTIME
# Ctrl-C or SIGTERM during `start` still runs its EXIT trap (which stops the
# daemons a failed start launched).
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf 'ceph-rgw: [%5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf 'ceph-rgw: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p}' "$0"; }
usage_error() { printf 'ceph-rgw: %s (try --help)\n' "$*" >&2; exit 2; }

elapsed() {
  local now=$EPOCHREALTIME
  awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

# ---------------------------------------------------------------- paths/state

# set_paths DIR: every path the script uses, from the (absolute) data dir.
set_paths() {
  DIR=$(realpath -m -- "$1")
  case "$DIR" in
    *[[:space:]\$\#\;,=\'\"\\]*)
      die "data dir '$DIR' contains a character ceph.conf cannot carry (space \$ # ; , = quotes backslash)" ;;
  esac
  [ "$DIR" != / ] || die "refusing to use / as the data dir"
  CONF=$DIR/ceph.conf
  KEYRING=$DIR/keyring
  STATE=$DIR/state
  ENV_FILE=$DIR/env
  LOGDIR=$DIR/log
  PIDDIR=$DIR/run
  TLS_CERT=$DIR/tls/cert.pem
  TLS_KEY=$DIR/tls/key.pem
  TLS_PORT=""
  # Unix socket paths are limited to 107 bytes: if DIR/run/client.rgw.gw.asok
  # would not fit, the admin sockets go to a short dir under /tmp named after
  # a hash of DIR (so stop/destroy find it again without any other record).
  if [ $(( ${#DIR} + 40 )) -le 107 ]; then
    SOCKDIR=$PIDDIR
  else
    SOCKDIR=/tmp/wavefs-ceph-$(printf '%s' "$DIR" | sha256sum | cut -c1-12)
  fi
}

load_state() {
  [ -f "$STATE" ] || return 1
  # shellcheck disable=SC1090
  . "$STATE"
}

save_state() {
  local tmp=$STATE.tmp
  {
    printf '# written by scripts/ceph-rgw.sh; do not edit while the cluster runs\n'
    printf 'FSID=%q\nMON_PORT=%q\nRGW_PORT=%q\nOSD_SIZE=%q\n' "$FSID" "$MON_PORT" "$RGW_PORT" "$OSD_SIZE"
    printf 'TLS_PORT=%q\n' "$TLS_PORT"
    printf 'OSD_ID=%q\nOSD_UUID=%q\nOSD_SECRET=%q\n' "$OSD_ID" "$OSD_UUID" "$OSD_SECRET"
    printf 'ACCESS_KEY=%q\nSECRET_KEY=%q\nSOCKDIR_USED=%q\n' "$ACCESS_KEY" "$SECRET_KEY" "$SOCKDIR"
  } >"$tmp"
  mv -f "$tmp" "$STATE"
}

endpoint() { printf 'http://127.0.0.1:%s' "$RGW_PORT"; }
tls_endpoint() { printf 'https://127.0.0.1:%s' "$TLS_PORT"; }

env_line() {
  printf 'export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s WAVEFS_S3_ENDPOINT=%s AWS_REGION=%s WAVEFS_S3_TLS_ENDPOINT=%s WAVEFS_S3_CA_FILE=%s\n' \
    "$ACCESS_KEY" "$SECRET_KEY" "$(endpoint)" "$REGION" "$(tls_endpoint)" "$TLS_CERT"
}

write_conf() {
  local tmp=$CONF.tmp
  cat >"$tmp" <<CONF
# Generated by scripts/ceph-rgw.sh on every start; edits are lost.
[global]
fsid = $FSID
# loopback only, msgr2 only
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
cluster network = 127.0.0.1/32
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
# everything under the data dir
keyring = $KEYRING
run dir = $SOCKDIR
log file = $LOGDIR/\$name.log
mon cluster log file = $LOGDIR/cluster.log
crash dir = $DIR/crash
# one OSD
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
# test machines often have little free disk (the default refuses under 5 %)
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = $DIR/mon/\$id
admin socket = $SOCKDIR/\$name.asok
pid file = $PIDDIR/\$name.pid
paxos propose interval = 0.1
# every client is this release: no HEALTH_WARN about insecure global_id reclaim
auth allow insecure global id reclaim = false

[osd]
osd data = $DIR/osd/\$id
osd objectstore = bluestore
# a sparse file DIR/osd/ID/block, created by ceph-osd --mkfs
bluestore block create = true
bluestore block size = $(numfmt --from=iec "$OSD_SIZE")
admin socket = $SOCKDIR/\$name.asok
pid file = $PIDDIR/\$name.pid

[client]
# read by radosgw and radosgw-admin
rgw data = $DIR/rgw
# virtual-host style too: a request for BUCKET.localhost:PORT is for BUCKET
# (libcurl resolves every *.localhost name to 127.0.0.1 itself, no DNS)
rgw dns name = localhost
rgw enable lc threads = false
rgw gc obj min wait = 30
rgw gc processor period = 30

[$RGW_NAME]
# tcp_nodelay=1: without it the last partial segment of ~30 % of 1 MiB
# ranged GETs waited for the client's delayed ACK (40 ms; Nagle), so reads
# measured the ACK timer, not the server (docs/architecture.md, "S3 reads").
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT ssl_endpoint=127.0.0.1:$TLS_PORT ssl_certificate=$TLS_CERT ssl_private_key=$TLS_KEY tcp_nodelay=1
admin socket = $SOCKDIR/\$name.asok
pid file = $PIDDIR/\$name.pid
CONF
  mv -f "$tmp" "$CONF"
}

# ------------------------------------------------------------------ processes

# daemon_name mon|osd|rgw -> ceph's $name (also the pid and log file name)
daemon_name() {
  case "$1" in
    mon) printf 'mon.%s' "$MON_ID" ;;
    osd) printf 'osd.%s' "${OSD_ID:-0}" ;;
    rgw) printf '%s' "$RGW_NAME" ;;
  esac
}

pid_file() { printf '%s/%s.pid' "$PIDDIR" "$(daemon_name "$1")"; }

# daemon_pid mon|osd|rgw: prints the pid when the daemon runs (or is stopped
# by SIGSTOP). Only a live, non-zombie process whose command line holds
# DIR/ceph.conf counts, so a stale pid file never leads to a foreign process.
daemon_pid() {
  local f pid stat
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(<"$f") || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  grep -qzxF -- "$CONF" "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

daemon_state() { # running | paused | stopped
  local pid stat
  pid=$(daemon_pid "$1") || { echo stopped; return; }
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo stopped; return; }
  stat=${stat##*) }
  case "${stat%% *}" in
    T|t) echo paused ;;
    *) echo running ;;
  esac
}

log_tail() {
  local name f
  name=$(daemon_name "$1")
  for f in "$LOGDIR/$name.out" "$LOGDIR/$name.log"; do
    if [ -s "$f" ]; then
      printf -- '---- last lines of %s ----\n' "$f" >&2
      tail -n 25 "$f" >&2
    fi
  done
}

# fail DAEMON MESSAGE: print the daemon's log tail, then die.
fail() {
  [ -z "$1" ] || log_tail "$1"
  die "$2"
}

STARTED=()

# out_header mon|osd|rgw CMD...: marks in DIR/log/NAME.out what wrote next
out_header() {
  local which=$1
  shift
  printf '\n==== %s: %s\n' "$(date '+%F %T')" "$*" >>"$LOGDIR/$(daemon_name "$which").out"
}

# ensure_sockdir: the admin socket dir exists (DIR/run, or the short /tmp one)
ensure_sockdir() {
  [ -d "$SOCKDIR" ] || mkdir -m 700 "$SOCKDIR"
}

# launch mon|osd|rgw CMD...: starts a daemon in the foreground mode (-f) in a
# new session, detached from the caller's terminal and pipes, and records its
# pid. The lock fds are closed so that a daemon never holds the script's locks.
launch() {
  local which=$1 name pid
  shift
  name=$(daemon_name "$which")
  rm -f "$SOCKDIR/$name.asok"
  out_header "$which" "$@"
  setsid "$@" </dev/null >>"$LOGDIR/$name.out" 2>&1 8>&- 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$(pid_file "$which")"
  STARTED+=("$which")
  log "started $name (pid $pid)"
}

# wait_until DAEMON SECONDS WHAT CMD...: polls CMD until it succeeds; dies with
# the daemon's log tail if the daemon exits or the time runs out.
wait_until() {
  local which=$1 limit=$2 what=$3 deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$which" ] && ! daemon_pid "$which" >/dev/null; then
      fail "$which" "$(daemon_name "$which") exited while waiting for $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "$which" "timed out after ${limit}s waiting for $what"
    fi
    sleep 0.2
  done
}

STOPPED_PIDS=()

# wait_reaped: a stopped daemon stays a zombie until init reaps it (some VM
# inits do that only every ~2 s); wait a little so that `pgrep` right after a
# stop shows nothing.
wait_reaped() {
  local pid deadline=$((SECONDS + 4))
  for pid in "${STOPPED_PIDS[@]}"; do
    while [ -e "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.1
    done
  done
}

# stop_daemon mon|osd|rgw: SIGTERM (and SIGCONT, in case it is paused), wait,
# then SIGKILL. Removes its pid file and admin socket.
stop_daemon() {
  local which=$1 name pid deadline
  name=$(daemon_name "$which")
  if pid=$(daemon_pid "$which"); then
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while daemon_pid "$which" >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.1
    done
    if daemon_pid "$which" >/dev/null; then
      log "$name (pid $pid) still there ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while daemon_pid "$which" >/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
      done
      ! daemon_pid "$which" >/dev/null || die "$name (pid $pid) survived SIGKILL"
    fi
    STOPPED_PIDS+=("$pid")
    log "stopped $name (pid $pid)"
  fi
  rm -f "$(pid_file "$which")" "$SOCKDIR/$name.asok"
}

# port_busy PORT: something accepts connections on 127.0.0.1:PORT
port_busy() {
  # shellcheck disable=SC2016 # $0 is expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

# free_port FIRST: the first port >= FIRST that nobody listens on
free_port() {
  local p=$1
  while port_busy "$p"; do
    p=$((p + 1))
    [ "$p" -lt $(($1 + 200)) ] || die "no free port in $1..$((p - 1))"
  done
  printf '%s' "$p"
}

# ---------------------------------------------------------------- ceph calls

ceph_cli() {
  timeout "$CLI_TIMEOUT" ceph -c "$CONF" --connect-timeout "$CLI_TIMEOUT" "$@"
}

rgw_admin() {
  timeout "$CLI_TIMEOUT" radosgw-admin -c "$CONF" "$@"
}

mon_answers() { ceph_cli mon stat; }

osd_up() { ceph_cli osd dump 2>/dev/null | grep -q "^osd\.$OSD_ID up"; }

rgw_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$(endpoint)/") || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

# tls_answers: the HTTPS endpoint answers with a certificate that verifies
# against TLS_CERT.
tls_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$TLS_CERT" "$(tls_endpoint)/") || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

# make_tls_cert: a self-signed certificate (P-256) for 127.0.0.1 and
# localhost, ten years, once per cluster.
make_tls_cert() {
  [ -s "$TLS_CERT" ] && [ -s "$TLS_KEY" ] && return 0
  mkdir -p "$DIR/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TLS_KEY.tmp" -out "$TLS_CERT.tmp" -days 3650 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null ||
    die "openssl could not make the TLS certificate in $DIR/tls"
  chmod 600 "$TLS_KEY.tmp"
  mv -f "$TLS_KEY.tmp" "$TLS_KEY"
  mv -f "$TLS_CERT.tmp" "$TLS_CERT"
}

# s3 CURL-ARGS...: a SigV4-signed request as the wavefs S3 user. RGW checks
# x-amz-content-sha256, which curl 7.88's --aws-sigv4 does not add.
s3() {
  curl -sS --fail --max-time 10 \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# s3_answers: create a bucket, see it listed, delete it (signed requests).
s3_answers() {
  s3 -X PUT "$(endpoint)/$READY_BUCKET" -o /dev/null &&
    s3 "$(endpoint)/" | grep -q "<Name>$READY_BUCKET</Name>" &&
    s3 -X DELETE "$(endpoint)/$READY_BUCKET" -o /dev/null
}

# ------------------------------------------------------------ creation steps

create_mon() {
  log "creating keys and mon.$MON_ID (fsid $FSID, [v2:127.0.0.1:$MON_PORT])"
  rm -rf "$DIR/mon/$MON_ID" "$KEYRING" "$DIR/monmap"
  ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  chmod 600 "$KEYRING"
  monmaptool --create --fsid "$FSID" --addv "$MON_ID" "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  out_header mon ceph-mon --mkfs
  timeout "$CLI_TIMEOUT" ceph-mon -c "$CONF" --mkfs -i "$MON_ID" --monmap "$DIR/monmap" \
    --keyring "$KEYRING" >>"$LOGDIR/mon.$MON_ID.out" 2>&1 ||
    fail mon "ceph-mon --mkfs failed"
  touch "$DIR/.created-mon"
}

create_osd() {
  local id
  log "creating osd (bluestore on a sparse ${OSD_SIZE} file)"
  # `ceph osd new` with the same uuid and secret returns the same id, so a
  # creation that failed half-way can simply be run again.
  id=$(printf '{"cephx_secret": "%s"}' "$OSD_SECRET" |
    ceph_cli osd new "$OSD_UUID" -i - 2>>"$LOGDIR/client.admin.log") ||
    die "ceph osd new failed (see $LOGDIR/client.admin.log)"
  [[ $id =~ ^[0-9]+$ ]] || die "ceph osd new printed '$id', not an osd id"
  OSD_ID=$id
  save_state
  ceph-authtool "$KEYRING" -n "osd.$OSD_ID" --add-key "$OSD_SECRET" >/dev/null
  rm -rf "$DIR/osd/$OSD_ID"
  mkdir -p "$DIR/osd/$OSD_ID"
  out_header osd ceph-osd --mkfs
  timeout $((CLI_TIMEOUT * 4)) ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" \
    >>"$LOGDIR/osd.$OSD_ID.out" 2>&1 || fail osd "ceph-osd --mkfs failed"
  touch "$DIR/.created-osd"
}

create_rgw_key() {
  local kr=$DIR/rgw/keyring
  log "creating $RGW_NAME key"
  ceph_cli auth get-or-create "$RGW_NAME" mon 'allow rw' osd 'allow rwx' -o "$kr" >/dev/null ||
    die "ceph auth get-or-create $RGW_NAME failed"
  ceph-authtool "$KEYRING" --import-keyring "$kr" >/dev/null
  touch "$DIR/.created-rgw"
}

create_user() {
  if rgw_admin user info --uid="$S3_UID" >/dev/null 2>&1; then
    touch "$DIR/.created-user"
    return
  fi
  log "creating S3 user '$S3_UID'"
  rgw_admin user create --uid="$S3_UID" --display-name="wavefs tests" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null 2>"$LOGDIR/user-create.err" || {
    cat "$LOGDIR/user-create.err" >&2
    die "radosgw-admin user create failed"
  }
  touch "$DIR/.created-user"
}

start_mon() {
  if port_busy "$MON_PORT"; then
    die "the mon port 127.0.0.1:$MON_PORT (fixed in this cluster's monmap) is in use by another process"
  fi
  launch mon ceph-mon -f -c "$CONF" -i "$MON_ID"
  wait_until mon "$START_TIMEOUT" "mon.$MON_ID to answer" mon_answers
}

start_osd() {
  # After a crash the osdmap still says "up" for the dead OSD: mark it down so
  # that the wait below sees the new one boot, and clients do not spend ~10 s
  # on the dead one's address.
  if osd_up; then
    log "osd.$OSD_ID is marked up but does not run (crash?): marking it down"
    ceph_cli osd down "$OSD_ID" >/dev/null 2>&1 || log "warning: ceph osd down $OSD_ID failed"
  fi
  launch osd ceph-osd -f -c "$CONF" -i "$OSD_ID"
  wait_until osd "$START_TIMEOUT" "osd.$OSD_ID to be up" osd_up
}

# drop_stale_rgw_watchers: a radosgw that died without SIGTERM (kill-rgw, a
# crash) leaves its watches on the control objects for osd_client_watch_timeout
# (30 s); until then every metadata change (bucket create/delete, user edits)
# of the next radosgw waits 10 s per notify for the dead watcher. None of our
# radosgw runs when this is called, so every watcher there is a dead one:
# blocklisting its address makes the OSD drop its watches at once.
drop_stale_rgw_watchers() {
  local addrs addr
  addrs=$(timeout "$CLI_TIMEOUT" rados -c "$CONF" -p default.rgw.control listwatchers notify.0 2>/dev/null |
    sed -n 's/^watcher=\([^ ]*\) .*/\1/p' | sort -u) || return 0
  for addr in $addrs; do
    log "blocklisting $addr, a dead radosgw's lingering watch"
    ceph_cli osd blocklist add "$addr" 600 >/dev/null 2>&1 || log "warning: could not blocklist $addr"
  done
}

start_rgw() {
  local p
  for p in "$RGW_PORT" "$TLS_PORT"; do
    if port_busy "$p"; then
      die "port 127.0.0.1:$p is in use by another process"
    fi
  done
  drop_stale_rgw_watchers
  launch rgw radosgw -f -c "$CONF" -n "$RGW_NAME"
  wait_until rgw "$START_TIMEOUT" "radosgw to answer HTTP on $(endpoint)" rgw_answers
  wait_until rgw "$START_TIMEOUT" "radosgw to answer HTTPS on $(tls_endpoint)" tls_answers
}

# ------------------------------------------------------------------ commands

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do
    daemon_pid "$d" >/dev/null || return 1
  done
}

# Runs on exit of `start` and `restart-rgw`: when they fail, the daemons they
# started are stopped again, so that a failed start leaves no process behind.
START_OK=0
cleanup_failed_start() {
  local i
  [ "$START_OK" -eq 0 ] || return 0
  [ "${#STARTED[@]}" -gt 0 ] || return 0
  log "start failed: stopping the daemons this attempt started (data stays; logs in $LOGDIR)"
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    stop_daemon "${STARTED[i]}" || true
  done
}

lock_dir() {
  exec 9>"$DIR/.lock"
  flock -w "$START_TIMEOUT" 9 || die "another ceph-rgw.sh holds $DIR/.lock"
}

cmd_start() {
  local port_arg="" osd_size_arg="" fresh=0
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --port) [ "$#" -ge 2 ] || usage_error "--port needs a value"; port_arg=$2; shift ;;
      --port=*) port_arg=${1#--port=} ;;
      --osd-size) [ "$#" -ge 2 ] || usage_error "--osd-size needs a value"; osd_size_arg=$2; shift ;;
      --osd-size=*) osd_size_arg=${1#--osd-size=} ;;
      *) usage_error "start: unknown argument '$1'" ;;
    esac
    shift
  done
  if [ -n "$port_arg" ]; then
    if ! [[ $port_arg =~ ^[0-9]+$ ]] || [ "$port_arg" -lt 1 ] || [ "$port_arg" -gt 65535 ]; then
      usage_error "--port: '$port_arg' is not a port number"
    fi
  fi
  if [ -n "$osd_size_arg" ]; then
    [[ $osd_size_arg =~ ^[0-9]+[KMGT]?$ ]] || usage_error "--osd-size: '$osd_size_arg' is not a size like 8G"
    [ "$(numfmt --from=iec "$osd_size_arg")" -ge $((2 * 1024 * 1024 * 1024)) ] ||
      usage_error "--osd-size: bluestore needs at least 2G"
  fi
  local bin
  for bin in ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool rados curl flock setsid numfmt uuidgen openssl; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin not found: run scripts/install-deps.sh"
  done

  if [ -e "$DIR" ] && [ ! -f "$STATE" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists, is not empty and holds no ceph-rgw.sh cluster; pick another dir"
  fi
  mkdir -p "$DIR"
  lock_dir

  if load_state && all_running; then
    if [ "$(daemon_state rgw)" = paused ]; then
      die "radosgw of $DIR is paused (SIGSTOP): run scripts/ceph-rgw.sh resume-rgw $DIR"
    fi
    [ -z "$port_arg" ] || [ "$port_arg" = "$RGW_PORT" ] ||
      die "the cluster in $DIR already runs with RGW on port $RGW_PORT; stop it first to change the port"
    wait_until rgw "$START_TIMEOUT" "a signed S3 answer from $(endpoint)" s3_answers
    log "already running in $DIR (checked in $(elapsed) s)"
    env_line >"$ENV_FILE"
    cat "$ENV_FILE"
    return 0
  fi

  # Starting several clusters at once (one per data dir) must not pick the
  # same free ports: serialize the whole start across data dirs.
  exec 8>/tmp/wavefs-ceph-rgw-start.lock
  flock -w $((START_TIMEOUT * 3)) 8 || die "another ceph-rgw.sh start holds /tmp/wavefs-ceph-rgw-start.lock"
  trap cleanup_failed_start EXIT

  mkdir -p "$LOGDIR" "$PIDDIR" "$DIR/mon" "$DIR/osd" "$DIR/rgw" "$DIR/crash"
  ensure_sockdir

  if ! load_state; then
    fresh=1
    FSID=$(uuidgen)
    MON_PORT=$(free_port "$DEFAULT_MON_PORT")
    RGW_PORT=""
    OSD_SIZE=${osd_size_arg:-$DEFAULT_OSD_SIZE}
    OSD_ID=0
    OSD_UUID=$(uuidgen)
    OSD_SECRET=$(ceph-authtool --gen-print-key)
    ACCESS_KEY=WAVEFS$(openssl rand -hex 7 | tr 'a-f' 'A-F')
    SECRET_KEY=$(openssl rand -hex 20)
    log "creating a new cluster in $DIR"
  elif [ -n "$osd_size_arg" ] && [ "$osd_size_arg" != "$OSD_SIZE" ]; then
    log "note: --osd-size $osd_size_arg ignored, the OSD in $DIR was created with $OSD_SIZE"
  fi

  if ! daemon_pid rgw >/dev/null; then
    if [ -n "$port_arg" ]; then
      if port_busy "$port_arg"; then
        die "port 127.0.0.1:$port_arg (--port) is in use by another process"
      fi
      RGW_PORT=$port_arg
    else
      local want=${RGW_PORT:-$DEFAULT_RGW_PORT}
      RGW_PORT=$(free_port "$want")
      [ "$RGW_PORT" = "$want" ] || log "port $want is in use: RGW uses port $RGW_PORT instead"
    fi
    # HTTPS on the next free port above RGW's (RGW's own port is free now).
    local tls_want=${TLS_PORT:-$((RGW_PORT + 1))}
    [ "$tls_want" != "$RGW_PORT" ] || tls_want=$((RGW_PORT + 1))
    TLS_PORT=$(free_port "$tls_want")
    [ "$TLS_PORT" != "$RGW_PORT" ] || TLS_PORT=$(free_port $((RGW_PORT + 1)))
  fi
  save_state
  make_tls_cert
  write_conf

  [ -f "$DIR/.created-mon" ] || create_mon
  daemon_pid mon >/dev/null || start_mon
  [ -f "$DIR/.created-osd" ] || create_osd
  daemon_pid osd >/dev/null || start_osd
  [ -f "$DIR/.created-rgw" ] || create_rgw_key
  daemon_pid rgw >/dev/null || start_rgw
  [ -f "$DIR/.created-user" ] || create_user
  wait_until rgw "$START_TIMEOUT" "a signed S3 answer from $(endpoint)" s3_answers

  env_line >"$ENV_FILE"
  START_OK=1
  if [ "$fresh" -eq 1 ]; then
    log "new cluster up in $(elapsed) s: S3 at $(endpoint), data in $DIR"
  else
    log "cluster up in $(elapsed) s (existing data): S3 at $(endpoint), data in $DIR"
  fi
  cat "$ENV_FILE"
}

cmd_stop() {
  local i
  [ -d "$DIR" ] || { log "$DIR does not exist: nothing to stop"; return 0; }
  [ -f "$STATE" ] || { log "no cluster in $DIR: nothing to stop"; return 0; }
  lock_dir
  load_state
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[i]}"
  done
  wait_reaped
  rm -f "$ENV_FILE"
  if [ "$SOCKDIR" != "$PIDDIR" ]; then
    rm -rf "$SOCKDIR"
  fi
  [ "${1:-}" = quiet ] || log "stopped in $(elapsed) s (data kept in $DIR)"
}

cmd_destroy() {
  [ -e "$DIR" ] || { log "$DIR does not exist: nothing to destroy"; rm -rf "$SOCKDIR"; return 0; }
  if [ ! -f "$STATE" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR holds no ceph-rgw.sh cluster (no $STATE): not removing it"
  fi
  cmd_stop quiet
  rm -rf "$SOCKDIR" "$DIR"
  log "destroyed $DIR"
}

cmd_env() {
  load_state || die "no cluster in $DIR (run: scripts/ceph-rgw.sh start $DIR)"
  # Started = `start` succeeded and no `stop` since; a radosgw killed or
  # paused by the fault helpers does not count as stopped.
  if [ ! -f "$ENV_FILE" ] || ! daemon_pid mon >/dev/null; then
    die "the cluster in $DIR is not started (run: scripts/ceph-rgw.sh start $DIR)"
  fi
  cat "$ENV_FILE"
}

cmd_status() {
  local d state pid ok=1 health
  load_state || { echo "no cluster in $DIR"; return 1; }
  printf '%-16s %s\n' "dir:" "$DIR"
  for d in "${DAEMONS[@]}"; do
    state=$(daemon_state "$d")
    pid=$(daemon_pid "$d") || pid=""
    printf '%-16s %s%s\n' "$(daemon_name "$d"):" "$state" "${pid:+ (pid $pid)}"
    [ "$state" = running ] || ok=0
  done
  printf '%-16s %s\n' "mon:" "[v2:127.0.0.1:$MON_PORT]"
  printf '%-16s %s\n' "S3 endpoint:" "$(endpoint)"
  printf '%-16s %s\n' "S3 over TLS:" "$(tls_endpoint) (trust $TLS_CERT)"
  printf '%-16s %s\n' "osd file:" "$DIR/osd/$OSD_ID/block ($OSD_SIZE sparse, $(du -sh "$DIR/osd/$OSD_ID/block" 2>/dev/null | cut -f1 || echo '?') used)"
  if daemon_pid mon >/dev/null; then
    health=$(CLI_TIMEOUT=10 ceph_cli health 2>/dev/null) || health="(no answer from the mon in 10 s)"
    printf '%-16s %s\n' "health:" "$health"
  fi
  [ "$ok" -eq 1 ]
}

need_rgw_pid() {
  load_state || die "no cluster in $DIR"
  daemon_pid rgw || die "radosgw of $DIR is not running"
}

cmd_pause_rgw() {
  local pid
  pid=$(need_rgw_pid)
  kill -STOP "$pid"
  log "radosgw (pid $pid) paused (SIGSTOP); resume with: scripts/ceph-rgw.sh resume-rgw $DIR"
}

cmd_resume_rgw() {
  local pid
  pid=$(need_rgw_pid)
  kill -CONT "$pid"
  log "radosgw (pid $pid) resumed (SIGCONT)"
}

cmd_kill_rgw() {
  local pid deadline
  pid=$(need_rgw_pid)
  lock_dir
  kill -KILL "$pid"
  deadline=$((SECONDS + 10))
  while daemon_pid rgw >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "radosgw (pid $pid) still there 10 s after SIGKILL"
    sleep 0.1
  done
  rm -f "$(pid_file rgw)" "$SOCKDIR/$RGW_NAME.asok"
  log "radosgw (pid $pid) killed (SIGKILL)"
}

cmd_restart_rgw() {
  load_state || die "no cluster in $DIR"
  lock_dir
  if ! daemon_pid mon >/dev/null || ! daemon_pid osd >/dev/null; then
    die "mon and osd of $DIR must run to restart radosgw (use: scripts/ceph-rgw.sh start $DIR)"
  fi
  stop_daemon rgw
  ensure_sockdir
  trap cleanup_failed_start EXIT
  start_rgw
  wait_until rgw "$START_TIMEOUT" "a signed S3 answer from $(endpoint)" s3_answers
  START_OK=1
  log "radosgw restarted in $(elapsed) s: S3 at $(endpoint)"
}

# ---------------------------------------------------------------------- main

[ "$#" -ge 1 ] || { usage >&2; exit 2; }
case "$1" in
  -h|--help|help) usage; exit 0 ;;
esac
cmd=$1
shift
[ "$#" -ge 1 ] || usage_error "$cmd: missing DIR"
set_paths "$1"
shift
if [ "$cmd" != start ] && [ "$#" -gt 0 ]; then
  usage_error "$cmd: unexpected argument '$1'"
fi
case "$cmd" in
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) cmd_status ;;
  destroy) cmd_destroy ;;
  pause-rgw) cmd_pause_rgw ;;
  resume-rgw) cmd_resume_rgw ;;
  kill-rgw) cmd_kill_rgw ;;
  restart-rgw) cmd_restart_rgw ;;
  *) usage_error "unknown command '$cmd'" ;;
esac
