#!/usr/bin/env bash
# wavefs share / get / unshare: a file's data map as a .wfmap file. A file
# is copied into the mount and shared; `wavefs get` with nothing but the
# store location (another WAVEFS_HOME, no key, no mount) writes a copy equal
# to the source. A 5 GiB file (1280 chunk entries: far past the 64 KiB an
# xattr can carry, so user.wavefs.datamap says E2BIG) goes the same way,
# with random chunks, a repeated (deduplicated) chunk and a hole that stays
# a hole. A damaged or missing chunk makes get fail with one line naming the
# byte range, leaving no DEST. unshare releases a share once.
source "$(dirname "$0")/lib.sh"

GEN=$(dirname "$0")/share_gen.py
MiB=$((1024 * 1024))
# On S3 a 2.5 GiB file keeps the run short; its map (540 data entries, a
# 100-chunk hole) is still past the xattr limit.
if [ -n "$IT_S3_BUCKET" ] && [ -z "${SHARE_GEN_SIZE:-}" ]; then
  export SHARE_GEN_SIZE=$((2560 * MiB + 777))
fi
wfs_init
wfs_mount

# ---- a small file: 3 random chunks and a short tail
make_random "$SRC/small" $((12 * MiB + 4321)) share-small
check "copy the small file in" cp "$SRC/small" "$MNT/small"
check "wavefs share writes the map to stdout" \
  bash -c "'$WAVEFS_BIN' share '$MNT/small' > '$T/small.wfmap'"
expect_eq "the map starts with the .wfmap magic" "895746" \
  "$(head -c 3 "$T/small.wfmap" | od -An -tx1 | tr -d ' \n')"
get() { WAVEFS_HOME=$T/home2 timeout 600 "$WAVEFS_BIN" get "$@"; }
mkdir -p "$T/out"
check "wavefs get with only the store location" get "$T/small.wfmap" "$STORE" "$T/out/small"
check "the fetched file equals the source" cmp "$SRC/small" "$T/out/small"
rc=0
get "$T/small.wfmap" "$STORE" "$T/out/small" 2>"$T/err" || rc=$?
expect_eq "get refuses to replace an existing DEST" 1 "$rc"
check "get --force replaces it" get --force "$T/small.wfmap" "$STORE" "$T/out/small"

# ---- refusals of bad input
printf 'not a map' >"$T/bad.wfmap"
rc=0
get "$T/bad.wfmap" "$STORE" "$T/out/x" 2>"$T/err" || rc=$?
expect_eq "a file that is not a map is refused" 1 "$rc"
grep -q "bad magic" "$T/err" || fail "no 'bad magic' in: $(cat "$T/err")"
head -c -1 "$T/small.wfmap" >"$T/short.wfmap"
rc=0
get "$T/short.wfmap" "$STORE" "$T/out/x" 2>"$T/err" || rc=$?
expect_eq "a truncated map is refused" 1 "$rc"
[ ! -e "$T/out/x" ] || fail "a refused get left $T/out/x"
rc=0
"$WAVEFS_BIN" share "$SRC/small" >"$T/x.wfmap" 2>"$T/err" || rc=$?
expect_eq "share of a file outside a mount is refused" 1 "$rc"
grep -q "not in a wavefs mount" "$T/err" || fail "unexpected: $(cat "$T/err")"

# ---- a 5 GiB file (SHARE_GEN_SIZE may make it smaller; >= 1.8 GiB keeps
# it past the xattr limit)
check "write the big file into the mount" python3 "$GEN" write "$MNT/big"
rc=0
getfattr --only-values -n user.wavefs.datamap "$MNT/big" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "user.wavefs.datamap of the big file did not fail"
grep -qi "argument list too long" "$T/err" || fail "expected E2BIG, got: $(cat "$T/err")"
pass "user.wavefs.datamap of the big file is E2BIG"
check "share the big file (-o)" "$WAVEFS_BIN" share "$MNT/big" -o "$T/big.wfmap"
expect_eq "the map file is private" 600 "$(stat -c %a "$T/big.wfmap")"
map_bytes=$(file_size "$T/big.wfmap")
# user.wavefs.datamap carries the data map (the .wfmap less 104 bytes) as hex.
expect_lt "the map's xattr form is over 64 KiB" 65536 $((2 * (map_bytes - 104)))
check "wavefs get of the big file" get "$T/big.wfmap" "$STORE" "$T/out/big"
check "the fetched big file equals the source" \
  bash -c "cmp <(python3 '$GEN' stream) '$T/out/big'"
expect_eq "the fetched big file has the source's size" \
  "$(python3 "$GEN" stream | wc -c)" "$(file_size "$T/out/big")"
alloc=$(($(stat -c %b "$T/out/big") * 512))
expect_lt "the hole stays a hole in DEST" "$alloc" $(( $(file_size "$T/out/big") - 350 * MiB ))

# ---- a damaged chunk, then a missing one: one line naming the byte range,
# non-zero exit, no DEST and no temporary file left
addr=$(python3 - "$T/small.wfmap" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
m = b[72:]
count = int.from_bytes(m[16:24], 'little')
pos = 24
for _ in range(count):
    idx = int.from_bytes(m[pos:pos + 8], 'little'); kind = m[pos + 8]
    pos += 13
    if kind == 0:
        if idx == 1:
            print(m[pos:pos + 32].hex()); break
        pos += 64
PY
)
[ ${#addr} -eq 64 ] || fail "cannot find chunk 1's address in the map"
obj=store/chunks/${addr:0:2}/$addr
if [ -n "$IT_S3_BUCKET" ]; then
  s3_curl GET "$IT_S3_BUCKET/$obj" -o "$T/obj" || fail "cannot download $obj"
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[1000]^=1; open(p,'wb').write(b)" "$T/obj"
  s3_curl PUT "$IT_S3_BUCKET/$obj" --data-binary @"$T/obj" -o /dev/null || fail "cannot upload $obj"
else
  f=$(store_dir)/chunks/${addr:0:2}/$addr
  [ -f "$f" ] || fail "chunk file $f is missing"
  cp "$f" "$T/obj"
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[1000]^=1; open(p,'wb').write(b)" "$f"
fi
rc=0
get "$T/small.wfmap" "$STORE" "$T/out/damaged" 2>"$T/err" || rc=$?
expect_eq "get of a map with a damaged chunk fails" 1 "$rc"
expect_eq "one line of error" 1 "$(wc -l <"$T/err")"
grep -q "chunk 1 (bytes 4194304-8388607)" "$T/err" || fail "the error does not name the range: $(cat "$T/err")"
grep -q "damaged" "$T/err" || fail "unexpected: $(cat "$T/err")"
pass "the error names the damaged range: $(cat "$T/err")"
[ ! -e "$T/out/damaged" ] || fail "a failed get left DEST behind"
expect_eq "no temporary file left" "" "$(find "$T/out" -name '.*wavefs-get*')"
if [ -n "$IT_S3_BUCKET" ]; then
  s3_curl DELETE "$IT_S3_BUCKET/$obj" -o /dev/null
else
  rm -f "$f"
fi
rc=0
get "$T/small.wfmap" "$STORE" "$T/out/missing" 2>"$T/err" || rc=$?
expect_eq "get of a map with a missing chunk fails" 1 "$rc"
grep -q "chunk 1 (bytes 4194304-8388607) is missing" "$T/err" || fail "unexpected: $(cat "$T/err")"
[ ! -e "$T/out/missing" ] || fail "a failed get left DEST behind"
# Put the chunk back so the unmount's checks see a whole store.
if [ -n "$IT_S3_BUCKET" ]; then
  python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[1000]^=1; open(p,'wb').write(b)" "$T/obj"
  s3_curl PUT "$IT_S3_BUCKET/$obj" --data-binary @"$T/obj" -o /dev/null
else
  cp "$T/obj" "$f"
fi

# ---- unshare: each share once; a second share of the same file stays
check "share the small file a second time" "$WAVEFS_BIN" share "$MNT/small" -o "$T/small2.wfmap"
# A second mount whose daemon is killed stays as a dead mount (ENOTCONN): a
# crashed mount elsewhere on the machine must not hide the live mounts'
# answers from an unshare that searches them all.
mkdir -p "$T/mnt2"
check "init a second store" env WAVEFS_HOME="$T/home3" "$WAVEFS_BIN" init "$T/store2"
check "mount it" env WAVEFS_HOME="$T/home3" "$WAVEFS_BIN" mount "$T/store2" "$T/mnt2"
pid2=$(stat_get pid "$T/mnt2")
DAEMON_PIDS+=("$pid2")
kill -9 "$pid2"
wait_pid_exit "$pid2" 10 || fail "daemon $pid2 survived kill -9"
rc=0
stat "$T/mnt2" >/dev/null 2>"$T/err" || rc=$?
grep -q "not connected" "$T/err" || fail "the killed mount is not dead: rc $rc, $(cat "$T/err")"
pass "the second mount is dead after kill -9 of its daemon"
check "unshare the first map" "$WAVEFS_BIN" unshare "$T/small.wfmap"
rc=0
"$WAVEFS_BIN" unshare "$T/small.wfmap" 2>"$T/err" || rc=$?
expect_eq "a second unshare of it fails" 1 "$rc"
grep -q "no share" "$T/err" || fail "unexpected: $(cat "$T/err")"
grep -q "daemon gone, not searched: $T/mnt2" "$T/err" || fail "the dead mount is not named: $(cat "$T/err")"
expect_eq "one line of error" 1 "$(wc -l <"$T/err")"
id=$(python3 -c "import sys; print(open(sys.argv[1],'rb').read()[32:48].hex())" "$T/small2.wfmap")
check "unshare the second by id and mount" "$WAVEFS_BIN" unshare "$id" --mount "$MNT"
check "unshare the big file" "$WAVEFS_BIN" unshare "$T/big.wfmap"
check "unmount the dead mount" fusermount3 -u "$T/mnt2"
wfs_unmount
