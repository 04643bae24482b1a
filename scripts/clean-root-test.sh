#!/usr/bin/env bash
# Runs .ci/run (scripts/test.sh) N times in a clean Debian 12 root, as CI
# does on a clean machine: a minimal debootstrap tree, a fresh clone of the
# committed HEAD, and only what the project's scripts install.
#
#   scripts/clean-root-test.sh [--root DIR] [--runs N] [--same-clone]
#
# DIR (default /var/tmp/wavefs-cleanroot) is made with debootstrap when it
# does not exist (needs root and the debootstrap package; the script
# installs it). Each run gets a fresh clone; the root itself is reused so
# the packages are installed once. --same-clone clones once and runs
# .ci/run N times in that checkout: run 1 builds from nothing, runs 2..N
# find both builds up to date and only test (about 12 minutes instead of
# 19 here), all at the commit cloned first. Logs: DIR/run-K.log. Exits
# non-zero if any run failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=/var/tmp/wavefs-cleanroot
runs=1
same_clone=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --root) dir=$2; shift ;;
    --runs) runs=$2; shift ;;
    --same-clone) same_clone=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "clean-root-test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "clean-root-test.sh: needs root" >&2; exit 2; }

if [ ! -x "$dir/bin/bash" ]; then
  command -v debootstrap >/dev/null || apt-get install -y debootstrap >/dev/null ||
    { echo "clean-root-test.sh: cannot install debootstrap" >&2; exit 1; }
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian ||
    { echo "clean-root-test.sh: debootstrap failed" >&2; exit 1; }
fi

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -l "${mounted[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mkdir -p "$dir/$m"
  mount --bind "/$m" "$dir/$m" || { echo "cannot bind /$m" >&2; exit 1; }
  mounted+=("$dir/$m")
done
cp /etc/resolv.conf "$dir/etc/resolv.conf"
chroot "$dir" /bin/sh -c 'apt-get update -q >/dev/null && apt-get install -y -q git ca-certificates >/dev/null' ||
  { echo "clean-root-test.sh: cannot install git in the root" >&2; exit 1; }

failed=0
for ((k = 1; k <= runs; k++)); do
  if [ "$k" -eq 1 ] || [ "$same_clone" -eq 0 ]; then
    rm -rf "$dir/src"
    git clone -q "$ROOT" "$dir/src" || { echo "clone failed" >&2; exit 1; }
    echo "run $k: fresh clone of $(git -C "$dir/src" log -1 --format='%h %s' | cut -c1-72)"
  fi
  start=$(date +%s)
  chroot "$dir" /bin/bash -c 'cd /src && .ci/run' >"$dir/run-$k.log" 2>&1
  rc=$?
  summary=$(grep -E '^summary:' "$dir/run-$k.log" | tail -n 1)
  echo "run $k: exit $rc in $(($(date +%s) - start)) s; $summary"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
done
echo "clean-root-test.sh: $((runs - failed)) of $runs runs passed"
[ "$failed" -eq 0 ]
