#!/usr/bin/env bash
# Installs the Debian packages wavefs needs to build, test and benchmark.
# Idempotent: does nothing when every package is already installed; runs
# `apt-get update` at most once, and only when an install needs it.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake g++ pkg-config
  # libraries
  libfuse3-dev libsodium-dev librocksdb-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libcurl4-openssl-dev libssl-dev libcli11-dev
  libmount-dev
  # runtime and test tools
  fuse3 attr rsync clang-format coreutils diffutils findutils grep util-linux procps psmisc
  # man pages from docs/*.md (packaging/CMakeLists.txt); chattr (e2fsprogs) for it_fstab
  go-md2man e2fsprogs
  openssl python3 curl
  # a real S3 server on loopback for integration tests (scripts/ceph-rgw.sh):
  # single-node Ceph mon + OSD + RGW, no ceph-mgr, no systemd
  ceph-mon ceph-osd radosgw
  # benchmark peers that mount the same S3 bucket (both in Debian 12's archive)
  s3fs rclone
)

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available; install as root: ${missing[*]}"
  SUDO=(sudo)
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found (wavefs's scripts target Debian 12)"

export DEBIAN_FRONTEND=noninteractive
APT_LOG=$(mktemp "${TMPDIR:-/tmp}/wavefs-apt.XXXXXX")
trap 'rm -f "$APT_LOG"' EXIT

apt_update() {
  log "apt-get update"
  if ! "${SUDO[@]}" apt-get update -qq >"$APT_LOG" 2>&1; then
    cat "$APT_LOG" >&2
    die "apt-get update failed"
  fi
}

apt_install() {
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$APT_LOG" 2>&1
}

# Package lists are needed when none were ever fetched; otherwise try the
# install first and refresh the lists only if that fails (stale lists).
updated=0
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  apt_update
  updated=1
fi

log "installing: ${missing[*]}"
if ! apt_install; then
  if [ "$updated" -eq 0 ]; then
    apt_update
    apt_install || { cat "$APT_LOG" >&2; die "apt-get install failed for: ${missing[*]}"; }
  else
    cat "$APT_LOG" >&2
    die "apt-get install failed for: ${missing[*]}"
  fi
fi
log "done"
