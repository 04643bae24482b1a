#!/usr/bin/env python3
"""Writer and checker of the kill -9 soak (test_crash_soak.sh).

The files live in DIR (a directory in the mount). The committed state of
DIR is a JSON model, STATE: name -> content, a content being a list of
segments [cid, size] (segment bytes: the first `size` bytes of the stream
random.Random(cid).randbytes, so any content can be made again).

  write DIR STATE LOG SEED [--pause-at N --go FILE] [--budget BYTES]
      Runs random steps until killed or out of steps. Before a step it logs
      "begin" with the step (one JSON line, flushed); after its close()
      returned, "done". With --pause-at N, step N stops half-way (a file
      open, half of it written), logs "mid" and waits for FILE to exist.
  check DIR STATE LOG
      Applies the logged done steps to STATE, then compares DIR with it:
      every file a finished step left must read back equal; the one step
      that began and did not finish may have left its files in the state
      before it or after it, and nothing else (see ALLOWED below). Writes
      the state found back to STATE and empties LOG. Exit 1 with a message
      on any difference.

ALLOWED for the unfinished step (what the daemon may commit at a crash):
  put/cp PATH C   (open with O_TRUNC, write C, close): PATH holds its old
                  content (absent if it had none), or is empty (the
                  truncate at open is committed on its own), or holds C.
  append PATH C   (O_APPEND write of C, close): old content, or old + C.
  rename A B      old state (A present, B as before) or new state (A gone,
                  B with A's old content).
  unlink A        present with its old content, or gone.
Never a mix (part old, part new), zeros, garbage or an I/O error.
"""
import json
import os
import random
import subprocess
import sys
import time

NAMES = [f"f{i}" for i in range(8)]
SIZES = [0, 1, 4095, 65536 + 13, (4 << 20) - 1, 4 << 20, (4 << 20) + 1,
         (6 << 20) + 777, 9 << 20]
APPENDS = [1, 100, 65536, (1 << 20) + 5]


def segment_bytes(cid, size):
    return random.Random(cid).randbytes(size)


def content_bytes(content):
    return b"".join(segment_bytes(c, s) for c, s in content)


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def read_log(path):
    steps, done, mid = {}, set(), set()
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # torn last line: the step never began
                rec = json.loads(line)
                if rec["ev"] == "begin":
                    steps[rec["n"]] = rec
                elif rec["ev"] == "done":
                    done.add(rec["n"])
                elif rec["ev"] == "mid":
                    mid.add(rec["n"])
    except FileNotFoundError:
        pass
    return steps, done, mid


def apply(state, step):
    s = dict(state)
    op = step["op"]
    if op in ("put", "cp"):
        s[step["path"]] = step["content"]
    elif op == "append":
        s[step["path"]] = s[step["path"]] + step["content"]
    elif op == "rename":
        s[step["dst"]] = s.pop(step["src"])
    elif op == "unlink":
        s.pop(step["path"])
    return s


def alternatives(state, step):
    """The states the unfinished step may have left."""
    alts = [state, apply(state, step)]
    if step["op"] in ("put", "cp") and step["path"] in state:
        s = dict(state)
        s[step["path"]] = []
        alts.append(s)
    if step["op"] in ("put", "cp") and step["path"] not in state:
        s = dict(state)
        s[step["path"]] = []  # created, nothing written yet
        alts.append(s)
    return alts


# ------------------------------------------------------------------ write

class Writer:
    def __init__(self, d, state, log, seed, pause_at, go, budget, src):
        self.d, self.state, self.rng = d, state, random.Random(seed)
        self.log = open(log, "a")
        self.pause_at, self.go, self.budget, self.src = pause_at, go, budget, src
        self.written = 0

    def emit(self, rec):
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()
        os.fsync(self.log.fileno())

    def pause(self, n):
        self.emit({"ev": "mid", "n": n})
        deadline = time.time() + 60
        while not os.path.exists(self.go) and time.time() < deadline:
            time.sleep(0.01)

    def write_all(self, fd, data, n):
        pos, half = 0, len(data) // 2
        paused = False
        while pos < len(data):
            if n == self.pause_at and not paused and pos >= half:
                paused = True
                self.pause(n)
            piece = self.rng.choice([4096, 65536, 131072, 1 << 20])
            pos += os.write(fd, data[pos:pos + piece])
        if n == self.pause_at and not paused:
            self.pause(n)

    def new_content(self, size):
        return [[self.rng.getrandbits(62), size]]

    def step(self, n):
        existing = sorted(self.state)
        choices = ["put", "put", "cp"]
        if existing:
            choices += ["append", "rename", "put"]
        if len(existing) > 4:
            choices.append("unlink")
        op = self.rng.choice(choices)
        if self.written > self.budget and op in ("put", "cp", "append"):
            op = "rename" if existing else "put"
        if op in ("put", "cp"):
            size = self.rng.choice(SIZES)
            step = {"op": op, "path": self.rng.choice(NAMES),
                    "content": self.new_content(size)}
            if self.written > self.budget:
                step["content"] = self.new_content(self.rng.choice(SIZES[:4]))
        elif op == "append":
            path = self.rng.choice(existing)
            step = {"op": op, "path": path,
                    "content": self.new_content(self.rng.choice(APPENDS))}
        elif op == "rename":
            src = self.rng.choice(existing)
            dst = self.rng.choice([x for x in NAMES if x != src])
            step = {"op": op, "src": src, "dst": dst}
        else:
            step = {"op": op, "path": self.rng.choice(existing)}
        # A cp source is made before the step begins (outside the mount).
        if op == "cp":
            srcfile = os.path.join(self.src, "cp-source")
            with open(srcfile, "wb") as f:
                f.write(content_bytes(step["content"]))
        self.emit(dict(step, ev="begin", n=n))
        if op == "put":
            data = content_bytes(step["content"])
            fd = os.open(os.path.join(self.d, step["path"]),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self.write_all(fd, data, n)
            os.close(fd)
            self.written += len(data)
        elif op == "cp":
            if n == self.pause_at:
                self.pause(n)
            subprocess.run(["cp", srcfile, os.path.join(self.d, step["path"])],
                           check=True, stderr=subprocess.DEVNULL)
            self.written += step["content"][0][1]
        elif op == "append":
            data = content_bytes(step["content"])
            fd = os.open(os.path.join(self.d, step["path"]),
                         os.O_WRONLY | os.O_APPEND)
            self.write_all(fd, data, n)
            os.close(fd)
            self.written += len(data)
        elif op == "rename":
            if n == self.pause_at:
                self.pause(n)
            os.rename(os.path.join(self.d, step["src"]),
                      os.path.join(self.d, step["dst"]))
        else:
            if n == self.pause_at:
                self.pause(n)
            os.unlink(os.path.join(self.d, step["path"]))
        self.emit({"ev": "done", "n": n})
        self.state = apply(self.state, step)


def cmd_write(argv):
    d, state_path, log, seed = argv[0], argv[1], argv[2], int(argv[3])
    opts = dict(zip(argv[4::2], argv[5::2]))
    w = Writer(d, load_state(state_path), log, seed,
               int(opts.get("--pause-at", -1)), opts.get("--go", ""),
               int(opts.get("--budget", 32 << 20)), opts.get("--src", "/tmp"))
    try:
        for n in range(int(opts.get("--steps", 400))):
            w.step(n)
    except (OSError, subprocess.CalledProcessError):
        return 0  # the daemon was killed under us: expected
    return 0


# ------------------------------------------------------------------ check

def observe(d):
    """name -> bytes of every file in d (an error message on a failure)."""
    out = {}
    for name in sorted(os.listdir(d)):
        try:
            with open(os.path.join(d, name), "rb") as f:
                out[name] = f.read()
        except OSError as e:
            out[name] = e
    return out


def describe(content):
    return "+".join(f"{c:x}:{s}" for c, s in content) or "empty"


def matches(state, seen):
    if sorted(state) != sorted(seen):
        return False
    return all(not isinstance(seen[k], Exception) and
               seen[k] == content_bytes(state[k]) for k in state)


def diff(state, seen):
    msgs = []
    for k in sorted(set(state) | set(seen)):
        if k not in seen:
            msgs.append(f"{k}: missing (want {describe(state[k])})")
        elif k not in state:
            msgs.append(f"{k}: unexpected file ({len(seen[k])} bytes)")
        elif isinstance(seen[k], Exception):
            msgs.append(f"{k}: read failed: {seen[k]}")
        elif seen[k] != content_bytes(state[k]):
            want = content_bytes(state[k])
            i = next((i for i in range(min(len(want), len(seen[k])))
                      if want[i] != seen[k][i]), min(len(want), len(seen[k])))
            msgs.append(f"{k}: {len(seen[k])} bytes, want {len(want)} "
                        f"({describe(state[k])}); first difference at {i}")
    return "; ".join(msgs)


def cmd_check(argv):
    d, state_path, log = argv
    state = load_state(state_path)
    steps, done, mid = read_log(log)
    unfinished = [n for n in sorted(steps) if n not in done]
    if len(unfinished) > 1:
        print(f"log: steps {unfinished} all unfinished", file=sys.stderr)
        return 1
    for n in sorted(done):
        state = apply(state, steps[n])
    seen = observe(d)
    if unfinished:
        step = steps[unfinished[0]]
        alts = alternatives(state, step)
        found = next((a for a in alts if matches(a, seen)), None)
        if found is None:
            print(f"after an unfinished {step['op']} (step {step['n']}): "
                  f"no allowed state matches: {diff(alts[0], seen)} | "
                  f"against the step done: {diff(alts[1], seen)}",
                  file=sys.stderr)
            return 1
        kind = ["old", "new", "truncated"][alts.index(found)]
        print(f"in flight: {step['op']} step {step['n']}"
              f"{' (paused half-way)' if step['n'] in mid else ''}: "
              f"found the {kind} state; {len(done)} steps finished")
        state = found
    else:
        if not matches(state, seen):
            print(f"after {len(done)} finished steps: {diff(state, seen)}",
                  file=sys.stderr)
            return 1
        print(f"no step in flight; {len(done)} steps finished")
    with open(state_path + ".new", "w") as f:
        json.dump(state, f)
    os.replace(state_path + ".new", state_path)
    open(log, "w").close()
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    sys.exit({"write": cmd_write, "check": cmd_check}[cmd](sys.argv[2:]))
