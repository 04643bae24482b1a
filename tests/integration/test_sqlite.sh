#!/usr/bin/env bash
# A database on the mount: SQLite with synchronous=FULL, in WAL and in
# rollback-journal (DELETE) mode, writes transactions until the daemon is
# killed with kill -9 in the middle of them. After a remount the database
# passes PRAGMA integrity_check and holds every transaction whose COMMIT
# had returned, with the right bytes; SQLite then goes on writing, and an
# ordinary unmount and remount keep it all. Each fsync of the log and the
# database after the first is a tail-journal commit (fs/tail_journal.h),
# which the stats must show, so this is the path under test. it_wb_sqlite
# runs it with --writeback-cache.
source "$(dirname "$0")/lib.sh"

LOAD=$(dirname "$0")/sqlite_load.py
python3 -c 'import sqlite3' || fail "python3 has no sqlite3 module"

wfs_init
wfs_mount

for mode in wal delete; do
  db=$MNT/$mode.db
  log=$T/$mode.committed
  : >"$log"
  journal_before=$(stat_get journal_commits)
  python3 "$LOAD" write "$db" "$mode" "$log" 2>"$T/$mode.writer.err" &
  writer=$!
  # Kill once 150 transactions have committed, whatever the machine's
  # speed; the writer is then in the middle of one.
  for _ in $(seq 1 600); do
    [ "$(wc -l <"$log")" -ge 150 ] && break
    pid_alive "$writer" || break
    sleep 0.1
  done
  n=$(wc -l <"$log")
  [ "$n" -ge 150 ] || fail "$mode: only $n transactions in 60 s ($(tail -n 2 "$T/$mode.writer.err"))"
  journaled=$(($(stat_get journal_commits) - journal_before))
  # Most transactions journal, also with --writeback-cache (whose setattr
  # of mtime before each fsync used to seal the log every time).
  [ "$journaled" -ge $((n / 2)) ] ||
    fail "$mode: $journaled journal commits for $n transactions: fsyncs sealed"
  it_log "$mode: $n transactions committed, $journaled journal commits; killing daemon $DAEMON_PID"
  kill -9 "$DAEMON_PID"
  wait_pid_exit "$DAEMON_PID" 10 || fail "daemon $DAEMON_PID survived kill -9"
  wait "$writer" 2>/dev/null || true
  pid_alive "$writer" && fail "$mode: the writer outlived its mount"
  pass "$mode: daemon killed after $n committed transactions"

  wfs_mount
  check "$mode: integrity and every committed transaction after kill -9" \
    python3 "$LOAD" check "$db" "$log"
  # SQLite goes on where it stopped (it recovers its WAL or hot journal
  # first), then a clean unmount and remount keep everything.
  python3 "$LOAD" write "$db" "$mode" "$log" 2>"$T/$mode.writer2.err" &
  writer=$!
  for _ in $(seq 1 600); do
    [ "$(wc -l <"$log")" -ge $((n + 100)) ] && break
    pid_alive "$writer" || break
    sleep 0.1
  done
  kill "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  m=$(wc -l <"$log")
  [ "$m" -ge $((n + 100)) ] || fail "$mode: writing after the remount stopped at $m ($(tail -n 2 "$T/$mode.writer2.err"))"
  wfs_unmount
  wfs_mount
  check "$mode: integrity and all $m transactions after an unmount" \
    python3 "$LOAD" check "$db" "$log"
done
wfs_unmount
