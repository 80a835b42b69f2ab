#!/usr/bin/env python3
"""Slow readers and half-sent bodies against nib, for bench/bench.py part `slow`
(stdlib only, 127.0.0.1 only, bounded in time and count).

    slow.py PORT --pid NIB_PID --big PATH --page PATH [--page PATH ...]
            [--readers 50] [--posts 20] [--measure 10] [--hold 15] [--label TEXT]

What a visitor who is not one of the attackers sees while attackers hold connections:

1. Baseline: nib's threads and fds (/proc/NIB_PID) before anyone hostile arrives.
2. --readers sockets with SO_RCVBUF 4096 each send `GET PATH` for --big (an 8 MB file)
   and never read a byte; --posts sockets each send `POST /admin/login` declaring
   Content-Length 5000 and send 1000 bytes of the body, never the rest.
3. Meanwhile, for --measure seconds, 4 client threads GET the --page paths one after the
   other (Connection: close, 20 s timeout each) and time every request from connect to
   the last byte. A request still waiting when the window closes counts with the time it
   had waited by then, marked ">=" when it decides a percentile: a frozen server must
   not look fast because its answers never came.
4. --hold seconds after they connected, every hostile socket is closed. nib's threads
   and fds are then watched (every 0.25 s, at most 25 s) until both are back to the
   baseline.

nib's VmHWM, and its largest VmRSS, threads and fds seen, are sampled every 0.2 s
throughout. PORT is nib's, or that of an nginx in front of it (the figures are still
nib's). Prints lines for a person; lines starting with "ROW|" are summary rows for
bench.py ("ROW|figure|value|target").
"""
import argparse
import math
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"   # never anything else
CLIENTS = 4
REQ_TIMEOUT = 20.0
SETTLE_MAX = 25.0


def proc(pid):
    """VmHWM and VmRSS (kB), threads and fds of PID, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    kb = lambda k: int(kv[k].split()[0])
    return {"hwm": kb("VmHWM"), "rss": kb("VmRSS"), "threads": int(kv["Threads"]), "fds": fds}


def mb(kb):
    return "%.2f MB" % (kb / 1024)


class Sampler(threading.Thread):
    """Largest VmRSS, threads and fds of nib seen, and its last VmHWM, every 0.2 s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.max = {"hwm": 0, "rss": 0, "threads": 0, "fds": 0}
        self.gone = False

    def run(self):
        while not self.stop.is_set():
            p = proc(self.pid)
            if p is None:
                self.gone = True
                return
            for k, v in p.items():
                self.max[k] = max(self.max[k], v)
            self.stop.wait(0.2)


def get(port, path):
    """(status, seconds) of one GET with Connection: close; status is an error name
    when the request failed."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=REQ_TIMEOUT) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                      % path.encode())
            head = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                if len(head) < 32:
                    head += chunk[:32]
            parts = head.split(b" ", 2)
            status = parts[1].decode() if len(parts) > 1 and head.startswith(b"HTTP/") else "no answer"
    except OSError as e:
        status = type(e).__name__
    return status, time.monotonic() - t0


class Measure(threading.Thread):
    """One visitor: GET the pages in turn until the window closes."""

    def __init__(self, port, paths, start, until, offset):
        super().__init__(daemon=True)
        self.port, self.paths, self.start_at, self.until = port, paths, start, until
        self.i = offset
        self.lock = threading.Lock()
        self.done = []          # (seconds, status)
        self.waiting_since = None

    def run(self):
        while time.monotonic() < self.until:
            path = self.paths[self.i % len(self.paths)]
            self.i += 1
            with self.lock:
                self.waiting_since = time.monotonic()
            status, secs = get(self.port, path)
            with self.lock:
                self.waiting_since = None
                self.done.append((secs, status))

    def snapshot(self):
        """The requests done so far, and since when one has been waiting (or None)."""
        with self.lock:
            return list(self.done), self.waiting_since


def percentile(values, q):
    """The q-quantile (nearest rank) of (seconds, censored) pairs."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(q * len(v)) - 1))]


def fmt_ms(pair):
    secs, censored = pair
    return "%s%.1f ms" % (">= " if censored else "", secs * 1000)


def open_hostiles(port, readers, posts, big):
    socks, errors = [], {}
    n = max(readers, posts)
    for i in range(n):
        for kind, count in (("reader", readers), ("post", posts)):
            if i >= count:
                continue
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if kind == "reader":
                    # Set before connect, so the window the server sees is small from the
                    # first segment on.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(5)
                s.connect((HOST, port))
                if kind == "reader":
                    s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % big.encode())
                else:
                    s.sendall(b"POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Type: application/x-www-form-urlencoded\r\n"
                              b"Content-Length: 5000\r\n\r\n" + b"token=" + b"x" * 994)
                socks.append((kind, s))
            except OSError as e:
                key = "%s: %s" % (kind, type(e).__name__)
                errors[key] = errors.get(key, 0) + 1
    return socks, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--big", required=True)
    ap.add_argument("--page", action="append", required=True)
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--posts", type=int, default=20)
    ap.add_argument("--measure", type=float, default=10)
    ap.add_argument("--hold", type=float, default=15)
    ap.add_argument("--label", default="direct")
    a = ap.parse_args()
    if a.readers + a.posts > 500:
        sys.exit("slow.py: at most 500 hostile sockets")
    if not (0 < a.measure <= 60 and a.measure < a.hold <= 60):
        sys.exit("slow.py: need 0 < --measure < --hold <= 60 seconds")

    base = proc(a.pid)
    if base is None:
        sys.exit("slow.py: no process %d" % a.pid)
    sampler = Sampler(a.pid)
    sampler.start()
    print("  %s, before: threads %d, fds %d, VmHWM %s, VmRSS %s"
          % (a.label, base["threads"], base["fds"], mb(base["hwm"]), mb(base["rss"])), flush=True)

    t_open = time.monotonic()
    socks, errors = open_hostiles(a.port, a.readers, a.posts, a.big)
    opened = time.monotonic() - t_open
    n_read = sum(1 for k, _ in socks if k == "reader")
    n_post = len(socks) - n_read
    print("  %s: %d slow readers and %d half-sent POSTs connected in %.1f s%s"
          % (a.label, n_read, n_post, opened,
             ("; failed: " + ", ".join("%s x%d" % kv for kv in sorted(errors.items()))) if errors else ""),
          flush=True)

    start = time.monotonic()
    until = start + a.measure
    clients = [Measure(a.port, a.page, start, until, k) for k in range(CLIENTS)]
    for c in clients:
        c.start()
    # The window closes; a request still out counts with what it has waited so far.
    time.sleep(max(0.0, until - time.monotonic()))
    end = time.monotonic()
    values, statuses, counted = [], {}, []
    for c in clients:
        done, since = c.snapshot()
        counted.append(len(done))
        for secs, status in done:
            values.append((secs, False))
            statuses[status] = statuses.get(status, 0) + 1
        if since is not None:
            values.append((end - since, True))
            statuses["still waiting"] = statuses.get("still waiting", 0) + 1
    snap_during = dict(sampler.max)

    # Hold, then leave all at once.
    time.sleep(max(0.0, t_open + a.hold - time.monotonic()))
    # Still-open sockets the server has not closed: a server that cut them shows here.
    cut = 0
    for kind, s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                cut += 1
        except BlockingIOError:
            pass
        except OSError:
            cut += 1
    for _, s in socks:
        s.close()
    left = time.monotonic()

    # Back to the baseline?
    settled, now_p = None, None
    while time.monotonic() - left < SETTLE_MAX:
        now_p = proc(a.pid)
        if now_p is None:
            break
        # Fewer threads than before is no leak: tiny_http's pool lets idle threads go.
        if now_p["threads"] <= base["threads"] and now_p["fds"] <= base["fds"]:
            settled = time.monotonic() - left
            break
        time.sleep(0.25)
    for c in clients:
        c.join(timeout=REQ_TIMEOUT + 1)
    # The requests still waiting when the window closed: when (if ever) they got answers.
    late = [r for c, n in zip(clients, counted) for r in c.snapshot()[0][n:]]
    sampler.stop.set()
    sampler.join()

    if not values:
        p50 = p99 = worst = (float("nan"), False)
    else:
        p50, p99, worst = percentile(values, 0.5), percentile(values, 0.99), max(values)
    print("  %s, others' post pages during the attack (%d clients, %.0f s): %d requests, "
          "p50 %s, p99 %s, max %s; answers %s"
          % (a.label, CLIENTS, a.measure, len(values), fmt_ms(p50), fmt_ms(p99), fmt_ms(worst),
             " ".join("%s x%d" % kv for kv in sorted(statuses.items()))), flush=True)
    if late:
        print("  %s: the %d requests still waiting then were answered after %.1f-%.1f s (%s)"
              % (a.label, len(late), min(r[0] for r in late), max(r[0] for r in late),
                 " ".join("%s x%d" % (st, sum(1 for r in late if r[1] == st))
                          for st in sorted({r[1] for r in late}))))
    print("  %s, nib during (largest seen): VmHWM %s, VmRSS %s, threads %d, fds %d"
          % (a.label, mb(snap_during["hwm"]), mb(snap_during["rss"]), snap_during["threads"],
             snap_during["fds"]))
    print("  %s: %d of %d hostile sockets found closed by the server when the clients left "
          "at %.0f s (a reader with unread bytes counts as open)" % (a.label, cut, len(socks), a.hold))
    if now_p is None:
        print("  %s, after: nib is gone (pid %d)" % (a.label, a.pid))
        after = "nib gone"
    else:
        when = ("at or below baseline %.1f s after they left" % settled if settled is not None
                else "NOT back to baseline %.0f s after they left" % SETTLE_MAX)
        after = "%d / %d (baseline %d / %d), %s" % (
            now_p["threads"], now_p["fds"], base["threads"], base["fds"],
            "back in %.1f s" % settled if settled is not None else "not back in %.0f s" % SETTLE_MAX)
        print("  %s, after the hostile clients left: threads %d, fds %d (baseline %d, %d): %s"
              % (a.label, now_p["threads"], now_p["fds"], base["threads"], base["fds"], when))
    # VmHWM read on this kernel can fall (its RSS counters are approximate per CPU), so
    # the figure is the largest reading, during or after.
    final = proc(a.pid)
    hwm = max(final["hwm"] if final else 0, sampler.max["hwm"])
    print("  %s, nib's VmHWM: %s at the end, %s the largest reading"
          % (a.label, mb(final["hwm"]) if final else "-", mb(hwm)), flush=True)

    print("ROW|slow %s: others' page p99 (p50)|%s (%s)|< 50 ms" % (a.label, fmt_ms(p99), fmt_ms(p50)))
    print("ROW|slow %s: nib VmHWM|%s|< 4 MB" % (a.label, mb(hwm)))
    print("ROW|slow %s: threads / fds after (baseline)|%s|back to baseline" % (a.label, after))


if __name__ == "__main__":
    main()
