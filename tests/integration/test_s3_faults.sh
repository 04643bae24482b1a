#!/usr/bin/env bash
# Store faults for real, on Ceph RGW (S3 runs only: WAVEFS_IT_STORE=s3 and
# WAVEFS_RGW_DIR, as tests/s3/with_rgw.sh sets them):
# - radosgw paused (SIGSTOP) in the middle of a 256 MiB upload, resumed
#   (SIGCONT) 6 s later: the copy finishes, chunks are pending while it is
#   paused (checked: the fault really hit the upload), `wavefs unmount`
#   returns with every chunk in the bucket, and the file reads back equal;
# - radosgw killed (SIGKILL) mid-upload and restarted: the same;
# - wrong credentials, a missing bucket and an unreachable endpoint at
#   mount: one line on stderr, non-zero exit, no daemon left.
# It stops the server other tests use: CTest runs it alone (RUN_SERIAL).
source "$(dirname "$0")/lib.sh"

[ -n "$IT_S3_BUCKET" ] || fail "run with WAVEFS_IT_STORE=s3 (tests/s3/with_rgw.sh)"
[ -n "${WAVEFS_RGW_DIR:-}" ] || fail "WAVEFS_RGW_DIR is not set (tests/s3/with_rgw.sh sets it)"
RGW=$(cd "$(dirname "$0")/../.." && pwd)/scripts/ceph-rgw.sh
resume_on_exit() { "$RGW" resume-rgw "$WAVEFS_RGW_DIR" >/dev/null 2>&1 || true; }

# wait_uploaded N: until the daemon has uploaded at least N chunks.
wait_uploaded() {
  local n=$1 deadline=$(( $(date +%s) + 120 ))
  until [ "$(stat_get uploaded_chunks)" -ge "$n" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "fewer than $n chunks uploaded after 120 s"
    sleep 0.1
  done
}

wfs_init
wfs_mount
make_random "$SRC/big" 256M s3f-big
make_random "$SRC/second" 128M s3f-second

# ------------------------------------------------------------ pause
cp "$SRC/big" "$MNT/big" &
cp_pid=$!
wait_uploaded 2
trap 'resume_on_exit; it_cleanup' EXIT
check "pause radosgw" "$RGW" pause-rgw "$WAVEFS_RGW_DIR"
paused_at=$(date +%s)
wait "$cp_pid" || fail "cp failed while radosgw was paused"
pass "cp of 256 MiB finished while radosgw was paused"
pending=$(stat_get pending_chunks)
expect_lt "chunks were pending while paused (the fault hit the upload)" 0 "$pending"
sleep $(( 6 - ($(date +%s) - paused_at) > 0 ? 6 - ($(date +%s) - paused_at) : 0 ))
check "resume radosgw" "$RGW" resume-rgw "$WAVEFS_RGW_DIR"
wfs_unmount
expect_le "every chunk of big in the bucket" 64 "$(store_chunk_count)"
wfs_mount
drop_caches
check "big reads back equal after the pause" cmp "$SRC/big" "$MNT/big"

# ------------------------------------------------------------ kill
before=$(stat_get uploaded_chunks)
cp "$SRC/second" "$MNT/second" &
cp_pid=$!
wait_uploaded $((before + 2))
check "kill radosgw" "$RGW" kill-rgw "$WAVEFS_RGW_DIR"
wait "$cp_pid" || fail "cp failed while radosgw was down"
pass "cp of 128 MiB finished while radosgw was down"
expect_lt "chunks were pending while radosgw was down" 0 "$(stat_get pending_chunks)"
sleep 3
check "restart radosgw" "$RGW" restart-rgw "$WAVEFS_RGW_DIR"
wfs_unmount
expect_le "every chunk in the bucket" 96 "$(store_chunk_count)"
wfs_mount
drop_caches
check "second reads back equal after the restart" cmp "$SRC/second" "$MNT/second"
check "big still equal" cmp "$SRC/big" "$MNT/big"
wfs_unmount
trap it_cleanup EXIT

# ------------------------------------------------------------ bad mounts
MOUNT_ARGS=("$STORE" "$MNT")
mount_fails "wrong secret key" AWS_SECRET_ACCESS_KEY=wrong-secret
mount_fails "unknown access key" AWS_ACCESS_KEY_ID=NOSUCHKEY
MOUNT_ARGS=("s3://wavefs-no-such-bucket/x?endpoint=$WAVEFS_S3_ENDPOINT" "$MNT")
mount_fails "missing bucket" A=1
MOUNT_ARGS=("s3://$IT_S3_BUCKET/store?endpoint=http://127.0.0.1:9" "$MNT")
mount_fails "unreachable endpoint" A=1
