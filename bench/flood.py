#!/usr/bin/env python3
"""Header floods against nib, for bench/bench.py part `flood` (stdlib only, 127.0.0.1
only, bounded in time and bytes).

    flood.py PORT --pid NIB_PID --page PATH [--conns 6] [--seconds 10]
             [--rate 1048576] [--cap 16777216]

1. Endless header line: --conns connections each send a request line, a Host header and
   the start of an `X-Flood:` header, then stream `a` bytes for --seconds without ever
   ending the line, at most --rate bytes a second each and --cap bytes each in all (the
   caps keep a server that buffers everything from taking the machine's memory with it;
   its growth then scales with them). nib's VmRSS is sampled every 0.1 s: the growth is
   the largest VmRSS seen minus the VmRSS before. For each connection: bytes handed to
   the kernel, whether and when the server closed it, and the status of any answer.
2. Many short headers: one `GET PATH` with 5,000 headers of 8 bytes (`xNNN:1`, 40,000
   bytes in all); prints the status of the answer (or what happened instead).
3. Afterwards: does nib still answer GET PATH with 200, under the same PID?

Prints lines for a person; lines starting with "ROW|" are summary rows for bench.py.
"""
import argparse
import select
import socket
import sys
import threading
import time

HOST = "127.0.0.1"   # never anything else
CHUNK = 16384
RSS_ABORT_KB = 512 * 1024   # stop flooding if nib passes 512 MB, whatever the caps


def status_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    kb = lambda k: int(kv[k].split()[0])
    return {"hwm": kb("VmHWM"), "rss": kb("VmRSS"), "threads": int(kv["Threads"])}


def mb(kb):
    return "%.2f MB" % (kb / 1024)


def first_line(data):
    line = data.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if line.startswith(b"HTTP/") and len(parts) > 1:
        return parts[1].decode()
    return None


class Flooder(threading.Thread):
    def __init__(self, port, page, seconds, rate, cap, stop):
        super().__init__(daemon=True)
        self.port, self.page, self.seconds, self.rate, self.cap = port, page, seconds, rate, cap
        self.stop = stop
        self.sent = 0
        self.closed_at = None
        self.reply = b""
        self.error = None

    def run(self):
        t0 = time.monotonic()
        try:
            s = socket.create_connection((HOST, self.port), timeout=5)
        except OSError as e:
            self.error = type(e).__name__
            return
        with s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: " % self.page.encode())
            s.setblocking(False)
            chunk = b"a" * CHUNK
            while not self.stop.is_set():
                elapsed = time.monotonic() - t0
                if elapsed >= self.seconds:
                    break
                allowed = min(self.cap, int(self.rate * elapsed) + CHUNK) - self.sent
                r, w, _ = select.select([s], [s] if allowed > 0 else [], [], 0.02)
                if r:
                    # Anything the server says: an answer, or the end of the connection.
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        data = None
                    except OSError:
                        data = b""
                    if data == b"":
                        self.closed_at = elapsed
                        break
                    if data:
                        self.reply = (self.reply + data)[:256]
                if w:
                    try:
                        self.sent += s.send(chunk[: min(CHUNK, allowed)])
                    except BlockingIOError:
                        pass
                    except OSError:
                        self.closed_at = time.monotonic() - t0
                        break


def short_headers(port, page):
    head = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % page.encode()
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    names = [digits[i // 1296] + digits[i // 36 % 36] + digits[i % 36] for i in range(5000)]
    headers = "".join("x%s:1\r\n" % n for n in names).encode()
    assert len(headers) == 40000
    t0 = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=10) as s:
            try:
                s.sendall(head + headers + b"\r\n")
            except OSError as e:
                sent_note = " (sending stopped: %s)" % type(e).__name__
            else:
                sent_note = ""
            data = b""
            try:
                while len(data) < 256:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                if not data:
                    return "%s%s" % (type(e).__name__, sent_note), time.monotonic() - t0
            code = first_line(data)
            return (code or "no answer") + sent_note, time.monotonic() - t0
    except OSError as e:
        return type(e).__name__, time.monotonic() - t0


def get_status(port, page):
    try:
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                      % page.encode())
            data = s.recv(256)
            return first_line(data) or "no answer"
    except OSError as e:
        return type(e).__name__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--page", required=True)
    ap.add_argument("--conns", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=int, default=1 << 20)
    ap.add_argument("--cap", type=int, default=16 << 20)
    a = ap.parse_args()
    if not (0 < a.conns <= 50 and 0 < a.seconds <= 60 and a.cap <= 64 << 20):
        sys.exit("flood.py: at most 50 connections, 60 s and 64 MB each")

    base = status_of(a.pid)
    if base is None:
        sys.exit("flood.py: no process %d" % a.pid)
    print("  endless header line: %d connections, %.0f s, at most %.1f MB/s and %d MB each"
          % (a.conns, a.seconds, a.rate / 2**20, a.cap >> 20))
    print("    nib before: VmRSS %s, VmHWM %s, threads %d"
          % (mb(base["rss"]), mb(base["hwm"]), base["threads"]), flush=True)
    stop = threading.Event()
    floods = [Flooder(a.port, a.page, a.seconds, a.rate, a.cap, stop) for _ in range(a.conns)]
    for f in floods:
        f.start()
    max_rss, max_threads, aborted = base["rss"], base["threads"], False
    while any(f.is_alive() for f in floods):
        p = status_of(a.pid)
        if p is None:
            break
        max_rss = max(max_rss, p["rss"])
        max_threads = max(max_threads, p["threads"])
        if p["rss"] > RSS_ABORT_KB:
            aborted = True
            stop.set()
        time.sleep(0.1)
    for f in floods:
        f.join(timeout=10)
    time.sleep(0.5)
    after = status_of(a.pid)
    growth = max_rss - base["rss"]
    for i, f in enumerate(floods, 1):
        if f.error:
            print("    connection %d: could not connect (%s)" % (i, f.error))
            continue
        end = ("closed by nib after %.1f s" % f.closed_at if f.closed_at is not None
               else "still open after %.0f s" % a.seconds)
        print("    connection %d: sent %.2f MB, %s, answer %s"
              % (i, f.sent / 2**20, end, first_line(f.reply) or "none"))
    if aborted:
        print("    (flood stopped early: nib's VmRSS passed %s)" % mb(RSS_ABORT_KB))
    print("    nib: largest VmRSS %s, growth %s over the %s before (target < 1 MB); "
          "threads up to %d" % (mb(max_rss), mb(growth), mb(base["rss"]), max_threads))
    if after:
        print("    nib after: VmRSS %s, VmHWM %s, threads %d"
              % (mb(after["rss"]), mb(after["hwm"]), after["threads"]), flush=True)
    print("ROW|flood: nib RSS growth, %d endless header lines, %.0f s|%s|< 1 MB"
          % (a.conns, a.seconds, mb(growth)))

    before = status_of(a.pid)
    code, secs = short_headers(a.port, a.page)
    after = status_of(a.pid)
    print("  5,000 short headers (40,000 bytes) on GET %s: status %s after %.0f ms (target 431)"
          % (a.page, code, secs * 1000))
    if before and after:
        print("    nib VmRSS %s before, %s after; VmHWM %s after"
              % (mb(before["rss"]), mb(after["rss"]), mb(after["hwm"])))
    print("ROW|flood: 5,000 short headers (40 KB), status|%s|431" % code)

    final = status_of(a.pid)
    alive = get_status(a.port, a.page) if final else "nib gone"
    print("  afterwards: GET %s answers %s%s" % (a.page, alive, "" if final else
                                                 " (pid %d no longer exists)" % a.pid))
    print("ROW|flood: GET afterwards, same pid|%s%s|200" % (alive, "" if final else ", pid gone"))


if __name__ == "__main__":
    main()
