#!/usr/bin/env python3
"""Where a process's resident memory is, from /proc/PID/smaps.

    smaps.py PID

Prints one line, kB of Rss per kind of mapping:
  binary   mappings of the executable itself (/proc/PID/exe): code, rodata, data, relro
  libs     other file mappings (shared libraries, SQLite's -shm when mapped, ...)
  heap     [heap], the brk heap glibc's main arena grows
  tstacks  thread stacks: an anonymous rw mapping right above a PROT_NONE guard
           mapping (how glibc lays out pthread stacks, and Rust its per-thread signal
           stacks; malloc's extra arenas are the other way round, rw below the
           reserve), with how many stacks of 64 KiB or more there are (threads other
           than main, plus any exited thread's stack glibc keeps cached for reuse)
  stack    [stack], the main thread's
  anon     every other anonymous mapping (large malloc chunks, arenas, ...)
  other    [vdso], [vvar], ...
then the sum, which matches VmRSS.
"""

import os
import sys


def mappings(pid):
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                if cur:
                    yield cur
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": parts[1],
                       "path": " ".join(parts[5:]) if len(parts) > 5 else "", "rss": 0}
            elif parts[0] == "Rss:":
                cur["rss"] = int(parts[1])
    if cur:
        yield cur


def main():
    pid = sys.argv[1]
    exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    kinds = dict.fromkeys(["binary", "libs", "heap", "tstacks", "stack", "anon", "other"], 0)
    nstacks = 0
    prev = None
    for m in mappings(pid):
        path = m["path"].removesuffix(" (deleted)")   # the file was replaced on disk
        if path == exe:
            kind = "binary"
        elif path.startswith("/"):
            kind = "libs"
        elif path == "[heap]":
            kind = "heap"
        elif path == "[stack]":
            kind = "stack"
        elif path.startswith("["):
            kind = "other"
        elif (m["perms"].startswith("rw") and prev is not None and prev["path"] == ""
              and prev["perms"].startswith("---") and prev["hi"] == m["lo"]):
            kind = "tstacks"
            # The small guarded pairs are Rust's per-thread signal stacks; count real stacks.
            nstacks += m["hi"] - m["lo"] >= 64 * 1024
        else:
            kind = "anon"
        kinds[kind] += m["rss"]
        prev = m
    total = sum(kinds.values())
    parts = [f"{k} {v} kB" + (f" ({nstacks})" if k == "tstacks" else "") for k, v in kinds.items()]
    print("  ".join(parts) + f"  = {total} kB")


if __name__ == "__main__":
    main()
