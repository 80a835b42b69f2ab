"""The figures of bench/bench.py, one function each, in the order the bench runs them.

Each function takes the `Bench` (harness.py), prints its lines as it goes and adds its
rows to the summary. They share the site, the database and the mixed-page paths that
bench.py prepares, and each starts from a freshly (re)started nib where its figures
must cover its own load only. Each part prints its target beside its figure.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nginxconf
from harness import (HOST, Sampler, best_of, cpu_us, children_of, die, fd_count, free_port,
                     listener_pid, mb, mb3, median, proc_mem, ratio, request, section, verdict)

LINK_N = 100_000
LINK_TARGET = "https://example.com/"
# nib is started with this admin token from part e on, so the bench can call the API.
BENCH_TOKEN = "nibbench0123456789abcdefghijklmn"   # 32 characters
AUTH = {"Authorization": "Bearer " + BENCH_TOKEN}


def url(port, path=""):
    return "http://%s:%d%s" % (HOST, port, path)


def mem_line(pid, label=""):
    hwm, rss, threads = proc_mem(pid)
    return "%sVmHWM %s  VmRSS %s  threads %s" % (label, mb(hwm), mb(rss), threads)


def check_paths(port, paths):
    """Warn about any path that does not answer 200 (302 for a short link), since wrk
    would count it as a non-2xx response rather than fail."""
    for path in paths:
        code = request(port, path).status
        if not (code == 200 or (code == 302 and re.fullmatch(r"/[0-9A-Za-z]+", path))):
            print("  warning: %s answers %03d" % (url(port, path), code))


def expect_redirect(port, path, want):
    """Fail loudly when PATH does not answer 302 to WANT."""
    a = request(port, path)
    got = "%03d %s" % (a.status, a.header("location"))
    if got != "302 " + want:
        die("%s answers '%s', expected '302 %s'" % (url(port, path), got, want))


def note_close_header(port, path):
    """wrk treats an HTTP/1.1 answer without "Connection: close" as keep-alive: it sends
    the next request on the socket the server closed, counts a read error and reconnects.
    Say so when nib's answers lack the header, so the error counts are not misread."""
    a = request(port, path, headers={"Connection": "close"})
    if a.header("connection").lower() != "close":
        print("  warning: nib answered a Connection: close request without that header, so wrk")
        print("  will take each connection for a persistent one and count a read error per request.")


def path_latency(b, port, paths):
    """Each path alone on an idle nib (best of 5), so a slow route stands out before the
    mixed runs average it in."""
    print("  each path alone (best of 5):")
    slow_path, slow = "", 0.0
    for path in paths:
        a = best_of(5, lambda: request(port, path, timeout=10))
        ms = a.secs * 1000
        print("    %-62s %03d %7d bytes %7.1f ms" % (path, a.status, len(a.body), ms))
        if round(ms, 1) > slow:
            slow_path, slow = path, round(ms, 1)
    b.row("slowest path alone (best of 5)", "%s %.1f ms" % (slow_path, slow))


def mixed_args(b):
    return ["-s", b.script("mixed.lua"), "--", *b.mixed]


# ---------------------------------------------------------------- a. cold start

def cold_start(b):
    """a. Launch on a fresh database until GET / answers 200 (target <= 3 s)."""
    section("a. cold start, %d posts, fresh database" % b.cfg.posts)
    for f in b.site.glob("nib.db*"):
        f.unlink()
    nib = b.start_nib()
    print("  launch to first 200 on /: %d ms   (target <= 3000 ms)" % nib.start_ms)
    b.row("cold start to serving, %d posts" % b.cfg.posts, "%d ms" % nib.start_ms, "<= 3000 ms")
    scan = next((l for f in (nib.err, nib.out) for l in Path(f).read_text(errors="replace").splitlines()
                 if "change scan" in l), "")
    print("  nib says: %s" % (scan or "(no line containing 'change scan' on stderr or stdout)"))
    b.row("nib's startup line", scan or "none")
    hwm, rss, threads = proc_mem(nib.pid)
    print("  idle after start: VmHWM %s  VmRSS %s  threads %s" % (mb(hwm), mb(rss), threads))
    b.row("VmHWM after cold start (indexing)", mb(hwm))


def load_links(b):
    """The 100,000 short links every later part uses, straight into the stopped server's
    database in one transaction (bench/load-links.py): through the API each link is one
    fsynced commit, minutes for 100,000."""
    n = LINK_N
    section("links: %d short links into the database" % n)
    b.stop_nib()
    subprocess.run([sys.executable, b.script("load-links.py"), b.site / "nib.db", str(n), b.codes_file],
                   check=True, timeout=300)
    db_kb = os.stat(b.site / "nib.db").st_size // 1024
    print("  database: %s (%d posts, %d links)" % (mb(db_kb), b.cfg.posts, n))
    b.row("database size, %d posts + %d links" % (b.cfg.posts, n), mb(db_kb))
    nib = b.start_nib()
    print("  nib restarted on it: %d ms to first 200 on /" % nib.start_ms)
    b.row("warm start to serving, %d links" % n, "%d ms" % nib.start_ms)
    codes = b.codes()
    for i in (0, n // 2, n - 1):
        expect_redirect(nib.port, "/" + codes[i], "https://example.com/page/%d" % i)


# ---------------------------------------------------------------- b. memory

def mixed_run(b, label, memlabel, conns, port, *args):
    """One mixed-page run, then nib's memory. VmHWM is a high-water mark: it covers the
    process's whole life so far, which MEMLABEL says for the summary."""
    w = b.run_wrk(label, conns, url(port), *args, *mixed_args(b))
    print("  %-44s %s" % ("", mem_line(b.nib.pid)))
    b.row("VmHWM, " + memlabel, mb(proc_mem(b.nib.pid)[0]), "<= 3.5 MB" if conns == 8 else "")
    b.row("mixed req/s, " + label, w.rps)


def memory(b):
    """b. VmHWM / VmRSS / threads after wrk mixed-page runs, direct and via nginx."""
    section("b. memory under mixed pages (wrk -t2, %ds per run)" % b.cfg.seconds)
    print("  paths: %s" % " ".join(b.mixed))
    print("  Each block runs on a freshly restarted nib; VmHWM after -c50 includes its -c8 run.")
    nib = b.restart_nib()
    b.row("warm start to serving (database kept)", "%d ms" % nib.start_ms)
    check_paths(nib.port, b.mixed)
    path_latency(b, nib.port, b.mixed)
    note_close_header(nib.port, "/")
    close = ("-H", "Connection: close")
    mixed_run(b, "direct -c8, Connection: close", "direct -c8, Connection: close", 8, nib.port, *close)
    mixed_run(b, "direct -c50, Connection: close", "direct -c8 then -c50", 50, nib.port, *close)

    nib = b.restart_nib()
    front = free_port()
    nginxconf.front_conf(b, b.work / "nginx-front", front, nib.port)
    b.start_nginx(b.work / "nginx-front", front)
    check_paths(front, b.mixed)
    mixed_run(b, "via nginx -c8, keep-alive to nginx", "via nginx -c8", 8, front)
    mixed_run(b, "via nginx -c50, keep-alive to nginx", "via nginx -c8 then -c50", 50, front)


# ---------------------------------------------------------------- c. post page req/s

def alternate(b, name_a, url_a, name_b, url_b, *args):
    """The two runs in turn for BENCH_ROUNDS rounds with the same wrk arguments; returns
    the median req/s of each and the requests over all runs of each. Alternating and
    taking medians keeps a slow moment of this shared machine from landing on one side."""
    ra, rb, req_a, req_b = [], [], 0, 0
    for i in range(1, b.cfg.rounds + 1):
        w = b.run_wrk("%s, run %d" % (name_a, i), 8, url_a, *args)
        ra.append(w.rps)
        req_a += w.requests
        w = b.run_wrk("%s, run %d" % (name_b, i), 8, url_b, *args)
        rb.append(w.rps)
        req_b += w.requests
    return median(ra), median(rb), req_a, req_b


def post_page(b):
    """c. Post page requests/s against nginx serving the same bytes, one worker."""
    section("c. post page requests/s, nginx with 1 worker (wrk -t2 -c8, %ds per run, %d rounds, medians)"
            % (b.cfg.seconds, b.cfg.rounds))
    # A fresh nib on a fresh port, with a front end of its own. The runs before left tens
    # of thousands of connections to the old port in TIME_WAIT on the server side; a new
    # connection that reuses one of those address pairs costs the server extra work and
    # the client, at worst, a retry, which the baseline on its fresh port would not pay.
    nib = b.restart_nib()
    nib_front = free_port()
    nginxconf.front_conf(b, b.work / "nginx-front-c", nib_front, nib.port)
    b.start_nginx(b.work / "nginx-front-c", nib_front)

    # nib's bytes for the post, saved where the baseline nginx serves them from disk.
    path = "/posts/%s/" % b.post_slug
    www = b.work / "origin-www"
    page = www / "posts" / b.post_slug / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    a = request(nib.port, path)
    if a.status != 200:
        die("nib does not serve %s" % path)
    page.write_bytes(a.body)
    ctype = a.header("content-type")
    print("  page: %s, %d bytes, %s" % (path, len(a.body), ctype))

    origin = free_port()
    nginxconf.origin_conf(b, b.work / "nginx-origin", origin, www, ctype)
    origin_proc = b.start_nginx(b.work / "nginx-origin", origin)
    # The baseline asks for the file by name so nginx serves it without the index
    # module's internal redirect: its best case.
    file_path = "/posts/%s/index.html" % b.post_slug
    if request(origin, file_path).body != a.body:
        die("the baseline nginx does not serve the saved page")

    print("  (a) one request per connection (Connection: close on both)")
    # CPU per request, read around the runs: where nib's time goes against nginx's.
    worker = children_of(origin_proc.pid)[0]
    stats = ("/proc/%d/stat" % nib.pid, "/proc/%d/task/%d/stat" % (nib.pid, nib.pid), "/proc/%d/stat" % worker)
    before = [cpu_us(s) for s in stats]
    nib_direct, nginx_file, req_a, req_b = alternate(
        b, "nib direct", url(nib.port, path), "nginx, same bytes from disk", url(origin, file_path),
        "-H", "Connection: close")
    c, loop, wk = (cpu_us(s) - x for s, x in zip(stats, before))
    r_a = ratio(nib_direct, nginx_file)
    print("      medians: nib %d, nginx %d req/s; ratio %s   (target >= 0.80: %s)"
          % (nib_direct, nginx_file, r_a, verdict(r_a, 0.8)))
    nib_us, loop_us, nginx_us = c // max(req_a, 1), loop // max(req_a, 1), wk // max(req_b, 1)
    print("      CPU per request: nib %d us (request loop %d us; tiny_http's accept and" % (nib_us, loop_us))
    print("      connection threads %d us), nginx worker %d us" % (nib_us - loop_us, nginx_us))

    # The same deploy-derived front end, once more, proxying to the baseline nginx; it
    # runs as a separate process so each upstream has a CPU of its own, like nib does.
    print("  (b) through nginx (deploy/nginx.conf), keep-alive from wrk to nginx")
    static_port = free_port()
    nginxconf.front_conf(b, b.work / "nginx-front-static", static_port, origin)
    b.start_nginx(b.work / "nginx-front-static", static_port)
    nib_proxied, static_proxied, _, _ = alternate(
        b, "nginx -> nib", url(nib_front, path),
        "nginx -> static upstream (nginx, same bytes)", url(static_port, file_path))
    r_b = ratio(nib_proxied, static_proxied)
    print("      medians: nginx->nib %d, nginx->static %d req/s; ratio %s   (target >= 0.80: %s)"
          % (nib_proxied, static_proxied, r_b, verdict(r_b, 0.8)))

    b.row("post page req/s, nib direct (Connection: close)", nib_direct)
    b.row("post page req/s, nginx from disk (Connection: close)", nginx_file)
    b.row("ratio (a) nib / nginx from disk", r_a, ">= 0.80")
    b.row("CPU per post page: nib (its loop, tiny_http's threads) / nginx",
          "%d (%d, %d) / %d us" % (nib_us, loop_us, nib_us - loop_us, nginx_us))
    b.row("post page req/s, nginx -> nib", nib_proxied)
    b.row("post page req/s, nginx -> static upstream", static_proxied)
    b.row("ratio (b) nginx->nib / nginx->static", r_b, ">= 0.80")
    print("  %s" % mem_line(nib.pid, "nib after these runs: "))
    b.row("VmHWM after part c (post page, direct and via nginx)", mb(proc_mem(nib.pid)[0]))


# ---------------------------------------------------------------- d. binary

def linkage(path):
    """(file(1)'s description, the linkage words in it)."""
    kind = subprocess.run(["file", "-b", path], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.search(r"static(-pie)? linked|statically linked|dynamically linked", kind)
    return kind, m.group(0) if m else kind


def binary(b):
    """d. The benched binary's size and linkage."""
    section("d. binary")
    size = os.stat(b.nib_bin).st_size
    kind, link = linkage(b.nib_bin)
    ldd = subprocess.run(["ldd", b.nib_bin], capture_output=True, text=True, timeout=30)
    print("  size: %d bytes (%s)" % (size, mb(size // 1024)))
    print("  file: %s" % kind)
    print("  ldd:  %s" % ";".join((ldd.stdout + ldd.stderr).splitlines()[:3]))
    b.row("binary size", mb(size // 1024))
    b.row("binary linkage", link)


# ---------------------------------------------------------------- e. short links

def link_clicks(port, code):
    """Clicks of CODE as the API reports them (exact, including the unwritten batch)."""
    a = request(port, "/api/links/" + code, headers=AUTH)
    if a.status != 200:
        die("GET /api/links/%s answers %03d" % (code, a.status))
    return json.loads(a.body)["clicks"]


def redirects(b):
    """e1. Redirect requests/s against nginx's `return 302` (target ratio >= 0.7), and
    the clicks counted."""
    section("e1. redirect requests/s vs nginx return 302, nginx with 1 worker (wrk -t2 -c8, "
            "Connection: close on both, %ds per run)" % b.cfg.seconds)
    b.nib_env["NIB_ADMIN_TOKEN"] = BENCH_TOKEN
    nib = b.restart_nib()
    a = request(nib.port, "/api/links", "POST", dict(AUTH, **{"Content-Type": "application/json"}),
                json.dumps({"url": LINK_TARGET}), timeout=10)
    if not 200 <= a.status < 300:
        die("POST /api/links did not answer 2xx")
    code = json.loads(a.body)["code"]
    print("  link: /%s -> %s (created with POST /api/links)" % (code, LINK_TARGET))
    expect_redirect(nib.port, "/" + code, LINK_TARGET)

    nginx_port = free_port()
    nginxconf.redirect_conf(b, b.work / "nginx-redirect", nginx_port, code, LINK_TARGET)
    b.start_nginx(b.work / "nginx-redirect", nginx_port)
    expect_redirect(nginx_port, "/" + code, LINK_TARGET)

    note_close_header(nib.port, "/" + code)
    before = link_clicks(nib.port, code)
    w = b.run_wrk("nib redirect GET CODE", 8, url(nib.port, "/" + code), "-H", "Connection: close")
    nib_rps, sent = w.rps, w.requests
    nginx_rps = b.run_wrk("nginx return 302", 8, url(nginx_port, "/" + code), "-H", "Connection: close").rps
    r = ratio(nib_rps, nginx_rps)
    print("      ratio nib / nginx: %s   (target >= 0.70: %s)" % (r, verdict(r, 0.7)))
    # Every redirect counts a click: in memory, written in one batch a second.
    time.sleep(1.5)
    after = link_clicks(nib.port, code)
    print("  clicks counted during the nib run: %d, wrk completed %d requests" % (after - before, sent))
    print("  (nib counts them in memory and writes one batch a second)")
    b.row("redirect req/s, nib GET /CODE (Connection: close)", nib_rps)
    b.row("redirect req/s, nginx return 302 (Connection: close)", nginx_rps)
    b.row("ratio nib / nginx return 302", r, ">= 0.70")
    b.row("clicks counted / wrk requests, redirect run", "%d / %d" % (after - before, sent))


def mem_breakdown(b, label):
    """Where nib's memory is now: /proc/PID/smaps by kind of mapping (bench/smaps.py).
    LABEL names the moment for the summary."""
    pid = b.nib.pid
    line = subprocess.run([sys.executable, b.script("smaps.py"), str(pid)], capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()
    hwm, rss, threads = proc_mem(pid)
    print("  smaps, %s:" % label)
    print("    %s" % line)
    print("    (VmHWM %s  VmRSS %s  threads %s)" % (mb(hwm), mb(rss), threads))
    k = {name: int(v) for name, v in re.findall(r"(\w+) (\d+) kB", line)}
    bn, hp, st = k["binary"], k["heap"], k["tstacks"]
    b.row("RSS kB, " + label, "bin %d, heap %d, stacks %d, rest %d" % (bn, hp, st, sum(k.values()) - bn - hp - st))


def binary_breakdown(b):
    size = os.stat(b.nib_bin).st_size
    text, data, bss = subprocess.run(["size", b.nib_bin], capture_output=True, text=True,
                                     timeout=30).stdout.splitlines()[-1].split()[:3]
    print("  binary: %d bytes on disk; size(1): text %s, data %s, bss %s" % (size, text, data, bss))
    b.row("binary bytes: file / text / data / bss", "%d/%s/%s/%s" % (size, text, data, bss))


def many_links(b):
    """e2. Peak RSS under wrk at random codes of the 100,000, the API list and a preview
    once each, where the memory is, and a control run over 100 hot codes."""
    n = LINK_N
    section("e2. %d links: peak RSS under wrk -t2 -c8 at random codes, Connection: close, %ds"
            % (n, b.cfg.seconds))
    nib = b.restart_nib()
    binary_breakdown(b)
    mem_breakdown(b, "idle after start")
    w = b.run_wrk("random codes of %d, -c8, Connection: close" % n, 8, nib.base,
                  "-H", "Connection: close", "-s", b.script("links.lua"), "--", b.codes_file)
    hwm, rss, threads = proc_mem(nib.pid)
    print("  %-44s %s" % ("", mem_line(nib.pid)))
    b.row("VmHWM, %d links, wrk -c8 random codes" % n, mb(hwm), "<= 3.5 MB")
    b.row("VmRSS / threads after that run", "%s / %d" % (mb(rss), threads))
    b.row("redirect req/s, %d links, random codes" % n, w.rps)
    time.sleep(2)   # let the last click batch land, so this is idle
    mem_breakdown(b, "idle after the %d-link run" % n)

    # The owner's list and a visitor's preview over the big table, once each. nib looks
    # for changed posts from the request loop, at most every 1.5 s (one read of its
    # inotify watch, a scan only after a change; see a.); /healthz takes any such check.
    mid = b.codes()[n // 2]
    request(nib.port, "/healthz", timeout=10)
    print("  once each (idle server, after one GET /healthz):")
    for path in ("/api/links?limit=50", "/%s+" % mid):
        a = request(nib.port, path, headers=AUTH, timeout=10)
        print("    %-62s %03d %7d bytes %7.1f ms" % (path, a.status, len(a.body), a.secs * 1000))
        if a.status != 200:
            print("    warning: %s answers %03d" % (path, a.status))
        b.row("GET %s once, %d links" % (path.replace(mid, "CODE"), n), "%.1f ms (%03d)" % (a.secs * 1000, a.status))
    print("  %s" % mem_line(nib.pid, "after those: "))
    b.row("VmHWM after the run and those two requests", mb(proc_mem(nib.pid)[0]))

    # Control: the same run over 100 codes only. Each redirect adds to an in-memory click
    # count per link, written once a second, so a second of random codes over 100,000
    # links holds thousands of distinct counts (and writes as many rows); 100 hot codes
    # hold 100. The difference between the two VmHWM figures is that batch.
    hot = b.work / "codes-100.txt"
    hot.write_text("\n".join(b.codes()[:100]) + "\n")
    nib = b.restart_nib()
    w = b.run_wrk("100 hot codes, -c8, Connection: close", 8, nib.base,
                  "-H", "Connection: close", "-s", b.script("links.lua"), "--", hot)
    print("  %-44s %s" % ("", mem_line(nib.pid)))
    b.row("VmHWM, %d links, wrk -c8 over 100 hot codes (control)" % n, mb(proc_mem(nib.pid)[0]))
    b.row("redirect req/s, 100 hot codes", w.rps)


# ---------------------------------------------------------------- f. process life

def wait_serving(nib, want, timeout):
    """The count of "nib: serving" lines on nib's stderr (each image prints one when it
    starts serving), once it reaches WANT or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        n = sum(1 for l in nib.stderr().splitlines() if l.startswith("nib: serving"))
        if n >= want or time.monotonic() >= deadline:
            return n
        time.sleep(0.1)


def restarts_under_load(b, label, port, target):
    """f1: wrk -t2 -c4 keep-alive at PORT, SIGHUP to nib 5 times at 1/6 .. 5/6 of the
    run. LABEL names the run in the summary."""
    nib = b.nib
    pid_before = listener_pid(nib.port)
    p, out = b.spawn_wrk("f1-" + label.replace(" ", "-"), 4, url(port), *map(str, mixed_args(b)))
    t0 = time.monotonic()
    for k in range(1, 6):
        time.sleep(max(0.0, t0 + b.cfg.seconds * k / 6 - time.monotonic()))
        # After a handover the successor serves; it is the one to signal.
        os.kill(nib.serving_pid(), signal.SIGHUP)
    b.finish(p, b.cfg.seconds + 30)
    serving = wait_serving(nib, 6, 20)
    if not b.wait_200(nib.port, None, 10):
        print("  warning: nib does not answer 200 after the restarts")
    pid_after = listener_pid(nib.port)
    hwm, rss, threads = proc_mem(pid_after or nib.pid)
    w = b.parse_wrk(out)
    print("  %-30s %d requests, non-2xx/3xx %d, socket errors: %s"
          % (label, w.requests, w.non2xx, w.socket_errors_text()))
    print('  %-30s p99 %s, max %s; PID %s before, %s after; "nib: serving" lines %d'
          % ("", w.p99, w.max, pid_before, pid_after, serving))
    print("  %-30s after: VmHWM %s  VmRSS %s  threads %s" % ("", mb(hwm), mb(rss), threads))
    b.row("f1 %s: requests, 5 SIGHUPs" % label, "%d (p99 %s, max %s)" % (w.requests, w.p99, w.max))
    b.row("f1 %s: non-2xx/3xx" % label, w.non2xx, "0")
    b.row("f1 %s: socket errors c/r/w/t" % label, "/".join(map(str, w.socket_errors)), target)
    b.row("f1 %s: PID before / after" % label, "%s / %s" % (pid_before, pid_after), "equal")
    b.row("f1 %s: VmHWM / VmRSS / threads after" % label, "%s / %s / %d" % (mb(hwm), mb(rss), threads))
    b.row("f1 %s: 'nib: serving' lines" % label, serving, "6")


def restarts(b):
    """f1. Five SIGHUPs under keep-alive load, direct and via nginx."""
    section("f1. 5 SIGHUP restarts under wrk -t2 -c4 mixed pages, keep-alive, %ds" % b.cfg.seconds)
    print("  Keep-alive on purpose, the harder case for a restart: keep-alive sockets idle at a")
    print("  restart are closed between requests, which wrk counts as read errors and")
    print("  reconnects: at most 4 (its connections) per SIGHUP directly; none through nginx.")
    nib = b.restart_nib()
    restarts_under_load(b, "direct", nib.port, "<= 20")
    nib = b.restart_nib()
    port = free_port()
    nginxconf.front_conf(b, b.work / "nginx-f1", port, nib.port)
    b.start_nginx(b.work / "nginx-f1", port)
    restarts_under_load(b, "via nginx", port, "0/0/0/0")


def run_hostile(b, port, name, *args):
    """Start bench/hostile.py and wait (at most 60 s) until every socket is open."""
    ready = b.work / (name + ".ready")
    out = b.work / (name + "-hostile.json")
    with open(out, "w") as f:
        p = b.spawn([sys.executable, b.script("hostile.py"), HOST, str(port), *map(str, args),
                     "--ready", ready], stdout=f, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.stat().st_size):
        if p.poll() is not None:
            die("hostile.py exited before opening its sockets")
        if time.monotonic() > deadline:
            die("hostile.py did not open its sockets within 60 s")
        time.sleep(0.1)
    return p, out


def hostile_report(path):
    """One hostile.py report line per kind, and the parsed report."""
    try:
        r = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        print("  hostile.py: no report")
        return {}
    for kind in ("idle", "half", "big-header", "big-body"):
        k = r.get(kind)
        if not k:
            continue
        when = ""
        if k["closed_by_server"]:
            when = " after %s-%s s (median %s)" % (k["close_s_min"], k["close_s_max"], k["close_s_median"])
        print("  hostile.py: %s: %d opened, %d closed by the server%s, answers %s" % (
            kind, k["opened"], k["closed_by_server"], when,
            " ".join("%s x%d" % kv for kv in sorted(k["answers"].items()))))
    if r.get("errors"):
        print("  hostile.py: connect/send errors: %s" % r["errors"])
    return r


def hostile_via_nginx(b):
    """f2. 400 idle or half-sent sockets, 3 requests with a 100 KB header line and 3
    declaring a 100 MB body, all at nginx (deploy/nginx.conf), while wrk -t1 -c4 reads
    pages through it: nib's memory, threads and fds, and the page latency."""
    section("f2. hostile clients through nginx: 200 idle + 200 half-sent sockets, 3 x 100 KB header, "
            "3 x 100 MB body; wrk -t1 -c4 pages meanwhile, %ds" % b.cfg.seconds)
    nib = b.restart_nib()
    port, d = free_port(), b.work / "nginx-f2"
    nginxconf.front_conf(b, d, port, nib.port)
    b.start_nginx(d, port)
    hwm0, rss0, thr0 = proc_mem(nib.pid)
    fds0 = fd_count(nib.pid)
    print("  nib before: VmHWM %s  VmRSS %s  threads %s  fds %d" % (mb(hwm0), mb(rss0), thr0, fds0))
    hp, report = run_hostile(b, port, "f2", "--idle", 200, "--half", 200, "--big-header", 3,
                             "--big-body", 3, "--hold", b.cfg.seconds + 1)
    with Sampler(nib.pid) as s:
        wp, out = b.spawn_wrk("f2", 4, url(port), *map(str, mixed_args(b)), threads=1)
        b.finish(wp, b.cfg.seconds + 30)
    b.finish(hp, b.cfg.seconds + 30)
    time.sleep(1)
    hwm, rss, threads = proc_mem(nib.pid)
    fds = fd_count(nib.pid)
    w = b.parse_wrk(out)
    hostile_report(report)
    print("  wrk -t1 -c4 pages via nginx: %d req/s, p50 %s, p99 %s, non-2xx/3xx %d, socket errors: %s"
          % (w.rps, w.p50, w.p99, w.non2xx, w.socket_errors_text()))
    print("  nib during (largest seen): VmHWM %s  VmRSS %s  threads %d  fds %d"
          % (mb(s.hwm), mb(s.rss), s.threads, s.fds))
    print("  nib after:                 VmHWM %s  VmRSS %s  threads %d  fds %d" % (mb(hwm), mb(rss), threads, fds))
    # Status codes nginx logged, the wrk pages included (4xx are the hostile requests).
    statuses, gone = {}, {}
    for line in (d / "access.log").read_text(errors="replace").splitlines():
        q = line.split('"')
        if len(q) < 3 or not q[2].split():
            continue
        st = q[2].split()[0]
        statuses[st] = statuses.get(st, 0) + 1
        if st == "499":
            gone[q[1]] = gone.get(q[1], 0) + 1
    codes = ", ".join("%s x%d" % kv for kv in sorted(statuses.items()))
    print("  nginx access.log statuses: %s" % codes)
    # 499 is nginx's "client closed the request": which requests, so it is not misread.
    for req, count in sorted(gone.items())[:5]:
        print("  499 (client went away): %d %s" % (count, req))
    b.row("f2 via nginx, pages p50 / p99 during hostiles", "%s / %s" % (w.p50, w.p99), "p99 < 1 s")
    b.row("f2 via nginx, pages req/s during hostiles", w.rps)
    # VmHWM before is the fresh start's own peak; the page load alone (f1, b.) lifts it too.
    b.row("f2 nib VmHWM before / during / after", mb3(hwm0, s.hwm, hwm), "<= 3.5 MB")
    b.row("f2 nib VmRSS before / max during / after", mb3(rss0, s.rss, rss))
    b.row("f2 nib threads before / max during / after", "%d / %d / %d" % (thr0, s.threads, threads))
    b.row("f2 nib fds before / max during / after", "%d / %d / %d" % (fds0, s.fds, fds))
    b.row("f2 nginx 4xx logged", ", ".join("%s x%d" % kv for kv in sorted(statuses.items())
                                          if kv[0].startswith("4")))


def hostile_direct(b):
    """f3. 50 half-sent + 50 idle sockets straight at nib, until its guard has closed
    them all (at most 30 s), while one normal page is fetched every 0.5 s."""
    hold = 30
    section("f3. hostile clients straight at nib: 50 half-sent + 50 idle sockets, until the guard "
            "closes them (<= %ds)" % hold)
    nib = b.restart_nib()
    hp, report = run_hostile(b, nib.port, "f3", "--idle", 50, "--half", 50, "--hold", hold, "--until-closed")
    worst, bad, fetched = 0.0, 0, 0
    next_fetch = time.monotonic()
    deadline = next_fetch + hold + 30
    with Sampler(nib.pid, interval=0.1) as s:
        while hp.poll() is None and time.monotonic() < deadline:
            if time.monotonic() >= next_fetch:
                next_fetch = time.monotonic() + 0.5
                a = request(nib.port, b.mixed[2])
                fetched += 1
                bad += a.status != 200
                worst = max(worst, a.secs)
            time.sleep(0.1)
    b.finish(hp, 10)
    r = hostile_report(report)
    guard = [l for l in nib.stderr().splitlines() if l.startswith("nib: guard:")]
    cut = sum(int(m.group(1)) for l in guard for m in [re.match(r"nib: guard: closed (\d+) connections", l)] if m)
    for l in guard[:6]:
        print("  nib stderr: %s" % l)
    print("  guard: %d connections closed in %d log lines" % (cut, len(guard)))
    print("  nib during (largest seen): VmHWM %s  VmRSS %s  threads %d  fds %d"
          % (mb(s.hwm), mb(s.rss), s.threads, s.fds))
    worst_ms = int(round(worst * 1000))
    print("  normal page meanwhile: %d fetched, slowest %d ms, %d not 200" % (fetched, worst_ms, bad))

    def closed(kind):
        k = r.get(kind, {})
        return "%s-%s s" % (k.get("close_s_min"), k.get("close_s_max"))
    b.row("f3 direct: guard closed (of 100)", cut, "100")
    b.row("f3 direct: idle closed after (min-max)", closed("idle"))
    b.row("f3 direct: half-sent closed after (min-max)", closed("half"))
    b.row("f3 direct: nib threads / VmHWM during (max)", "%d / %s" % (s.threads, mb(s.hwm)))
    b.row("f3 direct: normal page meanwhile, slowest", "%d ms (%d, %d not 200)" % (worst_ms, fetched, bad),
          "< 1000 ms")


# ---------------------------------------------------------------- headroom

def headroom(b):
    """nib's VmHWM after the mixed load (every kind of page, feed, sitemap and short
    link; wrk -t2 -c8, Connection: close), three runs on a fresh nib each (target
    <= 3.3 MB every run). The figure is the largest VmHWM read during or after a run."""
    section("headroom. nib's VmHWM under the mixed load, wrk -t2 -c8, Connection: close, %ds, "
            "3 runs on a fresh nib each" % b.cfg.seconds)
    print("  paths: %s" % " ".join(b.mixed))
    runs = []
    for i in (1, 2, 3):
        nib = b.restart_nib()
        if i == 1:
            check_paths(nib.port, b.mixed)
            path_latency(b, nib.port, b.mixed)
            nib = b.restart_nib()   # so run 1's VmHWM is the run's own, like the others'
        with Sampler(nib.pid, interval=0.1) as s:
            b.run_wrk("headroom run %d, direct -c8, Connection: close" % i, 8, nib.base,
                      "-H", "Connection: close", *mixed_args(b))
        hwm, rss, threads = proc_mem(nib.pid)
        print("  %-44s VmHWM %s (largest reading during the run %s)  VmRSS %s  threads %s"
              % ("", mb(hwm), mb(s.max_hwm), mb(rss), threads))
        runs.append(max(hwm, s.max_hwm))
    top = max(runs)
    print("  headroom: VmHWM per run %s; largest %s   (target <= 3.3 MB every run: %s)"
          % (", ".join(map(mb, runs)), mb(top), "ok" if top <= 3379 else "ABOVE TARGET"))
    b.row("headroom: VmHWM of 3 mixed -c8 runs (fresh nib each)", ", ".join(map(mb, runs)), "<= 3.3 MB each")


# ---------------------------------------------------------------- slow

def slow(b):
    """Slow readers of an 8 MB static file and half-sent login bodies while 4 other
    clients GET post pages, direct and via nginx (bench/slow.py): their p99, nib's
    VmHWM, and whether nib's threads and fds return to where they were. Through nginx,
    static/ is nginx's and it holds both kinds of client itself: that is the deployment
    deploy/nginx.conf describes."""
    measure, hold = b.cfg.seconds, b.cfg.seconds + 5
    section("slow. 50 slow readers of /static/big.bin (8 MB, SO_RCVBUF 4096, never read) + 20 half-sent "
            "POST /admin/login bodies for %ds; 4 clients GET post pages for %ds meanwhile" % (hold, measure))
    big = b.site / "static" / "big.bin"
    big.write_bytes(bytes(8 << 20))
    pages = []
    for i in (2, 3, 5, 8):
        pages += ["--page", b.mixed[i]]
    try:
        for label in ("direct", "via nginx"):
            nib = b.restart_nib()
            port = nib.port
            if label == "via nginx":
                port = free_port()
                nginxconf.front_conf(b, b.work / "nginx-slow", port, nib.port)
                b.start_nginx(b.work / "nginx-slow", port)
            check_paths(port, ["/static/big.bin", b.mixed[2]])
            b.run_reporting([b.script("slow.py"), port, "--pid", nib.pid, "--big", "/static/big.bin", *pages,
                             "--measure", measure, "--hold", hold, "--label", label], timeout=hold + 90)
            if nib.proc.poll() is not None:
                print("  warning: nib (pid %d) died during the %s run" % (nib.pid, label))
    finally:
        big.unlink(missing_ok=True)


# ---------------------------------------------------------------- fairness

def fairness(b):
    """BENCH_FAIR_RUNS keep-alive runs in a row on one nib: a run that finds the server
    worse off than the others (connections the guard cut, a thread pool left grown or
    shrunk) shows as a low run against the median (target min/median >= 0.8). Then bursts
    of keep-alive connections opened at once, each of which must have its first answer
    within 100 ms (bench/burst.py)."""
    code = b.codes()[LINK_N // 2]
    section("fairness. %d runs of wrk -t2 -c32 keep-alive on one short link (/%s), %ds each, one nib"
            % (b.cfg.fair_runs, code, b.cfg.seconds))
    nib = b.restart_nib()
    expect_redirect(nib.port, "/" + code, "https://example.com/page/%d" % (LINK_N // 2))
    runs = [b.run_wrk("fairness run %d, -c32 keep-alive" % i, 32, url(nib.port, "/" + code)).rps
            for i in range(1, b.cfg.fair_runs + 1)]
    med, low = median(runs), min(runs)
    r = ratio(low, med)
    print("  fairness: req/s per run %s; median %d, min %d, min/median %s   (target >= 0.8: %s)"
          % (" ".join(map(str, runs)), med, low, r, verdict(r, 0.8)))
    b.row("fairness: req/s of %d -c32 keep-alive runs" % b.cfg.fair_runs, "/".join(map(str, runs)))
    b.row("fairness: median req/s, min / median", "%d, %s" % (med, r), ">= 0.8")
    section("burst. 32 keep-alive connections opened at once, then 20 more while they stay open, "
            "20 rounds (bench/burst.py)")
    # A fresh nib has the fewest pool threads, where a burst queues the most connections.
    nib = b.restart_nib()
    b.run_reporting([b.script("burst.py"), nib.port, "--page", b.mixed[2], "--rounds", 20],
                    timeout=20 * 11 + 30)


# ---------------------------------------------------------------- flood

def flood(b):
    """6 connections stream one endless header line (nib's RSS growth, target < 1 MB),
    and one request with 5,000 short headers (target 431) (bench/flood.py)."""
    section("flood. 6 connections stream one endless header line for %ds; one request with 5,000 short "
            "headers (bench/flood.py)" % b.cfg.seconds)
    nib = b.restart_nib()
    b.run_reporting([b.script("flood.py"), nib.port, "--pid", nib.pid, "--page", b.mixed[2],
                     "--conns", 6, "--seconds", b.cfg.seconds], timeout=b.cfg.seconds + 90)


# ---------------------------------------------------------------- builds

def builds(b):
    """The static deploy binary against the dynamic `cargo build --release` one: size,
    idle VmRSS a second after start, and VmHWM under a short mixed load (wrk -t2 -c8,
    Connection: close, at most 5 s; the largest reading during or after the run), on a
    fresh nib each, on the same database. The static build is there for its memory
    (.cargo/config.toml); this is the figure that shows whether it still pays."""
    seconds = min(b.cfg.seconds, 5)
    section("builds. static (deploy) and dynamic release binaries: size, idle VmRSS, VmHWM under "
            "%ds of mixed pages (wrk -t2 -c8, Connection: close)" % seconds)
    figures = {}
    for kind in ("static", "dynamic"):
        path = b.build(kind)
        print("  %s: %s" % (kind, path))
        size = os.stat(path).st_size
        _, link = linkage(path)
        b.stop_nib()
        nib = b.start_nib(path)
        time.sleep(1)   # past start-up: nib drops its start-up code pages once serving
        _, idle, _ = proc_mem(nib.pid)
        with Sampler(nib.pid, interval=0.1) as s:
            w = b.run_wrk("%s build, mixed -c8, Connection: close" % kind, 8, nib.base,
                          "-H", "Connection: close", *mixed_args(b), seconds=seconds)
        hwm = max(proc_mem(nib.pid)[0], s.max_hwm)
        print("  %-44s %s, %s; idle VmRSS %s, VmHWM under load %s" % ("", mb(size // 1024), link, mb(idle), mb(hwm)))
        figures[kind] = (size, link, idle, hwm, w.rps)
        b.stop_nib()
    st, dy = figures["static"], figures["dynamic"]
    print("  static saves %s of idle VmRSS and %s of VmHWM under load"
          % (mb(dy[2] - st[2]), mb(dy[3] - st[3])))
    b.row("builds: size static / dynamic", "%s / %s" % (mb(st[0] // 1024), mb(dy[0] // 1024)))
    b.row("builds: linkage static / dynamic", "%s / %s" % (st[1], dy[1]))
    b.row("builds: idle VmRSS after start, static / dynamic", "%s / %s" % (mb(st[2]), mb(dy[2])), "static lower")
    b.row("builds: VmHWM, %ds mixed -c8, static / dynamic" % seconds, "%s / %s" % (mb(st[3]), mb(dy[3])),
          "static lower")
    b.row("builds: mixed req/s, static / dynamic", "%d / %d" % (st[4], dy[4]))


def serve_site(b, site, name, what):
    """Starts nib on `site` (its own database, a free port, output to NAME.err in the work
    directory) and waits for its first 200, at most 60 s; returns the process."""
    port = free_port()
    with open(b.work / ("%s.err" % name), "wb") as fe:
        p = b.spawn([b.nib_bin, "--root", site, "--db", site / "nib.db", "--listen",
                     "%s:%d" % (HOST, port), "serve"], stdout=fe, stderr=fe,
                    stdin=subprocess.DEVNULL)
        if not b.wait_200(port, p, 60):
            die("nib did not serve %s within 60 s" % what)
    return p


def real(b):
    """real. A 1,000-post site shaped like blogs moved from Jekyll, Hugo and Zola
    (gen-real.py: bundles with images, .markdown, -0700 dates, TOML, aliases, shortcodes,
    _index.md sections): `nib check` (index into a scratch database), then a cold start
    to the first 200 and its VmHWM."""
    n = 1000
    section("real. %d posts shaped like Jekyll, Hugo and Zola blogs" % n)
    site = b.work / "real"
    subprocess.run([sys.executable, b.script("gen-real.py"), site, str(n)], check=True, timeout=300)
    t0 = time.monotonic()
    r = subprocess.run([b.nib_bin, "--root", site, "--db", site / "check.db", "check"],
                       capture_output=True, text=True, timeout=300)
    check_ms = int((time.monotonic() - t0) * 1000)
    lines = (r.stdout + r.stderr).splitlines()
    summary = next((l for l in lines if l.startswith("checked ")), "(no summary line)")
    print("  nib check: %d ms, exit %d: %s" % (check_ms, r.returncode, summary))
    print("  and %d other lines (skipped files, ignored keys, warnings)" % (len(lines) - 1))
    b.row("real-shaped site, %d posts: nib check" % n, "%d ms" % check_ms)
    b.row("real-shaped site: nib check says", summary)
    t0 = time.monotonic()
    p = serve_site(b, site, "real", "the real-shaped site")
    start_ms = int((time.monotonic() - t0) * 1000)
    hwm, rss, _ = proc_mem(p.pid)
    print("  cold start to first 200: %d ms; VmHWM %s, VmRSS %s" % (start_ms, mb(hwm), mb(rss)))
    b.row("real-shaped site: cold start to serving", "%d ms" % start_ms, "<= 3000 ms")
    b.row("real-shaped site: VmHWM after cold start", mb(hwm), "<= 3.5 MB")
    p.terminate()
    p.wait(timeout=60)


# ---------------------------------------------------------------- heavy

HEAVY_FM = "---\ntitle: Heavy\ndate: 2024-01-01\n---\n"


def heavy_posts():
    """(name, body) of single posts that once cost far more than their size to index."""
    code = "".join("let x%d = foo(bar, baz); // a comment here\n" % i for i in range(20000))
    prose = "".join(("Words and words with a *little* `code` and a [link](/x), %d.\n\n" % i) * 1
                    for i in range(14000))
    block = "```rust\n" + "".join("let x%d = foo(bar, \"baz\"); // a comment here\n" % i
                                 for i in range(100)) + "```\n\n"
    tutorial = "".join("Step %d of the tutorial.\n\n%s" % (i, block) for i in range(180))
    return [
        ("small post (the baseline)", "Hello.\n\n```rust\nlet x = 1;\n```\n"),
        ("one paragraph of 480,000 one-letter lines", "a\n" * 480000),
        ("240,000 emphasised words in one paragraph", "*a* " * 240000 + "\n"),
        ("30,000-row table", "| a | b | c |\n|---|---|---|\n" + "".join("| %d | x | y |\n" % i for i in range(30000))),
        ("3,000-row table", "| a | b | c |\n|---|---|---|\n" + "".join("| %d | x | y |\n" % i for i in range(3000))),
        ("20,000-line Rust code block", "```rust\n" + code + "```\n"),
        ("prose, 14,000 paragraphs", prose),
        ("highlighted Rust, 180 blocks of 100 lines", tutorial),
    ]


def heavy(b):
    """heavy. One post at a time that once cost nib far more memory than its size
    (issue: a 1.3 MB post peaked at 48 times its size): a cold start on a site holding
    only that post, its VmHWM against the same start with a small post, and whether nib
    published it or skipped it with a log line (target: growth <= 3 x the post)."""
    section("heavy. cold start with one heavy post: VmHWM growth over a small post's start")
    base = None
    for name, body in heavy_posts():
        site = b.work / "heavy"
        shutil.rmtree(site, ignore_errors=True)
        (site / "posts").mkdir(parents=True)
        text = HEAVY_FM + body
        (site / "posts" / "heavy.md").write_text(text)
        p = serve_site(b, site, "heavy", "the heavy-post site")
        hwm, _, _ = proc_mem(p.pid)
        p.terminate()
        p.wait(timeout=60)
        log = (b.work / "heavy.err").read_text(errors="replace")
        skipped = "skipping" in log and "heavy.md" in log
        size_kb = len(text.encode()) // 1024
        if base is None:
            base = hwm
            print("  %-44s %6d KB: VmHWM %s" % (name, size_kb, mb(hwm)))
            continue
        grew = max(0, hwm - base)
        ok = grew <= 3 * size_kb
        print("  %-44s %6d KB: VmHWM %s, growth %s = %.1f x the post, %s   (target <= 3 x: %s)"
              % (name, size_kb, mb(hwm), mb(grew), grew / max(size_kb, 1),
                 "skipped with a log line" if skipped else "published", "ok" if ok else "MISSED"))
        b.row("heavy post: %s (%d KB): VmHWM growth" % (name, size_kb),
              "%s (%.1fx)%s" % (mb(grew), grew / max(size_kb, 1), ", skipped" if skipped else ""),
              "<= 3x")
