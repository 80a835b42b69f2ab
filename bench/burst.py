#!/usr/bin/env python3
"""Bursts of keep-alive connections against nib, for bench/bench.py part `fairness`
(stdlib only, 127.0.0.1 only, bounded in rounds and time).

    burst.py PORT --page PATH [--rounds 20] [--conns 32] [--late 20]

Each round:
1. --conns connections open in the same instant (non-blocking connects, then one request
   each as soon as all are up), as a page's visitors behind one NAT or a proxy's warm-up
   do. tiny_http's pool can queue a connection that arrives in such a burst behind
   threads busy with other keep-alive connections; the issue asks that every connection
   with a request waiting is served within 100 ms.
2. They stay open and idle (a browser keeps its connection), and --late more arrive the
   same way.
Every client behaves as browsers, curl and nginx do: it closes its connection when the
answer says `Connection: close`. The figure is each connection's time from its request
to the first byte of its answer: the worst over every round, and how many passed 100 ms.

Prints lines for a person; lines starting with "ROW|" are summary rows for bench.py.
"""
import argparse
import select
import socket
import time

HOST = "127.0.0.1"   # never anything else
WAIT = 5.0           # the longest a round waits for its answers


def burst(port, page, n):
    """Opens n connections at once, sends one GET on each, waits for every answer's
    head. Returns (latencies in ms of the answered, unanswered count, open sockets)."""
    req = ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % page).encode()
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, port))
        socks.append(s)
    select.select([], socks, [], WAIT)
    sent = {}
    for s in socks:
        s.setblocking(True)
        s.settimeout(1)
        try:
            s.sendall(req)
            sent[s] = time.monotonic()
        except OSError:
            pass
    heads, got = {}, {}
    while len(got) < len(sent):
        left = [s for s in sent if s not in got]
        ready, _, _ = select.select(left, [], [], WAIT)
        if not ready:
            break
        for s in ready:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                got[s] = None
                continue
            if s not in got:
                got[s] = (time.monotonic() - sent[s]) * 1000
            heads[s] = heads.get(s, b"") + data
            # A client told `Connection: close` closes as soon as it has the answer, as
            # browsers and nginx do: that is what frees the server's thread.
            if b"\r\n\r\n" in heads[s] and b"connection: close" in heads[s].lower():
                s.close()
    kept = [s for s in socks if s.fileno() != -1 and got.get(s) is not None]
    for s in socks:
        if s not in kept:
            s.close()
    lat = [v for v in got.values() if v is not None]
    return lat, len(sent) - len(lat), kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--page", default="/healthz")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--late", type=int, default=20)
    a = ap.parse_args()
    every, unanswered = [], 0
    for r in range(a.rounds):
        lat, lost, kept = burst(a.port, a.page, a.conns)
        lat2, lost2, kept2 = burst(a.port, a.page, a.late)
        every += lat + lat2
        unanswered += lost + lost2
        worst = max(lat + lat2, default=0)
        print("  round %2d: %d + %d connections, worst first answer %.1f ms%s"
              % (r + 1, a.conns, a.late, worst, ", %d unanswered" % (lost + lost2) if lost + lost2 else ""),
              flush=True)
        for s in kept + kept2:
            s.close()
        time.sleep(0.3)
    every.sort()
    worst = every[-1] if every else 0
    over = sum(v > 100 for v in every)
    p99 = every[int(len(every) * 0.99) - 1] if every else 0
    print("  bursts: %d connections in %d rounds: p99 %.1f ms, worst %.1f ms, %d over 100 ms, %d unanswered"
          " (target: none over 100 ms)" % (len(every) + unanswered, a.rounds, p99, worst, over, unanswered))
    # A connection left unanswered for the whole wait is the worst case of all.
    shown = "over %.0f s" % WAIT if unanswered else "%.1f ms" % worst
    print("ROW|burst: worst first answer of %d+%d connections at once, %d rounds|%s (%d over 100 ms)|<= 100 ms"
          % (a.conns, a.late, a.rounds, shown, over + unanswered))


if __name__ == "__main__":
    main()
