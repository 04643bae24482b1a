#!/usr/bin/env bash
# One command from a fresh clone to a working mount:
# installs packages, builds, creates a local store at ./.wavefs-store (once)
# and mounts it at ./mnt. Safe to run again: an existing mount is left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STORE=$ROOT/.wavefs-store
MNT=$ROOT/mnt
BIN=$ROOT/build/wavefs

mounted() { awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

usage_text() {
  cat <<TXT

wavefs is mounted at ./mnt (store: ./.wavefs-store).
  cp -r ~/videos ./mnt/                  # upload: chunked, encrypted, staged, flushed in waves
  cmp ~/videos/a.mkv ./mnt/videos/a.mkv  # read back (fetches only the chunks it needs)
  getfattr --only-values -n user.wavefs.stats ./mnt   # counters: pending chunks, puts, gets
  build/wavefs unmount ./mnt             # returns once every pending wave is in the store
Run scripts/run.sh again to mount it again later.
TXT
}

if mounted; then
  if stat "$MNT" >/dev/null 2>&1; then
    echo "run.sh: ./mnt is already mounted; nothing to do."
    usage_text
    exit 0
  fi
  echo "run.sh: ./mnt is a dead mount (its daemon is gone); unmounting it first"
  fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" || umount -l "$MNT"
fi

scripts/install-deps.sh
scripts/build.sh

if [ -f "$STORE/wavefs-store.conf" ]; then
  echo "run.sh: using the existing store $STORE"
else
  echo "run.sh: creating a store at $STORE"
  "$BIN" init "$STORE"
fi

mkdir -p "$MNT"
"$BIN" mount "$STORE" "$MNT"
usage_text
