#!/usr/bin/env bash
# A file that already exists, written all over through one open file (as
# fio, a torrent client or a database does): more chunks than the file may
# hold in buffers, so a chunk's buffer leaves memory before the close and
# is brought back by the next write to it: paged out (store/page_out.h,
# encrypted in a scratch file of the spill), or with --page-out 0 sealed
# and staged as a chunk. Every step reads back equal to a local copy
# written the same way; nothing goes up before the close (paged out) or
# the versions replaced before the close are dropped, never uploaded
# (sealed); the page-out file holds no plaintext; a writer killed before
# its close leaves the file as it was closed last; unmount and remount
# lose nothing.
source "$(dirname "$0")/lib.sh"

writer="$(dirname "$0")/random_writer.py"
wfs_init
# Holds longer than the test: only a replacement, a commit, a drain or a
# kill ends one, so what reaches the store does not depend on timing.
wfs_mount --tail-hold 3600
mkdir -p "$SRC"

# 10 chunks, copied in: uploaded as they are (a copy is never held).
make_random "$SRC/f" 40M 71
check "cp of a 40 MiB file" cp "$SRC/f" "$MNT/f"
wfs_unmount
expect_eq "chunks in the store after the copy" 10 "$(store_chunk_count)"
wfs_mount --tail-hold 3600

# 200 writes of 4 KiB-1 MiB at random offsets, through one open file.
check "200 random writes" python3 "$writer" 1 200 "$SRC/f" "$MNT/f"
check "the file reads back equal after the writes" cmp "$SRC/f" "$MNT/f"
page_outs=$(stat_get page_outs)
it_log "buffers paged out: $page_outs, versions replaced: $(stat_get superseded_chunks)"
expect_le "buffers paged out instead of sealed" 50 "$page_outs"
expect_eq "page-out slots in use after the close" 0 "$(stat_get page_slots)"
check "and again after a drop of the page cache" bash -c "echo 3 >/proc/sys/vm/drop_caches && cmp '$SRC/f' '$MNT/f'"
wfs_unmount
# The copy's 10 chunks plus at most one version of each chunk the writes
# touched (the old ones are gc's): nothing went up before the close.
expect_le "chunks in the store after the writes" "$(store_chunk_count)" 20
before=$(store_chunk_count)

# The same without paging: evicted buffers are sealed, held, and dropped
# when replaced.
wfs_mount --tail-hold 3600 --page-out 0
check "200 random writes, no paging" python3 "$writer" 4 200 "$SRC/f" "$MNT/f"
check "the file reads back equal after writes with no paging" cmp "$SRC/f" "$MNT/f"
superseded=$(stat_get superseded_chunks)
it_log "versions replaced before the close: $superseded"
expect_eq "buffers paged out with --page-out 0" 0 "$(stat_get page_outs)"
expect_le "versions dropped unuploaded" 50 "$superseded"
wfs_unmount
expect_le "chunks in the store after writes with no paging" "$(store_chunk_count)" $((before + 10))
wfs_mount --tail-hold 3600
check "the file equals the local copy after a remount" cmp "$SRC/f" "$MNT/f"

# A writer killed by SIGKILL: the kernel closes its file for it, so its
# writes are in.
rc=0
python3 "$writer" 2 100 "$SRC/f" "$MNT/f" --kill-self || rc=$?
expect_eq "the writer's exit status (SIGKILL)" 137 "$rc"
check "the file equals the local copy after the writer was killed" cmp "$SRC/f" "$MNT/f"

# The daemon killed while a writer still has the file open after more
# writes (never closed, so never committed): the file is as its last close
# left it, and the next daemon uploads what was queued.
cp "$SRC/f" "$SRC/f.closed"
marker="wavefs-page-out-plaintext-$$-marker"
python3 "$writer" 3 100 "$SRC/f" "$MNT/f" --hold "$T/written" --text "$marker" &
wpid=$!
for _ in $(seq 1 600); do
  [ -e "$T/written" ] && break
  pid_alive "$wpid" || break
  sleep 0.1
done
[ -e "$T/written" ] || fail "the writer did not finish its writes"
pid=$DAEMON_PID
# The page-out file has no name; the daemon's descriptor reaches it.
paged=$(stat_get page_slots)
expect_le "page-out slots in use while the writer keeps the file open" 1 "$paged"
page_file=""
for fd in /proc/"$pid"/fd/*; do
  case "$(readlink "$fd")" in */spill/*deleted*) page_file=$fd ;; esac
done
[ -n "$page_file" ] || fail "no page-out file among the daemon's descriptors: $(ls -l /proc/$pid/fd)"
# Slot i is at i * 4 MiB: as many slots in use reach at least this far.
expect_le "bytes in the page-out file" $(((paged - 1) * 4194304)) "$(stat -L -c %s "$page_file")"
if grep -qa "$marker" "$page_file"; then fail "plaintext written by the writer is in the page-out file"; fi
# (Not through the mount: any close of the file would commit it.)
if grep -qa "$marker" "$SRC/f"; then :; else fail "the writes carry no marker (the check above would prove nothing)"; fi
kill -9 "$pid"
wait_pid_exit "$pid" 10 || fail "daemon $pid survived kill -9"
kill -9 "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
wfs_mount --tail-hold 3600
drop_caches
check "after kill -9 the file is as its last close left it" cmp "$SRC/f.closed" "$MNT/f"
wfs_unmount
expect_eq "nothing left staged after the unmount" 0 "$(spill_count)"
wfs_mount
check "the file equals its last closed version from the store" cmp "$SRC/f.closed" "$MNT/f"
wfs_unmount
pass "random writes through one open file: equal to a local copy at every step, replaced versions never uploaded, kills lose nothing closed"
