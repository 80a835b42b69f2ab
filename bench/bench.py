#!/usr/bin/env python3
"""nib benchmark: speed and memory of the blog and the short links, restarts under load,
hostile clients (no single connection, post file or header may freeze, bloat or crash
nib), the static deploy build against the dynamic one, and a migrated blog's index,
measured on this machine.

    python3 bench/bench.py [--quick] [PART ...]

With no PART, every part runs. A PART is one of the letters a-f below (several may be
run together: "ae") or one of the names headroom, slow, fairness, flood, builds, real,
heavy; e.g.
`python3 bench/bench.py slow` or `python3 bench/bench.py --quick headroom flood`.
--quick shortens the runs (BENCH_SECONDS=3 unless set, 3 fairness runs, 1 round in
part c) to check the bench itself; its figures are not the ones to quote.

Environment:
  BENCH_SECONDS   length of each wrk run (default 10)
  BENCH_POSTS     posts in the generated site (default 10000)
  BENCH_KEEP=1    keep the temporary directory (site, configs, logs) and print its path
  BENCH_NIB=PATH  bench this nib binary instead of building one (e.g. to compare builds)
  BENCH_ROUNDS    rounds of the alternating runs in part c (default 3; medians reported)
  BENCH_FAIR_RUNS runs in part fairness (default 10)
  BENCH_PARTS     the parts, as on the command line (default: all); a always runs,
                  since the others use its database (e.g. BENCH_PARTS=ae re-runs the
                  short-link figures alone)

Everything runs against 127.0.0.1 on free ports, from a temporary directory; every
process the bench starts is stopped when it exits, however it exits, and every run is
bounded in time. It installs wrk and nginx-light with apt-get when they are missing
(that needs root). The binary benched is the static deploy binary (`cargo static` on
x86-64, `cargo static-arm` on aarch64; .cargo/config.toml), unless BENCH_NIB names one.

What it measures (each figure is printed with its target):
  a. cold start: launch on a fresh database until GET / answers 200; then 100,000
     short links go into the database (bench/load-links.py), for every later part
  b. memory: VmHWM / VmRSS / threads after wrk mixed-page runs, direct and via nginx
  c. post page requests/s against nginx baselines, nginx with one worker
  d. binary size and linkage
  e. short links: redirect requests/s against nginx's `return 302`; peak RSS under
     wrk at random codes of the 100,000, the API list and a preview page once each,
     and where the memory is (binary, heap, stacks)
  f. process life: 5 SIGHUPs under wrk -t2 -c4 keep-alive, direct and via
     nginx (requests, errors, same PID, 6 "nib: serving" lines); 400 idle/half-sent
     sockets plus 100 KB headers and 100 MB bodies at nginx while wrk reads pages
     (nib's memory, threads, fds; page latency); 100 idle/half-sent sockets straight
     at nib until its guard closes them (bench/hostile.py)
  headroom: nib's VmHWM after the mixed load (every kind of page, feed, sitemap and
     short link; wrk -t2 -c8, Connection: close), three runs on a fresh nib each
     (target <= 3.3 MB every run)
  slow: 50 clients GET an 8 MB static file with a 4 KB receive buffer and never read,
     20 send half a POST body, for 15 s, while 4 other clients GET post pages for
     10 s (bench/slow.py): their p99, nib's VmHWM, and whether nib's threads and fds
     return to where they were; direct and via nginx (target p99 < 50 ms,
     VmHWM < 4 MB, threads and fds back)
  fairness: ten wrk -t2 -c32 keep-alive runs on one short link, one after the other
     on one nib: each run's requests/s, the median, min / median (target >= 0.8); then
     20 rounds of 32 keep-alive connections opened at once and 20 more while those stay
     open (bench/burst.py): the worst time to a first answer (target <= 100 ms)
  flood: 6 connections each stream one endless header line for 10 s (nib's RSS
     growth, target < 1 MB), and one request with 5,000 short headers (the status,
     target 431) (bench/flood.py)
  builds: the static deploy binary and the dynamic one (`cargo build --release`), both
     built here: size, linkage, idle VmRSS after start and VmHWM under a short mixed
     load (at most 5 s), each on a fresh nib
  real: 1,000 posts shaped like blogs moved from Jekyll, Hugo and Zola (bench/gen-real.py:
     bundles with images, .markdown, -0700 dates, aliases, shortcodes, sections): the
     time `nib check` takes to index them and what it says, then a cold start to the
     first 200 and its VmHWM (targets <= 3 s, <= 3.5 MB)
  heavy: a cold start on a site of one heavy post at a time (a paragraph of 480,000
     lines, 240,000 emphasised words, tables of 3,000 and 30,000 rows, a 20,000-line
     code block, 1 MB of prose, 800 KB of highlighted code in 180 blocks): VmHWM growth
     over a small post's start, and whether nib published or skipped it (target: growth
     <= 3 x the post)
and ends with a Markdown table of every figure, ready to paste into a note.

The code: bench.py reads the options and runs the parts in order; parts.py holds one
function per figure; harness.py the shared plumbing (processes, ports, HTTP, wrk,
/proc); nginxconf.py the nginx configurations. The other files are helpers they run.
"""

import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True   # no __pycache__ in the work tree for the modules below
import parts as P  # noqa: E402
from harness import Bench, BenchError, section, slug  # noqa: E402

NAMED = ["headroom", "slow", "fairness", "flood", "builds", "real", "heavy"]
ALL_PARTS = "abcdef " + " ".join(NAMED)


class Config:
    """The options, from the command line and the environment."""

    def __init__(self, argv):
        self.quick = False
        words = []
        for arg in argv:
            if arg == "--quick":
                self.quick = True
            elif arg in ("-h", "--help"):
                try:
                    print(__doc__.strip())
                except BrokenPipeError:   # `--help | head`
                    pass
                sys.exit(0)
            elif arg.startswith("-"):
                sys.exit("bench.py: unknown option %s (see --help)" % arg)
            else:
                words.append(arg)
        env = os.environ.get
        self.parts_text = " ".join(words) or env("BENCH_PARTS") or ALL_PARTS
        self.seconds = int(env("BENCH_SECONDS") or (3 if self.quick else 10))
        self.posts = int(env("BENCH_POSTS") or 10000)
        self.keep = env("BENCH_KEEP", "0") == "1"
        self.nib = env("BENCH_NIB") or ""
        self.rounds = int(env("BENCH_ROUNDS") or (1 if self.quick else 3))
        self.fair_runs = int(env("BENCH_FAIR_RUNS") or (3 if self.quick else 10))
        # The parts asked for, one a word: "ae slow" -> a e slow.
        self.parts = []
        for word in self.parts_text.replace(",", " ").split():
            if re.fullmatch(r"[a-f]+", word):
                self.parts += list(word)
            elif word in NAMED:
                self.parts.append(word)
            else:
                sys.exit("bench.py: unknown part '%s' (parts: a-f, %s)" % (word, ", ".join(NAMED)))


def need_tools():
    """wrk, nginx and the small tools the figures use; apt-get them when root."""
    want = {"wrk": "wrk", "nginx": "nginx-light", "file": "file", "ss": "iproute2",
            "size": "binutils", "ldd": "libc-bin"}
    missing = [pkg for cmd, pkg in want.items() if shutil.which(cmd) is None]
    if missing:
        if os.geteuid() != 0:
            sys.exit("bench.py: missing %s: install them, or run as root" % " ".join(missing))
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True)


def first_line(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip().splitlines()[0]


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build_nib(b):
    """The binary benched: BENCH_NIB's, or the static deploy build; a copy either way."""
    section("build")
    if b.cfg.nib:
        src = os.path.realpath(b.cfg.nib)
        if not os.access(src, os.X_OK):
            sys.exit("bench.py: BENCH_NIB=%s is not an executable" % b.cfg.nib)
        b.nib_bin = b.work / "nib"
        shutil.copy2(src, b.nib_bin)
        print("  %s (BENCH_NIB, not built; benched as a copy, %s)" % (src, b.nib_bin))
    else:
        b.nib_bin = b.build("static")


def make_site(b):
    """The generated site, and the mixed-page paths every load part reads. File names
    sort oldest first. The mix reads the newest post (page 1), posts from deep in the
    archive, a tag page and the feed, like readers and feed fetchers do; then the other
    feeds, the sitemap, a deep archive page and a tag's second page, so every kind of
    public answer is in it (three short links join after part a). The first nine stay
    in place: parts f and slow take posts from them by index."""
    section("site")
    subprocess.run([sys.executable, b.script("gen-site.py"), b.site, str(b.cfg.posts)], check=True, timeout=600)
    size = sum(f.stat().st_size for f in (b.site / "posts").iterdir())
    print("  %d posts, %.1fM of Markdown in %s/posts" % (b.cfg.posts, size / 1048576, b.site))
    names = sorted(os.listdir(b.site / "posts"))
    n = len(names)
    m = re.search(r"^tags: \[([^],]*)", (b.site / "posts" / names[-1]).read_text(), re.M)
    tag = m.group(1) if m else ""
    b.post_slug = slug(names[n // 2])
    b.mixed = ["/", "/page/2/", "/posts/%s/" % slug(names[-1]), "/posts/%s/" % b.post_slug, "/tags/",
               "/posts/%s/" % slug(names[n * 3 // 4]), "/tags/%s/" % tag, "/feed.xml",
               "/posts/%s/" % slug(names[0]), "/static/style.css",
               "/rss.xml", "/sitemap.xml", "/page/50/", "/tags/%s/page/2/" % tag]


def run(b):
    cfg = b.cfg
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    need_tools()
    print("nib bench: %d posts, %ds per wrk run, %d CPUs (%s), parts %s"
          % (cfg.posts, cfg.seconds, os.cpu_count(), cpu, cfg.parts_text), flush=True)
    # Other work on the machine moves every figure; say how busy it was.
    print("  load average at start: %s" % loadavg())
    print("  %s, %s" % (first_line(["nginx", "-v"]), " ".join(first_line(["wrk", "-v"]).split()[:3])))
    print("  temp dir: %s" % b.work)
    build_nib(b)
    make_site(b)

    P.cold_start(b)
    P.load_links(b)
    codes = b.codes()
    b.mixed += ["/" + codes[0], "/" + codes[P.LINK_N // 2], "/" + codes[-1]]
    want = cfg.parts.__contains__
    if want("b"):
        P.memory(b)
    if want("c"):
        P.post_page(b)
    if want("d"):
        P.binary(b)
    if want("e"):
        section("e. short links")
        P.redirects(b)
        P.many_links(b)
    if want("f"):
        P.restarts(b)
        P.hostile_via_nginx(b)
        P.hostile_direct(b)
    for name, fn in (("headroom", P.headroom), ("slow", P.slow), ("fairness", P.fairness),
                     ("flood", P.flood), ("builds", P.builds), ("real", P.real),
                     ("heavy", P.heavy)):
        if want(name):
            fn(b)
    print_summary(b, cpu)


def print_summary(b, cpu):
    section("summary (Markdown)")
    print()
    print("nib bench, %s, %d posts, %ds wrk runs, %d CPUs (%s), load average at the end %s"
          % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), b.cfg.posts, b.cfg.seconds,
             os.cpu_count(), cpu, loadavg()))
    print()
    print("| %-52s | %-24s | %-10s |" % ("figure", "value", "target"))
    print("|%s|%s|%s|" % ("-" * 54, "-" * 26, "-" * 12))
    for figure, value, target in b.rows:
        print("| %-52s | %-24s | %-10s |" % (figure, value, target))


def main():
    cfg = Config(sys.argv[1:])

    # A signal becomes a normal exit, so the finally below stops every process.
    def on_signal(signum, _frame):
        sys.exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    b = Bench(cfg)
    try:
        run(b)
    except BenchError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
