#!/usr/bin/env bash
# S3 endpoints other than path-style plain HTTP (S3 runs only:
# tests/s3/with_rgw.sh), on the same Ceph RGW:
# HTTPS. scripts/ceph-rgw.sh serves RGW on an https port with a self-signed
# certificate ($WAVEFS_S3_TLS_ENDPOINT, $WAVEFS_S3_CA_FILE), as a private
# MinIO or Ceph does:
# - init and mount with ca_file= in the store URL; a 96 MiB file and a small
#   one copied in; `wavefs unmount` returns with every chunk in the bucket
#   (listed over plain HTTP: the same objects);
# - init over TLS writes chunk format 4 (its PUTs go without a payload hash
#   or an MD5 pass: TLS checks them), and every object in the bucket is
#   named by its format-4 address; with put_md5=1 init keeps format 3, and
#   a file goes in and back over TLS with the MD5/ETag check;
# - mounted again through the plain-http URL switched to https by
#   --s3-endpoint, trusted through $AWS_CA_BUNDLE instead of ca_file, the
#   page cache dropped: both read back equal, whole and a range in the
#   middle;
# - the system's CA bundle, a ca_file of another CA, and a ca_file that does
#   not exist: one line on stderr that names the cause, a non-zero exit and
#   no daemon left.
# Virtual-host style (path_style=0, as for AWS itself): BUCKET.localhost:PORT,
# which libcurl resolves to 127.0.0.1 and RGW (rgw dns name = localhost)
# maps to the bucket: a store made, written, and read back after a remount;
# its objects are in the bucket under its prefix (a path-style reading of
# those URLs would have named a bucket that does not exist).
source "$(dirname "$0")/lib.sh"

[ -n "$IT_S3_BUCKET" ] || fail "run with WAVEFS_IT_STORE=s3 (tests/s3/with_rgw.sh)"
for v in WAVEFS_S3_TLS_ENDPOINT WAVEFS_S3_CA_FILE; do
  [ -n "${!v:-}" ] || fail "$v is not set (scripts/ceph-rgw.sh's env line sets it)"
done
unset AWS_CA_BUNDLE
TLS_STORE="s3://$IT_S3_BUCKET/store?endpoint=$WAVEFS_S3_TLS_ENDPOINT"

STORE="$TLS_STORE&ca_file=$WAVEFS_S3_CA_FILE"
wfs_init
wfs_mount
make_random "$SRC/big" 96M tls-big
printf 'a small file, sent over TLS\n' >"$SRC/small"
check "cp 96 MiB over https" cp "$SRC/big" "$MNT/big"
check "cp a small file over https" cp "$SRC/small" "$MNT/small"
wfs_unmount
expect_le "every chunk (24 + 1) in the bucket" 25 "$(store_chunk_count)"
expect_eq "init over https writes chunk format" 4 "$(store_format)"
check_store_objects 4
expect_le "format-4 objects checked, each named by its address" 25 "$STORE_OBJECTS_CHECKED"

# The plain-http URL, switched to https by --s3-endpoint: the flag's
# endpoint decides TLS and that $AWS_CA_BUNDLE is trusted.
STORE="s3://$IT_S3_BUCKET/store?endpoint=$WAVEFS_S3_ENDPOINT"
export AWS_CA_BUNDLE=$WAVEFS_S3_CA_FILE
wfs_mount --s3-endpoint "$WAVEFS_S3_TLS_ENDPOINT"
unset AWS_CA_BUNDLE
drop_caches
check "big reads back equal (https by --s3-endpoint, trusted through AWS_CA_BUNDLE)" cmp "$SRC/big" "$MNT/big"
check "small reads back equal" cmp "$SRC/small" "$MNT/small"
drop_caches
check "a range in the middle reads back equal" cmp \
  <(dd if="$MNT/big" bs=64K skip=700 count=100 status=none) \
  <(dd if="$SRC/big" bs=64K skip=700 count=100 status=none)
expect_lt "reads went to the store" 0 "$(stat_get store_gets)"
# The daemon's own sockets (/proc/PID/fd) that are TCP connections to the
# https port (/proc/net/tcp: remote port in hex, state 01 = established).
tls_conns=$(python3 - "$DAEMON_PID" "${WAVEFS_S3_TLS_ENDPOINT##*:}" <<'PY'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
n = 0
for line in open(f"/proc/{pid}/net/tcp").readlines()[1:]:
    f = line.split()
    if int(f[2].split(":")[1], 16) == port and f[3] == "01" and f[9] in inodes:
        n += 1
print(n)
PY
)
expect_lt "the daemon's connections to the https port" 0 "$tls_conns"
wfs_unmount

# A CA that signed nothing the server holds.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$T/other.key" -out "$T/other.pem" -days 2 -subj "/CN=another CA" \
  2>/dev/null || fail "openssl could not make a certificate"

MOUNT_ARGS=("$TLS_STORE" "$MNT")
mount_fails "the system's CA bundle" A=1
grep -q "TLS certificate is not trusted; name the CA" "$T/err" || fail "the message does not say what to do: $(cat "$T/err")"
MOUNT_ARGS=("$TLS_STORE&ca_file=$T/other.pem" "$MNT")
mount_fails "a ca_file of another CA" A=1
grep -q "not trusted by ca_file $T/other.pem" "$T/err" || fail "the message does not name the ca_file: $(cat "$T/err")"
MOUNT_ARGS=("$TLS_STORE" "$MNT")
mount_fails "AWS_CA_BUNDLE of another CA" AWS_CA_BUNDLE="$T/other.pem"
grep -q "not trusted by ca_file $T/other.pem" "$T/err" || fail "the message does not name the bundle: $(cat "$T/err")"
MOUNT_ARGS=("$TLS_STORE&ca_file=$T/no-such.pem" "$MNT")
mount_fails "a ca_file that does not exist" A=1
grep -q "ca_file '$T/no-such.pem' cannot be read: No such file or directory" "$T/err" || fail "the message does not name the file: $(cat "$T/err")"

# The store is untouched by the failed mounts: it mounts and reads again.
STORE="$TLS_STORE&ca_file=$WAVEFS_S3_CA_FILE"
wfs_mount
check "big still equal" cmp "$SRC/big" "$MNT/big"
wfs_unmount

# put_md5=1 (a TLS proxy in front of a plain-HTTP server): init keeps
# format 3, whose PUTs the server checks against their signed SHA-256.
STORE="s3://$IT_S3_BUCKET/md5?endpoint=$WAVEFS_S3_TLS_ENDPOINT&ca_file=$WAVEFS_S3_CA_FILE&put_md5=1"
check "init with put_md5=1" "$WAVEFS_BIN" init "$STORE"
conf=$(s3_curl GET "$IT_S3_BUCKET/md5/wavefs-store.conf") || fail "cannot read md5/wavefs-store.conf"
grep -qx 'format=3' <<<"$conf" ||
  fail "init over https with put_md5=1 did not write format 3"
wfs_mount
make_random "$SRC/md5" 9M md5-file
check "cp 9 MiB with put_md5=1" cp "$SRC/md5" "$MNT/md5"
wfs_unmount
wfs_mount
drop_caches
check "it reads back equal with put_md5=1" cmp "$SRC/md5" "$MNT/md5"
wfs_unmount

# ------------------------------------------------------ virtual-host style
STORE="s3://$IT_S3_BUCKET/vhost?endpoint=http://localhost:${WAVEFS_S3_ENDPOINT##*:}&path_style=0"
check "init with virtual-host URLs" "$WAVEFS_BIN" init "$STORE"
conf=$(s3_curl GET "$IT_S3_BUCKET/vhost/wavefs-store.conf") || fail "cannot read vhost/wavefs-store.conf"
grep -qx 'format=3' <<<"$conf" ||
  fail "init over plain http did not write format 3"
s3_keys vhost/ | grep -qx 'vhost/wavefs-store.conf' ||
  fail "no vhost/wavefs-store.conf in bucket $IT_S3_BUCKET"
wfs_mount
make_random "$SRC/vh" 20M vhost-file
check "cp 20 MiB with virtual-host URLs" cp "$SRC/vh" "$MNT/vh"
wfs_unmount
expect_le "its 5 chunks are in the bucket under vhost/" 5 \
  "$(s3_keys vhost/chunks/ | grep -c '/[0-9a-f]\{64\}$' || true)"
wfs_mount
drop_caches
check "it reads back equal with virtual-host URLs" cmp "$SRC/vh" "$MNT/vh"
wfs_unmount
