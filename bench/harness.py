"""The shared harness of bench/bench.py: one temporary directory, free ports on
127.0.0.1, the processes the bench starts (nib, nginx, wrk, the helper scripts) and
their stopping, HTTP requests, wrk runs and their figures, readings from /proc, and the
rows of the final summary table.

Every process started through a `Bench` is stopped by `Bench.close`, which bench.py
calls however the run ends (an error, Ctrl-C, SIGTERM). nib hands its socket to a new
process on some restarts (src/lifecycle.rs, "The handover"); that process is not our
child, so the bench makes itself a child subreaper (prctl): an orphaned successor is
then reparented to the bench rather than to init, and `close` finds and stops it with
the rest. Nothing here talks to any address but 127.0.0.1, and every wait is bounded.
"""

import ctypes
import http.client as httplib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"   # the only address the bench ever talks to
PR_SET_CHILD_SUBREAPER = 36
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A failure that ends the run with a one-line message."""


def die(msg):
    raise BenchError(msg)


def section(title):
    print("\n== %s" % title, flush=True)


def mb(kb):
    """kB as "1.23 MB"."""
    return "%.2f MB" % (float(kb) / 1024)


def mb3(a, b, c):
    return "%.2f / %.2f / %.2f MB" % (a / 1024, b / 1024, c / 1024)


def ratio(a, b):
    return "%.2f" % (a / b if b > 0 else 0)


def verdict(r, target):
    return "ok" if float(r) >= target else "BELOW TARGET"


def median(values):
    """The middle value (the lower middle for an even count)."""
    v = sorted(values)
    return v[(len(v) + 1) // 2 - 1]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc

def proc_mem(pid):
    """(VmHWM kB, VmRSS kB, threads) of PID; zeros when it is gone."""
    want = {"VmHWM:": 0, "VmRSS:": 0, "Threads:": 0}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in want:
                    want[parts[0]] = int(parts[1])
    except OSError:
        pass
    return want["VmHWM:"], want["VmRSS:"], want["Threads:"]


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def cpu_us(stat_path):
    """CPU time (utime + stime) from a /proc stat file, in µs. A process's figure
    includes its threads that have ended; /proc/PID/task/TID/stat is one thread's."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) * 1_000_000 // CLK_TCK


def ppid_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid):
    """PIDs whose parent is PID."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and ppid_of(int(name)) == pid:
            out.append(int(name))
    return out


def listener_pid(port):
    """PID of the process listening on 127.0.0.1:PORT as the kernel sees it (ss -p), so
    a restart that kept the PID and a handover that did not are told apart."""
    try:
        out = subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def alive(pid):
    """Whether PID runs (a zombie does not); reaps it when it is our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid, grace=5.0):
    """TERM, up to GRACE seconds to finish (nib drains requests in flight), then KILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        alive(pid)
        return
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(50):
            if not alive(pid):
                break
            time.sleep(0.02)


# ---------------------------------------------------------------- HTTP

class Answer:
    """One HTTP exchange: status (0 when none came), headers, body length, seconds."""

    def __init__(self, status=0, headers=None, body=b"", secs=0.0):
        self.status, self.headers, self.body, self.secs = status, headers or {}, body, secs

    def header(self, name):
        return self.headers.get(name.lower(), "")


def request(port, path, method="GET", headers=None, body=None, timeout=5.0):
    """One request to 127.0.0.1:PORT on a new connection, timed from connect to the
    last byte. Never raises for network trouble: status 0 says nothing came."""
    t0 = time.monotonic()
    conn = httplib.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        secs = time.monotonic() - t0
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data, secs)
    except (OSError, httplib.HTTPException):
        return Answer(0, secs=time.monotonic() - t0)
    finally:
        conn.close()


# ---------------------------------------------------------------- wrk

class Wrk:
    """The figures of one wrk run, parsed from its --latency output."""

    def __init__(self, text):
        self.text = text
        m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
        self.rps = int(round(float(m.group(1)))) if m else 0
        m = re.search(r"^\s*(\d+) requests in ", text, re.M)
        self.requests = int(m.group(1)) if m else 0
        self.lat = dict(re.findall(r"^\s+(\d+%)\s+(\S+)", text, re.M))
        m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
        self.max = m.group(1) if m else ""
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        self.socket_errors = tuple(int(x) for x in m.groups()) if m else (0, 0, 0, 0)
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        self.non2xx = int(m.group(1)) if m else 0

    @property
    def p50(self):
        return self.lat.get("50%", "")

    @property
    def p99(self):
        return self.lat.get("99%", "")

    def errors_note(self):
        """wrk's own error lines, joined, to print after a run."""
        lines = [re.sub(r"\s+", " ", l) for l in self.text.splitlines()
                 if "Socket errors" in l or "Non-2xx" in l]
        return ";".join(lines)

    def socket_errors_text(self):
        return "connect %d, read %d, write %d, timeout %d" % self.socket_errors


# ---------------------------------------------------------------- the bench

class Nib:
    """One nib server we started: its process, port, log files and start time."""

    def __init__(self, proc, port, out, err, start_ms):
        self.proc, self.port, self.out, self.err, self.start_ms = proc, port, out, err, start_ms

    @property
    def pid(self):
        return self.proc.pid

    @property
    def base(self):
        return "http://%s:%d" % (HOST, self.port)

    def serving_pid(self):
        """The process serving the port now: nib's own, or its successor's after a
        handover."""
        return listener_pid(self.port) or self.pid

    def stderr(self):
        return Path(self.err).read_text(errors="replace")


class Bench:
    """State shared by the parts: configuration, the work directory, the processes
    started, the nib being benched and the summary rows."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.repo = Path(__file__).resolve().parent.parent
        self.benchdir = self.repo / "bench"
        self.work = Path(tempfile.mkdtemp(prefix="nib-bench.", dir=os.environ.get("TMPDIR")))
        self.site = self.work / "site"
        self.procs = []          # every Popen started, stopped by close()
        self.rows = []           # (figure, value, target) for the summary
        self.nib_bin = None      # the binary benched (a copy in the work directory)
        self.nib = None          # the nib running now, if any
        self.nib_starts = 0
        self.nib_env = {}        # extra environment for nib (the admin token from part e on)
        self.user_line = "user root;" if os.geteuid() == 0 else ""
        self.mixed = []          # the mixed-page paths (bench.py fills them in)
        self.codes_file = self.work / "codes.txt"
        self.post_slug = ""      # the post of part c (bench.py picks it)
        self.built = {}          # kind -> binary built by build()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    # -- summary

    def row(self, figure, value, target=""):
        self.rows.append((figure, str(value), target))

    # -- processes

    def spawn(self, args, **kw):
        """Start a process we own; close() stops it."""
        p = subprocess.Popen([str(a) for a in args], **kw)
        self.procs.append(p)
        return p

    def stop(self, p, grace=5.0):
        if p.poll() is None:
            stop_pid(p.pid, grace)
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def finish(self, p, timeout):
        """Wait up to TIMEOUT seconds for a process that ends by itself, then stop it."""
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print("  warning: %s did not end within %.0f s; stopped" % (Path(p.args[0]).name, timeout))
        self.stop(p)

    def close(self):
        for p in list(self.procs):
            self.stop(p)
        # Processes reparented to us (a nib successor after a handover, say).
        for pid in children_of(os.getpid()):
            stop_pid(pid)
        if self.cfg.keep:
            print("kept: %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- nib

    def start_nib(self, binary=None):
        """Start nib on a fresh port, on the site and its database; wait for 200 on /."""
        self.nib_starts += 1
        n = self.nib_starts
        port = free_port()
        out, err = self.work / ("nib-%d.out" % n), self.work / ("nib-%d.err" % n)
        env = dict(os.environ, **self.nib_env)
        t0 = time.monotonic()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = self.spawn([binary or self.nib_bin, "--root", self.site, "--db", self.site / "nib.db",
                            "--listen", "%s:%d" % (HOST, port), "serve"],
                           stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env)
        if not self.wait_200(port, p, 60):
            sys.stderr.write("".join(Path(err).read_text(errors="replace").splitlines(True)[-20:]))
            die("nib did not answer 200 on / within 60 s")
        start_ms = int((time.monotonic() - t0) * 1000)
        self.nib = Nib(p, port, out, err, start_ms)
        return self.nib

    def stop_nib(self):
        """Stop the running nib and any successor it handed its socket to."""
        if self.nib is None:
            return
        other = listener_pid(self.nib.port)
        self.stop(self.nib.proc)
        if other and other != self.nib.pid:
            stop_pid(other)
        self.nib = None

    def restart_nib(self):
        """A fresh nib on the database kept, so a load phase's VmHWM covers that phase
        and not the indexing peak (reported under a.)."""
        self.stop_nib()
        nib = self.start_nib()
        print("  nib restarted (database kept): %d ms to first 200 on /" % nib.start_ms)
        return nib

    def wait_200(self, port, proc, timeout, path="/"):
        """Poll PORT every 20 ms until PATH answers 200; False if PROC ends or after
        TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if request(port, path, timeout=1).status == 200:
                return True
            if (proc is not None and proc.poll() is not None) or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # -- nginx

    def start_nginx(self, d, port):
        """Check and start the nginx instance in D (config D/nginx.conf) in the
        foreground of a child process, so its PID is ours to stop; wait until it answers."""
        d = Path(d)
        args = ["nginx", "-p", "%s/" % d, "-e", d / "error.log", "-c", d / "nginx.conf"]
        t = subprocess.run([*map(str, args[:1]), "-t", "-q", *map(str, args[1:])], timeout=30)
        if t.returncode != 0:
            die("nginx -t rejected %s/nginx.conf" % d)
        p = self.spawn(args + ["-g", "daemon off;"], stdin=subprocess.DEVNULL)
        for _ in range(250):
            if request(port, "/", timeout=1).status:
                return p
            if p.poll() is not None:
                break
            time.sleep(0.02)
        sys.stderr.write((d / "error.log").read_text(errors="replace"))
        die("nginx in %s did not start" % d)

    # -- wrk

    def wrk(self, name, conns, url, *args, threads=2, seconds=None):
        """Run wrk (bounded), keep its output in WORK/wrk-NAME.txt, return its figures.
        The URL goes before the other arguments: wrk takes the first argument left after
        its options as the URL, and a script's arguments follow "--"."""
        seconds = seconds or self.cfg.seconds
        cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--latency", url, *map(str, args)]
        out = self.work / ("wrk-%s.txt" % re.sub(r"[^\w.,-]+", "-", name))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
            text = r.stdout
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            print("  warning: wrk %s did not end in time" % name)
        out.write_text(text)
        return Wrk(text)

    def run_wrk(self, name, conns, url, *args, **kw):
        """wrk, then one line: req/s, p50, p99 and wrk's error counts."""
        w = self.wrk(name, conns, url, *args, **kw)
        errs = w.errors_note()
        print("  %-44s %7s req/s  p50 %-8s p99 %-8s%s" % (name, w.rps, w.p50, w.p99,
                                                           "  [%s]" % errs if errs else ""), flush=True)
        return w

    def spawn_wrk(self, name, conns, url, *args, threads=2, seconds=None):
        """wrk in the background; returns (process, output file)."""
        seconds = seconds or self.cfg.seconds
        out = self.work / ("wrk-%s.txt" % re.sub(r"[^\w.,-]+", "-", name))
        f = open(out, "w")
        p = self.spawn(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--latency", url, *args],
                       stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        f.close()
        return p, out

    # -- data bench.py prepares

    def codes(self):
        """The short-link codes load_links wrote, in order."""
        if not hasattr(self, "_codes"):
            self._codes = self.codes_file.read_text().split()
        return self._codes

    def parse_wrk(self, path):
        return Wrk(Path(path).read_text(errors="replace"))

    # -- builds

    def build(self, kind):
        """Build nib with cargo, KIND "static" (the deploy binary: `cargo static` on
        x86-64, `cargo static-arm` on aarch64; see .cargo/config.toml) or "dynamic"
        (`cargo build --release`), and return a copy of it in the work directory: a
        rebuild in the work tree during the run (someone else's cargo build) must not
        swap the binary under the later restarts. cargo names the executable in its
        JSON messages, wherever CARGO_TARGET_DIR puts it."""
        if kind in self.built:
            return self.built[kind]
        if kind == "static":
            args = ["static-arm" if os.uname().machine == "aarch64" else "static"]
        else:
            args = ["build", "--release"]
        if shutil.which("cargo") is None:
            die("cargo not found (https://rustup.rs)")
        r = subprocess.run(["cargo", *args, "--message-format=json-render-diagnostics"], cwd=self.repo,
                           stdout=subprocess.PIPE, text=True, timeout=3600)
        if r.returncode != 0:
            die("cargo %s failed" % " ".join(args))
        exe = None
        for line in r.stdout.splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if (m.get("reason") == "compiler-artifact" and m["target"]["name"] == "nib"
                    and m.get("executable")):
                exe = m["executable"]
        if not exe or not os.access(exe, os.X_OK):
            die("cargo built no nib executable")
        copy = self.work / ("nib-" + kind)
        shutil.copy2(exe, copy)
        print("  %s build: %s (`cargo %s`; benched as a copy, %s)" % (kind, exe, " ".join(args), copy))
        self.built[kind] = copy
        return copy

    # -- helper scripts

    def script(self, name):
        return self.benchdir / name

    def run_reporting(self, args, timeout):
        """Run a helper that prints lines for a person and "ROW|figure|value|target" lines
        for the summary; print the former as they come and keep the latter as rows."""
        p = self.spawn([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                       stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, lambda: p.poll() is None and p.kill())
        timer.start()
        try:
            for line in p.stdout:
                line = line.rstrip("\n")
                if line.startswith("ROW|"):
                    _, figure, value, target = (line.split("|") + ["", "", ""])[:4]
                    self.row(figure, value, target)
                else:
                    print(line, flush=True)
            rc = p.wait()
        finally:
            timer.cancel()
            self.stop(p)
        if rc != 0:
            print("  warning: %s exited with status %d" % (Path(str(args[0])).name, rc))


class Sampler:
    """Samples a process every INTERVAL seconds in a thread: the largest VmRSS, threads
    and fds seen, the last and the largest VmHWM. VmHWM read once after a run is not
    enough: on the measured kernel (its RSS counters are per-CPU and approximate) it
    read 4.12 MB during a run and 3.92 MB after it."""

    def __init__(self, pid, interval=0.2):
        self.pid, self.interval = pid, interval
        self.hwm = self.max_hwm = self.rss = self.threads = self.fds = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        h, r, t = proc_mem(self.pid)
        if h == 0:
            return
        self.hwm = h
        self.max_hwm = max(self.max_hwm, h)
        self.rss = max(self.rss, r)
        self.threads = max(self.threads, t)
        self.fds = max(self.fds, fd_count(self.pid))

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)


def slug(filename):
    """A post's slug from its file name: without .md and the YYYY-MM-DD- prefix."""
    name = filename[:-3] if filename.endswith(".md") else filename
    return name[11:] if re.match(r"^\d{4}-\d{2}-\d{2}-", name) else name


def best_of(n, fn):
    """The fastest of N answers from FN()."""
    return min((fn() for _ in range(n)), key=lambda a: a.secs)

