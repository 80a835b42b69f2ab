#!/usr/bin/env python3
"""Hostile clients for bench/bench.py part f (stdlib only, bounded in time and count).

    hostile.py HOST PORT --idle N --half N [--big-header N] [--big-body N]
               --hold SECONDS [--ready FILE] [--until-closed]

Opens N idle sockets (connect, send nothing) and N half-sent ones (half a request
header, then one more header byte every 2 s, like slowloris, never the blank line that
ends the header), plus --big-header requests with a 100 KB header line and --big-body
requests declaring a 100 MB body of which 1 MB is sent. It holds everything for
--hold seconds (or until the server has closed every idle and half-sent socket, with
--until-closed), then closes what is left and prints one JSON object: per kind, how
many were opened, how many the server closed and when (seconds after opening), and the
status codes of any answers. --ready FILE is written once every socket is open.
Nothing here runs longer than --hold plus a few seconds of connect and send timeouts.
"""
import argparse
import json
import selectors
import socket
import statistics
import sys
import time

HALF = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hostile.py\r\nX-Slow: "
TRICKLE_EVERY = 2.0
BIG_HEADER = 100 * 1024
BIG_BODY = 100 * 1024 * 1024
BODY_SENT = 1024 * 1024


class Conn:
    def __init__(self, kind, sock):
        self.kind = kind
        self.sock = sock
        self.opened = time.monotonic()
        self.closed_at = None       # seconds after opening, when the server closed it
        self.reply = b""
        self.next_trickle = self.opened + TRICKLE_EVERY


def connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_some(sock, data, seconds=5.0):
    """Send as much of data as the peer takes within seconds; a peer that answers and
    closes early (413, 400) is expected, so errors just stop the sending."""
    sock.settimeout(seconds)
    try:
        sock.sendall(data)
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--half", type=int, default=0)
    ap.add_argument("--big-header", type=int, default=0)
    ap.add_argument("--big-body", type=int, default=0)
    ap.add_argument("--hold", type=float, required=True)
    ap.add_argument("--ready")
    ap.add_argument("--until-closed", action="store_true")
    a = ap.parse_args()
    if a.idle + a.half + a.big_header + a.big_body > 900:
        sys.exit("hostile.py: at most 900 sockets")
    if not 0 < a.hold <= 120:
        sys.exit("hostile.py: --hold must be in (0, 120] seconds")

    conns = []
    errors = {}
    for kind, n in (("idle", a.idle), ("half", a.half)):
        for _ in range(n):
            try:
                s = connect(a.host, a.port)
                if kind == "half":
                    s.sendall(HALF)
                s.setblocking(False)
                conns.append(Conn(kind, s))
            except OSError as e:
                errors[kind + ": " + type(e).__name__] = errors.get(kind + ": " + type(e).__name__, 0) + 1

    # The oversized requests: sent at once, their answers read in the loop below.
    for kind, n in (("big-header", a.big_header), ("big-body", a.big_body)):
        for _ in range(n):
            try:
                s = connect(a.host, a.port)
                c = Conn(kind, s)
                if kind == "big-header":
                    send_some(s, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                              + b"a" * BIG_HEADER + b"\r\n\r\n")
                else:
                    send_some(s, b"POST /api/links HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n" % BIG_BODY)
                    send_some(s, b"x" * BODY_SENT)
                s.setblocking(False)
                conns.append(c)
            except OSError as e:
                errors[kind + ": " + type(e).__name__] = errors.get(kind + ": " + type(e).__name__, 0) + 1

    if a.ready:
        with open(a.ready, "w") as f:
            f.write("%d\n" % len(conns))

    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    start = time.monotonic()
    deadline = start + a.hold
    open_hostile = sum(1 for c in conns if c.kind in ("idle", "half"))
    while True:
        now = time.monotonic()
        if now >= deadline or (a.until_closed and open_hostile == 0):
            break
        for key, _ in sel.select(timeout=min(0.2, deadline - now)):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                c.reply = (c.reply + data)[:256]
                continue
            c.closed_at = time.monotonic() - c.opened
            sel.unregister(c.sock)
            c.sock.close()
            if c.kind in ("idle", "half"):
                open_hostile -= 1
        now = time.monotonic()
        for c in conns:
            if c.kind == "half" and c.closed_at is None and now >= c.next_trickle:
                c.next_trickle = now + TRICKLE_EVERY
                try:
                    c.sock.send(b"x")
                except OSError:
                    pass   # the read side reports the close

    report = {"held_s": round(time.monotonic() - start, 2), "errors": errors}
    for kind in ("idle", "half", "big-header", "big-body"):
        group = [c for c in conns if c.kind == kind]
        if not group:
            continue
        closed = sorted(c.closed_at for c in group if c.closed_at is not None)
        statuses = {}
        for c in group:
            line = c.reply.split(b"\r\n", 1)[0].split()
            code = line[1].decode() if len(line) > 1 and line[0].startswith(b"HTTP/") else "none"
            statuses[code] = statuses.get(code, 0) + 1
        report[kind] = {
            "opened": len(group),
            "closed_by_server": len(closed),
            "close_s_min": round(closed[0], 2) if closed else None,
            "close_s_median": round(statistics.median(closed), 2) if closed else None,
            "close_s_max": round(closed[-1], 2) if closed else None,
            "answers": statuses,
        }
    for c in conns:
        if c.closed_at is None:
            c.sock.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
