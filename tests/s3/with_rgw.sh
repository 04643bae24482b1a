#!/usr/bin/env bash
# Runs a command against a real S3 server (Ceph RGW on 127.0.0.1):
#   tests/s3/with_rgw.sh CMD [ARGS...]
# When WAVEFS_S3_ENDPOINT is set (scripts/test.sh starts one cluster for the
# whole run and exports it, with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY),
# CMD runs against it. Otherwise a fresh cluster is started in a temporary
# directory with scripts/ceph-rgw.sh and destroyed afterwards, even when CMD
# fails. The S3 tests are never skipped: no server means a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ "$#" -ge 1 ] || { echo "usage: with_rgw.sh CMD [ARGS...]" >&2; exit 2; }

if [ -n "${WAVEFS_S3_ENDPOINT:-}" ]; then
  exec "$@"
fi

# One private cluster at a time (they would share the monitor's port).
exec 9>"${TMPDIR:-/tmp}/wavefs-with-rgw.lock"
flock 9
dir=$(mktemp -d "${WAVEFS_IT_TMP:-/var/tmp}/wavefs-rgw.XXXXXX")
cleanup() {
  "$ROOT/scripts/ceph-rgw.sh" destroy "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
if ! env_text=$("$ROOT/scripts/ceph-rgw.sh" start "$dir"); then
  echo "with_rgw.sh: cannot start Ceph RGW (scripts/ceph-rgw.sh start $dir failed)" >&2
  exit 1
fi
eval "$env_text"
export WAVEFS_RGW_DIR=$dir
rc=0
"$@" || rc=$?
exit "$rc"
