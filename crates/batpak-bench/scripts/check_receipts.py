#!/usr/bin/env python3
"""Checks, from an strace log, that every durable receipt came back after a
sync that could cover it.

Produce the log with the hidden `--trace-markers` flag, which brackets each
batpak append of W2/W4 with `getpid` (before `append`) and `getppid` (after the
receipt came back):

    strace -f -tt -T -e trace=pwrite64,write,writev,pwritev,fdatasync,fsync,getpid,getppid \
        -o w4.strace target/release/batpak-bench --trace-markers --quick --repeat 1 --only W4

    python3 crates/batpak-bench/scripts/check_receipts.py w4.strace

For each receipt on thread T whose append started at `a` and returned at `g`,
it requires a write W (by any thread: with group commit the leader writes for
everyone) and a sync S with  a <= W.start,  W.end <= S.start,  S.end <= g.
A receipt without such a pair is a violation: its event cannot have been
covered by a completed sync. This is a necessary condition (the trace does not
say which bytes carry which event); single-threaded W2 logs can also be read by
eye: getpid, pwrite64, fdatasync, getppid, and again.
"""

import re
import sys

LINE = re.compile(r"^(\d+)\s+(\d\d):(\d\d):(\d\d\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>")
DURATION = re.compile(r"<(\d+\.\d+)>\s*$")
RETURN = re.compile(r"\)\s+=\s+(-?\d+)")

WRITES = {"pwrite64", "write", "writev", "pwritev", "pwritev2"}
SYNCS = {"fdatasync", "fsync"}


def parse(path):
    pending = {}  # (tid, name) -> (start, args)
    calls = []  # (name, tid, start, end, first_arg, ret)
    with open(path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            match = LINE.match(raw.rstrip("\n"))
            if not match:
                continue
            tid = int(match.group(1))
            time = int(match.group(2)) * 3600 + int(match.group(3)) * 60 + float(match.group(4))
            rest = match.group(5)
            resumed = RESUMED.match(rest)
            if resumed:
                name = resumed.group(1)
                start, args = pending.pop((tid, name), (time, ""))
                text = args + rest
            else:
                call = CALL.match(rest)
                if not call:
                    continue
                name = call.group(1)
                if rest.endswith("<unfinished ...>"):
                    pending[(tid, name)] = (time, call.group(2))
                    continue
                start, text = time, call.group(2)
            duration = DURATION.search(rest)
            end = start + float(duration.group(1)) if duration else time
            returned = RETURN.search(rest)
            ret = int(returned.group(1)) if returned else None
            first_arg = text.split(",", 1)[0].strip()
            calls.append((name, tid, start, end, first_arg, ret))
    return calls


def check(calls):
    writes = [c for c in calls if c[0] in WRITES and c[4] not in ("1", "2") and (c[5] or 0) > 0]
    syncs = [c for c in calls if c[0] in SYNCS and c[5] == 0]
    started = {}
    receipts = violations = 0
    for name, tid, start, end, _, _ in sorted(calls, key=lambda c: c[2]):
        if name == "getpid":
            started[tid] = start
        elif name == "getppid" and tid in started:
            receipts += 1
            a, g = started.pop(tid), start
            covered = any(
                s[2] >= w[3] and s[3] <= g
                for w in writes
                if w[2] >= a and w[3] <= g
                for s in syncs
            )
            if not covered:
                violations += 1
                if violations <= 10:
                    print(f"violation: thread {tid} append at {a:.6f}, receipt at {g:.6f}")
    return receipts, len(writes), len(syncs), violations


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    receipts, writes, syncs, violations = check(parse(sys.argv[1]))
    print(f"{receipts} receipts, {writes} writes, {syncs} syncs, {violations} violations")
    return 1 if violations or receipts == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
