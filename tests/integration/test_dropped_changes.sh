#!/usr/bin/env bash
# When a failed commit drops a file's changes, no reader keeps seeing them:
# not one that opens the file afterwards, and not one that had it open all
# along (the kernel's cached pages are invalidated). The commit is made to
# fail by taking the spill directory away (after everything was uploaded)
# between a writer's writes and its close.
source "$(dirname "$0")/lib.sh"

wfs_init
make_random "$SRC/a" 8M dropped-a
make_random "$SRC/patch" 1M dropped-patch
wfs_mount
check "cp a into the mount" cp "$SRC/a" "$MNT/a"
wait_uploaded "a is uploaded"

# A reader holds a open and has read the range [2 MiB, 3 MiB) (so the kernel
# caches it); it reads the range again through the same descriptor when
# told to, and checks it equals the source.
mkfifo "$T/go" "$T/ready"
python3 - "$MNT/a" "$SRC/a" "$T/go" "$T/ready" >"$T/reader.out" 2>&1 <<'PY' &
import os, sys
path, src, go, ready = sys.argv[1:5]
fd = os.open(path, os.O_RDONLY)
want = open(src, 'rb').read()[2 << 20:3 << 20]
assert os.pread(fd, 1 << 20, 2 << 20) == want, "first read differs"
open(ready, 'w').close()
open(go).read()
got = os.pread(fd, 1 << 20, 2 << 20)
print("same" if got == want else "STALE")
PY
reader=$!
cat "$T/ready" >/dev/null

# The writer dirties the chunk while the spill is there, so its writes
# succeed; then the spill goes, and the commit at close fails. It writes
# into a second chunk too: a close whose writes are all in one chunk may
# commit them as tail-journal records instead of sealing (when a was
# committed within --tail-hold and they fit the journal's bound), and
# then nothing fails; the outcome must not hang on how fast cp was.
python3 - "$MNT/a" "$SRC/patch" "$SPILL_DIR" >"$T/writer.out" 2>&1 <<'PY' || fail "writer: $(cat "$T/writer.out")"
import os, shutil, sys
path, patch, spill = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY)
os.pwrite(fd, b"x", 2 << 20)
os.pwrite(fd, b"y", 6 << 20)
shutil.rmtree(spill)
data = open(patch, 'rb').read()
assert os.pwrite(fd, data, 2 << 20) == len(data), "short write"
try:
    os.close(fd)
    print("close succeeded")
except OSError as e:
    print("close failed:", e.strerror)
os.makedirs(spill)
PY
case "$(cat "$T/writer.out")" in
  "close failed:"*) pass "the writes succeeded and the commit at close failed ($(cat "$T/writer.out"))" ;;
  *) fail "expected the commit at close to fail, got: $(cat "$T/writer.out")" ;;
esac
# The daemon sends the invalidation from a thread of its own.
for _ in $(seq 1 100); do
  [ "$(stat_get kernel_invalidations)" -ge 1 ] && break
  sleep 0.1
done
expect_le "the daemon told the kernel to drop a's pages" 1 "$(stat_get kernel_invalidations)"
echo go >"$T/go"
wait "$reader" || fail "the reader failed: $(cat "$T/reader.out")"
expect_eq "a reader open all along sees a's committed bytes" same "$(cat "$T/reader.out")"
check "a new open sees a's committed bytes" cmp "$SRC/a" "$MNT/a"
wfs_unmount
wfs_mount
check "a equals the source after a remount" cmp "$SRC/a" "$MNT/a"
wfs_unmount
