#!/usr/bin/env bash
# Builds wavefs (Release) and installs it with `cmake --install`:
#   <prefix>/bin/wavefs, /sbin/{mount,umount}.fuse.wavefs (links to it, where
#   mount(8) looks), <prefix>/lib/systemd/system/wavefs@.service, the man
#   pages wavefs(1) and mount.fuse.wavefs(8), an example unit config.
#
#   scripts/install.sh                          # prefix /usr/local
#   scripts/install.sh --prefix /usr            # distribution layout
#   scripts/install.sh --destdir /tmp/stage     # staged (packaging); no daemon-reload
#   scripts/install.sh --build-dir DIR          # default build-release/
# Safe to run again: files are replaced.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=/usr/local
destdir=""
build_dir=$ROOT/build-release

usage() { echo "usage: scripts/install.sh [--prefix DIR] [--destdir DIR] [--build-dir DIR]"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix|--destdir|--build-dir)
      [ "$#" -ge 2 ] || { echo "install.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --prefix) prefix=$2 ;;
        --destdir) destdir=$2 ;;
        --build-dir) build_dir=$2 ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' ($(usage))" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (the helpers go to /sbin), or stage with --destdir" >&2
  exit 1
fi

"$ROOT/scripts/install-deps.sh"
"$ROOT/scripts/build.sh" --build-dir "$build_dir" --build-type Release
DESTDIR=$destdir cmake --install "$build_dir" --prefix "$prefix"

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
cat <<TXT
install.sh: installed wavefs under ${destdir}${prefix}.
  wavefs --help; man wavefs; man mount.fuse.wavefs
  mount -t fuse.wavefs STORE MOUNTPOINT -o spill-dir=...     # or an /etc/fstab line
  systemctl enable --now "wavefs@\$(systemd-escape --path /mnt/wavefs).service"
                                       # with /etc/wavefs/mnt-wavefs.conf (see ${prefix}/share/doc/wavefs/)
TXT
