#!/usr/bin/env python3
"""Write .cargo/hot-code.txt: the functions nib runs while it serves, then those it runs
only while it starts, for the linker to lay out first (`cargo static` passes the file to
lld as `--symbol-ordering-file`).

    python3 bench/hotcode.py

Why: the kernel maps a program's code 64 KB around each page a request touches, and the
code a request runs is spread over the whole 2.5 MB text of the static binary, so nearly
all of it was resident. Laid out together, what serving runs (about 650 KB) and what
starting runs (about 190 KB more) fill a few 64 KB blocks, and the rest of the text is
never mapped (bench part headroom: 4.1 MB peak before, 2.7 MB after).

How: it builds the static binary as `cargo static` does, but with its symbols (into
target/hotcode; the symbol names are the same, since rustflags do not enter cargo's
symbol hashes), makes a small site (bench/gen-site.py, 300 posts, 1,000 short links),
runs nib under valgrind's callgrind on 127.0.0.1, dumps the functions that ran once nib
serves, then drives every kind of answer the benches ask for (pages, feeds, the sitemap,
files whole and in ranges, short links, 304s, 404s, 405, the login form, slow readers
and half-sent bodies through bench/slow.py, keep-alive and `Connection: close`), idles a
minute (housekeeping and the scan of posts/), dumps again, and writes the serving set (most run first) and then the start-up-only set.
Names missing from a later build cost only their layout: lld skips them. Rerun it after
changing the code or the toolchain; it touches src/main.rs, since cargo does not know the
list is an input of the link. Needs valgrind; takes a few minutes; every process
it starts is stopped when it exits, and every wait is bounded.
"""

import collections
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"   # never anything else
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".cargo" / "hot-code.txt"
POSTS = 300
LINKS = 1000


def die(msg):
    sys.exit("hotcode: " + msg)


def triple():
    machine = os.uname().machine
    if machine not in ("x86_64", "aarch64"):
        die("only x86_64 and aarch64 Linux are laid out")
    return machine + "-unknown-linux-gnu"


def build():
    """The static release binary with its symbols; its path."""
    t = triple()
    flags = "target.%s.rustflags=['-C','target-feature=+crt-static','-C','strip=none']" % t
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target" / "hotcode"))
    subprocess.run(["cargo", "build", "--release", "--target", t, "--config", flags],
                   cwd=REPO, env=env, check=True, timeout=3600)
    return REPO / "target" / "hotcode" / t / "release" / "nib"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get(port, path, method="GET", headers=None, body=None):
    """One request on its own connection; the status, or None when it failed."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=60)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


def keep_alive(port, paths):
    """Several requests on one connection."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=60)
        for p in paths:
            c.request("GET", p)
            c.getresponse().read()
        c.close()
    except OSError:
        pass


def wait_serving(err, proc, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            die("nib exited while starting: " + err.read_text(errors="replace")[-2000:])
        if "nib: serving" in err.read_text(errors="replace"):
            return
        time.sleep(0.1)
    die("nib did not start within %d s" % seconds)


def functions(path):
    """Function name -> instructions run, from a callgrind dump."""
    cost = collections.Counter()
    cur = None
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                cur = re.sub(r"'\d+$", "", line[3:].strip())
                continue
            m = re.match(r"^(\+?\d+|\*|-\d+)\s+(\d+)", line)
            if m and cur:
                cost[cur] += int(m.group(2))
    return cost


def text_symbols(binary):
    out = subprocess.run(["nm", "-S", str(binary)], capture_output=True, text=True, check=True).stdout
    return {p[3] for p in (l.split() for l in out.splitlines()) if len(p) == 4 and p[2] in "tTwWiI"}


def drive(port, site, codes, nib_pid):
    names = sorted(os.listdir(site / "posts"))
    slug = lambda n: re.sub(r"^\d{4}-\d\d-\d\d-", "", n).rsplit(".", 1)[0]
    tag = re.search(r"^tags: \[([^],]*)", (site / "posts" / names[-1]).read_text(), re.M).group(1)
    paths = ["/", "/page/2/", "/page/5/", "/tags/", "/tags/%s/" % tag, "/tags/%s/page/2/" % tag,
             "/feed.xml", "/rss.xml", "/sitemap.xml", "/static/style.css", "/robots.txt",
             "/favicon.ico", "/healthz"]
    paths += ["/posts/%s/" % slug(names[i]) for i in (0, len(names) // 2, -1)]
    paths += ["/" + c for c in codes[:3]] + ["/%s+" % codes[0]]
    for _ in range(3):
        for p in paths:
            get(port, p, headers={"Connection": "close"})
            get(port, p)
        keep_alive(port, paths)
        get(port, "/static/big.bin", "HEAD")
        get(port, "/static/big.bin", headers={"Range": "bytes=100-200"})
        get(port, "/tags/", headers={"If-None-Match": '"x"'})
        for p in ("/nope/", "/posts/nope/", "/zzzzzzz", "/admin/"):
            get(port, p)
        get(port, "/", "DELETE")
        get(port, "/admin/login", "POST", {"Content-Type": "application/x-www-form-urlencoded"}, b"token=bad")
    # An ETag the page really has, for the 304.
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=60)
        c.request("GET", "/tags/")
        r = c.getresponse()
        r.read()
        etag = r.getheader("ETag")
        c.close()
        if etag:
            get(port, "/tags/", headers={"If-None-Match": etag})
    except OSError:
        pass
    get(port, "/static/big.bin")
    subprocess.run([sys.executable, str(REPO / "bench" / "slow.py"), str(port), "--pid", str(nib_pid),
                    "--big", "/static/big.bin", "--page", "/tags/", "--readers", "10", "--posts", "5",
                    "--measure", "2", "--hold", "17", "--label", "hotcode"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def main():
    for tool in ("valgrind", "callgrind_control", "cargo", "nm"):
        if shutil.which(tool) is None:
            die("%s not found" % tool)
    binary = build()
    symbols = text_symbols(binary)
    work = Path(tempfile.mkdtemp(prefix="nib-hotcode."))
    procs = []
    try:
        site = work / "site"
        subprocess.run([sys.executable, str(REPO / "bench" / "gen-site.py"), str(site), str(POSTS)],
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
        (site / "static" / "big.bin").write_bytes(bytes(8 << 20))
        db = site / "nib.db"
        # A first start makes the database; the links go in while nib is stopped.
        port = free_port()
        err = work / "first.err"
        p = subprocess.Popen([binary, "--root", site, "--db", db, "--listen", "%s:%d" % (HOST, port), "serve"],
                             stdout=subprocess.DEVNULL, stderr=open(err, "wb"), stdin=subprocess.DEVNULL)
        procs.append(p)
        wait_serving(err, p, 120)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        codes_file = work / "codes.txt"
        subprocess.run([sys.executable, str(REPO / "bench" / "load-links.py"), str(db), str(LINKS), str(codes_file)],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)
        codes = codes_file.read_text().split()

        port = free_port()
        err = work / "cg.err"
        env = dict(os.environ)
        # Set, so nib does not re-execute itself (valgrind would lose it at the exec).
        env["GLIBC_TUNABLES"] = ("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0:"
                                 "glibc.malloc.trim_threshold=65536:glibc.malloc.mmap_threshold=65536")
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.%%p" % work,
                              "--dump-instr=no", "--compress-strings=no", "--demangle=no",
                              binary, "--root", site, "--db", db, "--listen", "%s:%d" % (HOST, port), "serve"],
                             stdout=subprocess.DEVNULL, stderr=open(err, "wb"), stdin=subprocess.DEVNULL, env=env)
        procs.append(p)
        wait_serving(err, p, 300)
        time.sleep(1)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drive(port, site, codes, p.pid)
        # The idle loop's housekeeping, and the scan of posts/ a minute brings.
        time.sleep(62)
        get(port, "/")
        time.sleep(1)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
        start = functions(work / ("cg.%d.1" % p.pid))
        serve = functions(work / ("cg.%d.2" % p.pid))
        hot = [f for f, _ in serve.most_common() if f in symbols]
        seen = set(hot)
        cold = [f for f, _ in start.most_common() if f in symbols and f not in seen]
        OUT.write_text("\n".join(hot + cold) + "\n")
        # cargo does not know the list is an input of the link: a newer main.rs makes the
        # next `cargo static` link again.
        os.utime(REPO / "src" / "main.rs")
        print("hotcode: %d functions run while serving, %d more while starting; wrote %s"
              % (len(hot), len(cold), OUT.relative_to(REPO)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
