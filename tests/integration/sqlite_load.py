#!/usr/bin/env python3
"""SQLite on a mount, as a database program uses it.

  sqlite_load.py write DB MODE LOG   transactions until killed or failing
  sqlite_load.py check DB LOG        integrity and every committed row

write: journal_mode MODE (wal or delete), synchronous=FULL. Transaction n
inserts row n (a 3,000-byte blob derived from n) and rewrites row n // 2,
then commits; once COMMIT has returned, n goes to LOG (on a local disk),
so LOG lists only transactions the database promised to keep.
check: PRAGMA integrity_check is ok, and every row LOG names is there with
its last committed bytes (rows of later transactions may be there too:
they committed after the last line of LOG was written). Prints one line.
"""
import hashlib
import os
import sqlite3
import sys


def blob(n, version):
    seed = f"{n}:{version}".encode()
    out = b""
    while len(out) < 3000:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return out[:3000]


def write(db, mode, log):
    c = sqlite3.connect(db, isolation_level=None)
    got = c.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
    if got.lower() != mode:
        sys.exit(f"journal_mode {mode} not taken: {got}")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB, ver INT)")
    n = (c.execute("SELECT max(id) FROM t").fetchone()[0] or 0) + 1
    with open(log, "a", buffering=1) as out:
        while True:
            c.execute("BEGIN")
            c.execute("INSERT INTO t VALUES (?, ?, 0)", (n, blob(n, 0)))
            old = n // 2
            if old > 0:
                c.execute("UPDATE t SET v = ?, ver = ver + 1 WHERE id = ?",
                          (blob(old, n), old))
            c.execute("COMMIT")
            out.write(f"{n}\n")
            n += 1


def check(db, log):
    with open(log) as f:
        done = [int(x) for x in f.read().split()]
    if not done:
        sys.exit("no transaction committed before the kill")
    c = sqlite3.connect(db, isolation_level=None)
    ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        sys.exit(f"integrity_check: {ok}")
    last = max(done)
    rows = {i: (v, ver) for i, v, ver in c.execute("SELECT id, v, ver FROM t")}
    for n in range(1, last + 1):
        if n not in rows:
            sys.exit(f"row {n} is missing, but its transaction committed "
                     f"(last committed: {last})")
        v, ver = rows[n]
        # Row n was rewritten by transaction 2n and 2n+1 (those that ran).
        writers = [m for m in (2 * n, 2 * n + 1) if m in rows]
        want = blob(n, writers[-1]) if writers else blob(n, 0)
        committed = [m for m in (2 * n, 2 * n + 1) if m <= last]
        if committed and ver < len(committed):
            sys.exit(f"row {n} lost the rewrite of transaction {committed[-1]}")
        if v != want:
            sys.exit(f"row {n} holds bytes no transaction wrote (ver {ver})")
    print(f"ok: {len(rows)} rows, the {last} committed ones intact")


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: sqlite_load.py write DB MODE LOG | check DB LOG")
