#!/usr/bin/env python3
"""sqlite_txns.py DIR MODE N: N SQLite transactions, as a database program
commits them: journal_mode MODE (wal or delete), synchronous=FULL, each one
inserting a 3,000-byte row. Checks the rows afterwards; exit 1 on a
mismatch. The time it takes is the bench row (scripts/bench/workloads.sh)."""
import os
import sqlite3
import sys

d, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = os.path.join(d, f"bench-{mode}.db")
c = sqlite3.connect(path, isolation_level=None)
if c.execute(f"PRAGMA journal_mode={mode}").fetchone()[0].lower() != mode:
    sys.exit(f"journal_mode {mode} not taken")
c.execute("PRAGMA synchronous=FULL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(n):
    c.execute("BEGIN")
    c.execute("INSERT INTO t VALUES (?, ?)", (i, bytes([i % 251]) * 3000))
    c.execute("COMMIT")
rows = c.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
if rows != (n, 3000 * n) or c.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
    sys.exit(f"{mode}: the database does not hold what was committed: {rows}")
c.close()
