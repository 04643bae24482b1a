#!/usr/bin/env bash
# Bad command lines: a non-zero exit, exactly one non-empty line on stderr,
# and no daemon or mount left behind. --help works on every command.
source "$(dirname "$0")/lib.sh"

# no_leftovers WHAT: nothing mounted under $T but the expected mounts, and no
# process started from $T except the known daemons.
no_leftovers() {
  local what=$1 m p known
  while read -r m; do
    [ -n "$m" ] || continue
    [ "$m" = "$MNT" ] && [ -n "${DAEMON_PID:-}" ] && continue
    fail "$what left a mount behind at $m"
  done < <(mounts_under_t)
  sleep 0.2
  while read -r p; do
    [ -n "$p" ] || continue
    known=0
    [ "$p" = "${DAEMON_PID:-}" ] && known=1
    [ "$known" -eq 1 ] && continue
    fail "$what left a process behind: pid $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
  done < <(pids_under_t)
}

# bad DESCRIPTION ARGS...: wavefs ARGS must fail with one line on stderr.
bad() {
  local desc=$1 rc=0 lines
  shift
  timeout 60 "$WAVEFS_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  if [ "$rc" -eq 0 ]; then
    fail "$desc: 'wavefs $*' exited 0"
  fi
  [ "$rc" -eq 124 ] && fail "$desc: 'wavefs $*' hung (killed after 60 s)"
  lines=$(wc -l <"$T/err")
  # A final line without a newline still counts as a line.
  [ -s "$T/err" ] && [ -n "$(tail -c 1 "$T/err")" ] && lines=$((lines + 1))
  if [ "$lines" -ne 1 ] || [ -z "$(tr -d '[:space:]' <"$T/err")" ]; then
    echo "---- stderr ($lines lines) ----" >&2
    head -n 20 "$T/err" >&2
    fail "$desc: expected exactly one non-empty line on stderr"
  fi
  no_leftovers "$desc"
  pass "$desc: exit $rc, stderr: $(cat "$T/err")"
}

# good_help ARGS...: prints usage on stdout and exits 0.
good_help() {
  local rc=0
  timeout 30 "$WAVEFS_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || fail "'wavefs $*' exited $rc: $(head -n 3 "$T/err")"
  [ -s "$T/out" ] || fail "'wavefs $*' printed nothing on stdout"
  pass "'wavefs $*' prints help"
}

good_help --help
good_help init --help
good_help mount --help
good_help unmount --help

bad "no arguments"
bad "unknown command" frobnicate
bad "init without a store" init

mkdir -p "$T/notastore" "$T/m1"
bad "mount of a directory that is not a store" mount "$T/notastore" "$T/m1"
bad "mount of a store that does not exist" mount "$T/nothing-here" "$T/m1"

wfs_init
bad "init over an existing store" init "$STORE"
bad "mount with a mountpoint that does not exist" mount "$STORE" "$T/no-such-dir"
bad "mount with an unknown option" mount "$STORE" "$T/m1" --no-such-option
bad "mount with a missing option value" mount "$STORE" "$T/m1" --spill-dir
bad "mount with a missing key file" mount "$STORE" "$T/m1" --key-file "$T/no-such-key"
bad "mount with too many arguments" mount "$STORE" "$T/m1" extra-arg
bad "mount with a --page-out that is not a size" mount "$STORE" "$T/m1" --page-out lots
bad "mount with a --page-out under one chunk" mount "$STORE" "$T/m1" --page-out 1M
bad "mount with a negative --attr-timeout" mount "$STORE" "$T/m1" --attr-timeout -1
bad "mount with an --attr-timeout over a day" mount "$STORE" "$T/m1" --attr-timeout 90000
bad "mount with a negative --small-upload-threads" mount "$STORE" "$T/m1" --small-upload-threads -1
bad "mount with --small-upload-threads over 64" mount "$STORE" "$T/m1" --small-upload-threads 65
bad "unmount of a directory that is not mounted" unmount "$T/m1"

# The default key file moved away.
key=$(find "$WAVEFS_HOME" -name key -type f | head -n 1)
[ -n "$key" ] || fail "wavefs init made no key file under WAVEFS_HOME=$WAVEFS_HOME"
expect_eq "key file mode" 600 "$(stat -c %a "$key")"
mv "$key" "$key.away"
bad "mount when the default key file is missing" mount "$STORE" "$T/m1"
mv "$key.away" "$key"

# init --key-file writes the secret where it is told, 0600.
STORE_B=$T/store-b
timeout 60 "$WAVEFS_BIN" init "$STORE_B" --key-file "$T/key-b" >/dev/null 2>&1 ||
  fail "wavefs init $STORE_B --key-file $T/key-b failed"
[ -f "$T/key-b" ] || fail "init --key-file did not write $T/key-b"
expect_eq "--key-file mode" 600 "$(stat -c %a "$T/key-b")"

# A second mount of a mounted store (same metadata dir) is refused.
wfs_mount
echo data >"$MNT/file"
bad "second mount of the same store" mount "$STORE" "$T/m1"
# ... also with a metadata directory of its own: the spill is locked too.
bad "second daemon on the same spill directory" mount "$STORE" "$T/m1" \
  --meta-dir "$T/meta2" --spill-dir "$SPILL_DIR"
grep -q "spill directory" "$T/err" || fail "the refusal does not name the spill directory: $(cat "$T/err")"
# Another store on the same mount point would hide the first one's files.
bad "a mount on top of a live mount" mount "$STORE_B" "$MNT" --key-file "$T/key-b"
grep -q "already a mount point" "$T/err" || fail "the refusal does not say why: $(cat "$T/err")"
expect_eq "one mount at the mount point after the refusal" 1 \
  "$(awk -v m="$MNT" '$5 == m' /proc/self/mountinfo | wc -l)"
expect_eq "first mount still works after the refused ones" data "$(cat "$MNT/file")"
wfs_unmount
no_leftovers "unmount"

bad "unmount of a mountpoint already unmounted" unmount "$MNT"

# A metadata directory other users can read (it holds every chunk key).
mkdir -p "$T/meta-open"
chmod 755 "$T/meta-open"
bad "metadata directory open to others" mount "$STORE" "$T/m1" --meta-dir "$T/meta-open"
grep -q "chmod 700" "$T/err" || fail "no chmod hint: $(cat "$T/err")"

# The store made with --key-file mounts with it.
STORE=$STORE_B wfs_mount --key-file "$T/key-b"
echo b-data >"$MNT/file-b"
wfs_unmount
STORE=$STORE_B wfs_mount --key-file "$T/key-b"
expect_eq "store mounted with --key-file keeps its data" b-data "$(cat "$MNT/file-b")"
wfs_unmount
