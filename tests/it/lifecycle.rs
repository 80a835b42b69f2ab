//! Process-life tests against the real binary on loopback: restarts in place under load
//! (directly and through nginx with deploy/nginx.conf), graceful stop during a download,
//! descriptors returning to baseline, the connection guard, a bad config at SIGHUP, the
//! accept thread's death, and a huge Content-Length. Every test is bounded in time.

use std::collections::HashSet;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

fn site() -> Site {
    let s = Site::new();
    s.post("2024-01-02-hello.md", "# Hello\n\nSome text.\n");
    s.post("2024-01-03-second.md", "# Second\n\nMore text.\n");
    s
}

fn serving_lines(s: &TestServer) -> usize {
    s.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("nib: serving http://"))
        .count()
}

fn wait_line(s: &TestServer, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
    eventually(within, || s.stderr.lock().unwrap().iter().any(|l| pred(l)))
}

/// One client of the load: GETs in a loop until `stop`, over one keep-alive connection
/// or a new connection per request. A keep-alive connection that the server closes
/// between requests (before a single byte of the answer) is retried once on a new
/// connection, as browsers and HTTP libraries do; anything else is a failure.
fn load_client(addr: SocketAddr, keep_alive: bool, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let paths = ["/", "/posts/hello/", "/feed.xml", "/healthz"];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = paths[i % paths.len()];
        i += 1;
        let attempt = |conn: &mut Option<BufReader<TcpStream>>,
                       reused: bool|
         -> Result<u16, (bool, String)> {
            if conn.is_none() {
                let s = TcpStream::connect(addr).map_err(|e| (false, format!("connect: {e}")))?;
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                *conn = Some(BufReader::new(s));
            }
            let r = conn.as_mut().unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\n{}\r\n",
                if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            );
            if let Err(e) = r.get_mut().write_all(req.as_bytes()) {
                return Err((reused, format!("send: {e}")));
            }
            let mut first = [0u8; 1];
            match r.read(&mut first) {
                Ok(0) => return Err((reused, "closed before answering".into())),
                Err(e) => return Err((reused, format!("read: {e}"))),
                Ok(_) => {}
            }
            let mut rest = BufReader::new(std::io::Cursor::new(first.to_vec()).chain(r));
            let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_response(&mut rest, false)
            }))
            .map_err(|_| (false, "truncated response".to_string()))?;
            Ok(resp.status)
        };
        let reused = conn.is_some();
        let mut result = attempt(&mut conn, reused);
        if let Err((true, _)) = &result {
            // The connection was reused and closed between requests: retry fresh.
            conn = None;
            result = attempt(&mut conn, false);
        }
        match result {
            Ok(200) => ok += 1,
            Ok(st) => failures.push(format!("{path}: status {st}")),
            Err((_, ref e)) => failures.push(format!("{path}: {e}")),
        }
        if !keep_alive || result.is_err() {
            conn = None;
        }
    }
    (ok, failures)
}

/// Runs `clients` load threads while `during` runs, then returns (successes, failures).
fn under_load(addr: SocketAddr, during: impl FnOnce()) -> (usize, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || load_client(addr, i % 2 == 0, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    during();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    let mut failures = Vec::new();
    for t in threads {
        let (o, f) = t.join().unwrap();
        ok += o;
        failures.extend(f);
    }
    (ok, failures)
}

fn five_restarts(s: &TestServer) {
    for n in 2..=6 {
        s.signal("HUP");
        assert!(
            eventually(Duration::from_secs(10), || serving_lines(s) >= n),
            "restart {n} did not finish: {}",
            s.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn five_sighups_under_load_lose_nothing_and_keep_the_pid() {
    let site = site();
    let mut s = TestServer::start(&site);
    let pid = s.pid();
    let (ok, failures) = under_load(s.addr, || five_restarts(&s));
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}\n{}",
        failures.len(),
        s.stderr_text()
    );
    assert!(ok > 100, "only {ok} requests");
    assert_eq!(serving_lines(&s), 6, "{}", s.stderr_text());
    assert_eq!(s.child.try_wait().unwrap(), None, "still running");
    assert_eq!(s.pid(), pid);
    // The process behind the PID is still nib and still answers.
    assert!(std::fs::read_link(format!("/proc/{pid}/exe")).is_ok());
    assert_eq!(s.get("/healthz").status, 200);
    eprintln!("{ok} requests answered across 5 restarts");
}

#[test]
fn everything_but_the_listener_is_close_on_exec() {
    let site = site();
    let s = TestServer::start(&site);
    // The loop opens descriptors for a moment (a scan of posts/, a socket it shuts): the
    // fewest seen over a fifth of a second is the baseline.
    let before = (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            fd_count(s.pid())
        })
        .min()
        .unwrap_or(0);
    s.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || serving_lines(&s) >= 2));
    assert_eq!(s.get("/").status, 200);
    // Same descriptors after the exec: nothing leaked into the new image.
    assert!(
        eventually(Duration::from_secs(3), || fd_count(s.pid()) == before),
        "fds before {before}, after {}: {:?}",
        fd_count(s.pid()),
        std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_link(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    let fd3 = std::fs::read_link(format!("/proc/{}/fd/3", s.pid())).unwrap();
    assert!(fd3.to_string_lossy().starts_with("socket:"), "{fd3:?}");
}

#[test]
fn bad_config_at_sighup_keeps_the_old_server() {
    let site = site();
    let s = TestServer::start(&site);
    site.write("nib.toml", "titel = 'typo'\n");
    s.signal("HUP");
    assert!(
        wait_line(&s, Duration::from_secs(10), |l| l
            .contains("not restarting")
            && l.contains("titel")),
        "{}",
        s.stderr_text()
    );
    assert_eq!(s.get("/").status, 200);
    assert_eq!(serving_lines(&s), 1);
    // Fixed, the next SIGHUP restarts and picks the config up.
    site.write("nib.toml", "title = 'Renamed'\n");
    s.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || serving_lines(&s) >= 2));
    assert!(s.get("/").text().contains("Renamed"));
}

#[test]
fn sigterm_lets_a_slow_download_finish_and_exits_zero() {
    let site = site();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("static/big.bin"), &big).unwrap();
    let mut s = TestServer::start(&site);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::with_capacity(big.len() + 1024);
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut signalled = false;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if !signalled && got.len() > 1024 * 1024 {
            s.signal("TERM");
            signalled = true;
        }
        // A slow reader: about 40 MB/s at most, so the stop arrives mid-download.
        std::thread::sleep(Duration::from_millis(5));
    }
    // tiny_http sends large bodies chunked; the harness's reader decodes that.
    let resp = read_response(&mut BufReader::new(std::io::Cursor::new(got)), false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), big.len(), "the whole file arrived");
    assert!(resp.body == big);
    assert_eq!(
        s.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        s.stderr_text()
    );
    eprintln!("download took {:?}", started.elapsed());
}

#[test]
fn descriptors_return_to_baseline_after_mixed_and_aborted_requests() {
    let site = site();
    let s = TestServer::start(&site);
    let pid = s.pid();
    assert_eq!(s.get("/").status, 200);
    let baseline = fd_count(pid);
    let addr = s.addr;
    let threads: Vec<_> = (0..3)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..500 {
                    match (i + t) % 5 {
                        0 => assert_eq!(get(addr, "/").status, 200),
                        1 => assert_eq!(get(addr, "/nope").status, 404),
                        2 => {
                            // Aborted mid-request.
                            let mut c = TcpStream::connect(addr).unwrap();
                            let _ = c.write_all(b"GET /posts/hel");
                        }
                        3 => {
                            // Connected and gone without a byte.
                            drop(TcpStream::connect(addr).unwrap());
                        }
                        _ => {
                            // Aborted while the answer is on its way.
                            let mut c = TcpStream::connect(addr).unwrap();
                            let _ = c.write_all(b"GET /feed.xml HTTP/1.1\r\nHost: t\r\n\r\n");
                            let _ = c.read(&mut [0u8; 10]);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || fd_count(pid) <= baseline),
        "fds: baseline {baseline}, now {}",
        fd_count(pid)
    );
}

/// Opens `n` connections that each send half a request header.
fn half_sent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            c
        })
        .collect()
}

/// Whether the server has closed (or shut down) this connection.
fn closed_by_server(mut c: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn guard_reaps_idle_and_half_sent_sockets() {
    let site = site();
    let s = TestServer::start(&site);
    let slow = half_sent(s.addr, 50);
    let idle: Vec<TcpStream> = (0..10)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            c
        })
        .collect();
    // Others are served meanwhile. Usually at once; but tiny_http's thread pool can queue a
    // new connection behind threads that are all blocked on half-sent headers (a race in
    // its spawn), and then only the guard's header deadline frees a thread. Direct clients
    // are therefore bounded by that deadline; through nginx (the deployment) the bound is
    // the < 1 s checked in `nginx_absorbs_hostile_clients_while_others_are_served`.
    let t = Instant::now();
    assert_eq!(s.get("/").status, 200);
    assert!(
        t.elapsed() < nib::test_support::HEADER_DEADLINE + Duration::from_secs(2),
        "took {:?}\n{}",
        t.elapsed(),
        s.stderr_text()
    );
    // The guard's idle limit is 5 s from each socket's last byte; silent sockets reach nib
    // only when the kernel's accept deferral ends (1-3 s, see `silent_connections_wait_in_
    // the_kernel`), and a loaded test machine accepts them late, so give the sweeps a few
    // seconds past the limit rather than one fixed instant.
    std::thread::sleep(Duration::from_secs(5));
    let mut closed = vec![false; slow.len() + idle.len()];
    let all_cut = eventually(Duration::from_secs(5), || {
        for (done, c) in closed.iter_mut().zip(slow.iter().chain(idle.iter())) {
            *done = *done || closed_by_server(c);
        }
        closed.iter().all(|d| *d)
    });
    assert!(
        all_cut,
        "{} of 60 cut\n{}",
        closed.iter().filter(|d| **d).count(),
        s.stderr_text()
    );
    assert!(wait_line(&s, Duration::from_secs(1), |l| l
        .starts_with("nib: guard: closed")));
    let t = Instant::now();
    assert_eq!(s.get("/").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// The listener defers accepting until a request begins (TCP_DEFER_ACCEPT): connections
/// that say nothing cost nib neither a descriptor nor a thread meanwhile, and a request
/// that follows them is served at once.
#[test]
fn silent_connections_wait_in_the_kernel() {
    let site = site();
    let s = TestServer::start(&site);
    let pid = s.pid();
    assert_eq!(s.get("/").status, 200);
    let fds = fd_count(pid);
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(s.get("/").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        fd_count(pid) < fds + 4,
        "{} descriptors with 20 silent connections, {fds} before",
        fd_count(pid)
    );
    drop(silent);
}

#[test]
fn max_connections_is_enforced() {
    let site = site();
    site.write("nib.toml", "max_connections = 10\n");
    let s = TestServer::start(&site);
    let conns: Vec<TcpStream> = (0..30)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    let open = conns.iter().filter(|c| !closed_by_server(c)).count();
    assert!(open <= 10, "{open} still open");
    assert!(wait_line(&s, Duration::from_secs(1), |l| l
        .contains("over max_connections=10")));
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn huge_content_length_does_not_abort() {
    let site = site();
    let mut s = TestServer::start(&site);
    for len in ["99999999999999", "18446744073709551000", "1000000"] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\nabc").as_bytes(),
        )
        .unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 413"), "{len}: {text:?}");
        assert_eq!(s.child.try_wait().unwrap(), None, "alive after {len}");
        assert_eq!(s.get("/healthz").status, 200);
    }
}

/// Sets nib's open-file limits with prlimit(1): "SOFT:HARD", or "SOFT:" to keep the hard
/// limit. False when prlimit is missing or refused.
fn prlimit_nofile(pid: u32, limits: &str) -> bool {
    std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limits}")])
        .status()
        .map(|st| st.success())
        .unwrap_or(false)
}

/// After a restart in place: the same process serves again within 15 s.
fn serves_again_in_place(s: &TestServer, pid: u32) {
    let served = eventually(Duration::from_secs(15), || {
        std::panic::catch_unwind(|| s.get("/").status == 200).unwrap_or(false)
    });
    assert!(served, "{}", s.stderr_text());
    assert_eq!(s.pid(), pid);
}

/// The two lowest descriptor numbers nib does not show as open. The first is the one its
/// blocked `accept` already holds: Linux reserves the new descriptor before it waits, and
/// shows it only once a connection comes. The least of a few looks, so a descriptor open
/// for a moment is not taken for a lasting one.
fn two_lowest_free_fds(pid: u32) -> (u32, u32) {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let open: HashSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let mut free = (0..).filter(|n| !open.contains(n));
            (free.next().unwrap_or(0), free.next().unwrap_or(0))
        })
        .min()
        .unwrap_or((0, 0))
}

/// CI once saw `accept` itself fail with EMFILE (rather than tiny_http's later dup of the
/// socket), and that path began the restart without its "restarting in place" line.
#[test]
fn accept_failing_with_emfile_restarts_like_the_rest() {
    let site = site();
    let s = TestServer::start(&site);
    let pid = s.pid();
    // The waiting accept holds the lowest free descriptor already, and tiny_http's dup of
    // the accepted socket takes the next: a soft limit just above that lets one connection
    // in whole and makes the accept after it fail. (The hard limit stays, so the soft one
    // can be raised again.)
    let (_, dup) = two_lowest_free_fds(pid);
    if !prlimit_nofile(pid, &format!("{}:", dup + 1)) {
        tool_missing(
            "prlimit",
            "util-linux's prlimit, allowed to set nib's limits",
        );
        return;
    }
    // The first connection stays open, so its two descriptors stay taken.
    let mut first = TcpStream::connect(s.addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Usually this connection is answered whole and the accept after it fails. nib's
    // socket watch lists /proc/self/fd every few milliseconds, which holds a descriptor
    // for the moment: when that moment meets this accept, the accept fails first. Either
    // way it is accept that fails, and the restart below must follow.
    let mut head = [0u8; 12];
    if first.read_exact(&mut head).is_ok() {
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    assert!(
        wait_line(&s, Duration::from_secs(10), |l| l
            .contains("restarting in place (tiny_http stopped accepting)")),
        "{}",
        s.stderr_text()
    );
    assert!(
        s.stderr_text()
            .contains("nib: tiny_http stopped accepting: "),
        "accept itself should have failed: {}",
        s.stderr_text()
    );
    assert!(prlimit_nofile(pid, "256:"));
    drop(first);
    serves_again_in_place(&s, pid);
}

#[test]
fn recovers_when_the_accept_thread_dies() {
    let site = site();
    // A hard limit of 32 descriptors: nib's own use is about 8, so a dozen open
    // connections (two descriptors each in tiny_http) exhausts it and accept fails.
    let s = TestServer::start(&site);
    let pid = s.pid();
    if !prlimit_nofile(pid, "32:32") {
        tool_missing(
            "prlimit",
            "util-linux's prlimit, allowed to set nib's limits",
        );
        return;
    }
    let held: Vec<TcpStream> = (0..30)
        .filter_map(|_| TcpStream::connect(s.addr).ok())
        .collect();
    assert!(
        wait_line(&s, Duration::from_secs(10), |l| l
            .contains("restarting in place (tiny_http stopped accepting)")),
        "{}",
        s.stderr_text()
    );
    drop(held);
    assert!(
        eventually(Duration::from_secs(15), || serving_lines(&s) >= 2),
        "{}",
        s.stderr_text()
    );
    // The connections that waited in the backlog meanwhile reach the new image (closed
    // by now); it accepts them and serves again.
    serves_again_in_place(&s, pid);
}

#[test]
fn nginx_five_sighups_under_load() {
    let site = site();
    let Some((s, ng)) = nib_behind_nginx(&site) else {
        return;
    };
    let front = ng.addr;
    let (ok, failures) = under_load(front, || five_restarts(&s));
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(ok > 50);
    assert_eq!(serving_lines(&s), 6);
}

/// nib on a port the kernel picked, then nginx from deploy/nginx.conf in front of it,
/// once nginx proxies a page. (Choosing a port for nib in advance raced with other tests'
/// servers.) `None` when nginx is missing (see [`need_tool`]).
fn nib_behind_nginx(site: &Site) -> Option<(TestServer, Nginx)> {
    let s = TestServer::start(site);
    let ng = deploy_nginx(s.addr.port())?;
    let front = ng.addr;
    assert!(eventually(Duration::from_secs(5), || {
        std::panic::catch_unwind(|| get(front, "/").status == 200).unwrap_or(false)
    }));
    Some((s, ng))
}

/// The bound on nib's peak memory in the hostile test. The target (4 MB, 3.5 MB in part b
/// of the bench) is for the deploy binary (`cargo static`), which `bench/bench.py slow`
/// measures. The binaries `cargo test` starts are larger: the dynamic release binary maps
/// about 4 MB of file-backed text and libc at start (4.5 MB VmHWM, 4.7-4.9 MB after the
/// attack here), a debug build far more (7.6 MB measured). The bound catches a regression
/// of the size the attack once cost (tens of MB), not the last few hundred KB.
const HWM_LIMIT_KB: u64 = if cfg!(debug_assertions) {
    12 * 1024
} else {
    6 * 1024
};

#[test]
fn nginx_absorbs_hostile_clients_while_others_are_served() {
    let site = site();
    let Some((s, ng)) = nib_behind_nginx(&site) else {
        return;
    };
    hostile_clients_through(&s, ng.addr, &[]);
}

/// The same attack through deploy/Caddyfile on the installed Caddy. Caddy does not buffer
/// request bodies there (no directive for it loads on both Caddy 2.6 and current Caddy),
/// so the huge bodies and headers it passes on meet nib's own limits.
#[test]
fn caddy_absorbs_hostile_clients_while_others_are_served() {
    let site = site();
    let s = TestServer::start(&site);
    let Some(caddy) = DeployCaddy::start(s.addr.port()) else {
        return;
    };
    let front = caddy.addr;
    assert!(eventually(Duration::from_secs(5), || {
        std::panic::catch_unwind(|| get(front, "/").status == 200).unwrap_or(false)
    }));
    // Caddy 2.6 answers 502 when a body passes `request_body`'s max_size mid-stream (later
    // versions 413): its answer, not nib's.
    hostile_clients_through(&s, front, &[" 502 "]);
}

/// 200 idle sockets, 200 half-sent headers, 200 KB headers and 100 MB bodies at a front
/// end while a reader's page is fetched twenty times: each within a second, the abusers
/// answered 4xx (or one of the front end's own `also` statuses) or cut, and nib's memory
/// bounded.
fn hostile_clients_through(s: &TestServer, front: SocketAddr, also: &[&str]) {
    // 200 idle sockets and 200 that sent half a header.
    let mut hostile: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(front).ok())
        .collect();
    hostile.extend(half_sent(front, 200));
    assert_eq!(hostile.len(), 400);
    // Huge headers and huge bodies.
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(200_000)
    );
    let big_body =
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n";
    let abusers: Vec<_> = (0..10)
        .map(|i| {
            let req = if i % 2 == 0 {
                big_header.clone()
            } else {
                big_body.to_string()
            };
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(front).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = c.write_all(req.as_bytes());
                let _ = c.write_all(&vec![b'x'; 1 << 20]);
                let mut text = Vec::new();
                let _ = c.read_to_end(&mut text);
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        // Through Caddy, which opens a connection per request, this page once waited
        // behind threads held by refused bodies until Caddy gave up with 502 (see
        // `a_request_queued_behind_unfinished_headers_is_served_at_once`).
        let status = get(front, "/posts/hello/").status;
        assert_eq!(status, 200, "{}", s.stderr_text());
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    for a in abusers {
        let status = a.join().unwrap();
        assert!(
            status.is_empty() || status.contains(" 4") || also.iter().any(|a| status.contains(a)),
            "abuser got {status:?}"
        );
    }
    assert!(worst < Duration::from_secs(1), "worst {worst:?}");
    let hwm = vm_kb(s.pid(), "VmHWM");
    let threads = vm_kb(s.pid(), "Threads");
    eprintln!(
        "nib during the attack: VmHWM {hwm} KB, VmRSS {} KB, {threads} threads, {} fds; worst legit request {worst:?}",
        vm_kb(s.pid(), "VmRSS"),
        fd_count(s.pid())
    );
    assert!(hwm < HWM_LIMIT_KB, "VmHWM {hwm} KB");
    drop(hostile);
}

#[test]
fn systemd_notifications_around_restart_and_stop() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let name = format!("nib-notify-test-{}", std::process::id());
    let sock =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let site = site();
    let notify = format!("@{name}");
    let mut s = TestServer::start_with(
        &site,
        &[],
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut msgs = Vec::new();
    let next = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let until = |want: &str, msgs: &mut Vec<String>| loop {
        let m = next();
        msgs.push(m.clone());
        if m.starts_with(want) {
            return m;
        }
    };
    until("READY=1", &mut msgs);
    // Watchdog pings come from the loop every 200 ms while idle.
    until("WATCHDOG=1", &mut msgs);
    s.signal("HUP");
    let reloading = until("RELOADING=1", &mut msgs);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    until("READY=1", &mut msgs);
    let pid = s.pid();
    s.signal("TERM");
    until("STOPPING=1", &mut msgs);
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(s.pid(), pid);
}

/// A GET that must be answered quickly while something else holds connections open: the
/// time it took, or a panic naming what failed.
fn quick_get(addr: SocketAddr, path: &str) -> Duration {
    let started = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut BufReader::new(c), false);
    assert_eq!(resp.status, 200, "{path}");
    started.elapsed()
}

/// A connection whose receive buffer is 4 KiB, so an answer it never reads stalls at once.
fn small_window(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket, configured and connected here, then owned by the TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let SocketAddr::V4(a) = addr else {
            panic!("IPv4 only")
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &sin as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_download_nobody_reads_does_not_freeze_other_requests() {
    let site = site();
    std::fs::write(
        site.path().join("static/big.bin"),
        vec![7u8; 8 * 1024 * 1024],
    )
    .unwrap();
    let s = TestServer::start(&site);
    let stalled: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut c = small_window(s.addr);
            c.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let took = quick_get(s.addr, "/");
        assert!(took < Duration::from_secs(1), "a page took {took:?}");
    }
    drop(stalled);
}

#[test]
fn a_body_that_never_comes_does_not_freeze_other_requests() {
    let site = site();
    let s = TestServer::start(&site);
    let cases: [&[u8]; 5] = [
        b"POST /admin/login HTTP/1.1\r\nHost: t\r\nOrigin: http://t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\ntoken=abc",
        b"POST /admin/login HTTP/1.1\r\nHost: t\r\nOrigin: http://t\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
        b"POST /admin/links HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nurl=",
        b"POST /admin/share HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n",
        b"POST /admin/logout HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n",
    ];
    let started = Instant::now();
    let mut held: Vec<TcpStream> = cases
        .iter()
        .map(|req| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(req).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let took = quick_get(s.addr, "/");
        assert!(took < Duration::from_secs(1), "a page took {took:?}");
    }
    // The forms that need a login are refused without reading the body; the login's body
    // is waited for until the deadline, then answered 408 (after `100 Continue` when the
    // client asked for it).
    for mut login in held.drain(..2) {
        let mut r = BufReader::new(&mut login);
        let mut resp = read_response(&mut r, false);
        if resp.status == 100 {
            resp = read_response(&mut r, false);
        }
        assert_eq!(resp.status, 408, "{}", resp.text());
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "{waited:?}"
    );
    for mut c in held {
        let resp = read_response(&mut BufReader::new(&mut c), false);
        assert!(
            resp.status == 401 || resp.status == 403,
            "{} {}",
            resp.status,
            resp.text()
        );
    }
}

#[test]
fn pipelined_requests_left_unread_do_not_freeze_the_loop() {
    let site = site();
    let s = TestServer::start(&site);
    let c = small_window(s.addr);
    let many = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3000);
    // The write itself stalls once both sides' buffers are full: it runs on a thread of
    // its own and ends when the test drops the socket.
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(many.as_bytes());
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let took = quick_get(s.addr, "/");
        assert!(took < Duration::from_secs(1), "a page took {took:?}");
    }
    let _ = c.shutdown(std::net::Shutdown::Both);
    drop(c);
    let _ = writer.join();
    let took = quick_get(s.addr, "/");
    assert!(took < Duration::from_secs(1), "a page took {took:?}");
}

#[test]
fn an_endless_header_line_is_cut_before_it_costs_memory() {
    let site = site();
    let s = TestServer::start(&site);
    let pid = s.pid();
    // Warm up, so the baseline includes what any request costs.
    quick_get(s.addr, "/");
    let before = vm_kb(pid, "VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..6)
        .map(|_| {
            let addr = s.addr;
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut sent = 0usize;
                let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Flood: ");
                let chunk = vec![b'a'; 16 * 1024];
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(3) {
                    match c.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                    // About 4 MB/s each: the old server grew by all of it (tens of MB in
                    // 3 s), and a busy test machine that runs the watch late cannot.
                    std::thread::sleep(Duration::from_millis(4));
                }
                let mut answer = Vec::new();
                let _ = c.read_to_end(&mut answer);
                (sent, String::from_utf8_lossy(&answer).into_owned())
            })
        })
        .collect();
    let mut peak = before;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        peak = peak.max(vm_kb(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        let (sent, answer) = f.join().unwrap();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "after {sent} bytes: {answer:?}"
        );
    }
    assert!(
        peak < before + 1024,
        "RSS went from {before} kB to {peak} kB\n{}",
        s.stderr_text()
    );
    assert!(wait_line(&s, Duration::from_secs(1), |l| l.contains("answered 431")));
    assert!(quick_get(s.addr, "/") < Duration::from_secs(1));
}

#[test]
fn five_thousand_short_headers_get_431_like_nginx() {
    let site = site();
    let s = TestServer::start(&site);
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..5000 {
        req.push_str(&format!("X-{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let resp = raw(s.addr, &req);
    assert_eq!(resp.status, 431);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let resp = raw(s.addr, &long);
    assert!(resp.status == 414 || resp.status == 431, "{}", resp.status);
    assert!(quick_get(s.addr, "/") < Duration::from_secs(1));
}

#[test]
fn sighup_during_a_download_serves_new_connections_at_once_and_finishes_it() {
    let site = site();
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("static/big.bin"), &big).unwrap();
    let mut s = TestServer::start(&site);
    let old = s.pid();
    let addr = s.addr;
    // A reader of about 2 MB/s: the download outlives the restart by seconds.
    let download = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    s.signal("HUP");
    // New connections are answered within a second of the signal, all through the restart.
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(3) {
        worst = worst.max(quick_get(s.addr, "/"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(worst < Duration::from_secs(1), "a page took {worst:?}");
    let got = download.join().unwrap();
    let resp = read_response(&mut BufReader::new(std::io::Cursor::new(got)), false);
    assert_eq!(resp.status, 200);
    assert!(resp.body == big, "the whole file arrived");
    let successors = s.successors();
    assert_eq!(successors.len(), 1, "{}", s.stderr_text());
    assert_ne!(successors[0], old);
    assert_eq!(
        s.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        s.stderr_text()
    );
    // The successor serves on, from the same socket.
    assert!(quick_get(s.addr, "/") < Duration::from_secs(1));
}

/// Twenty clients that GET a 12 MB file (more than loopback socket buffers hold) and
/// read nothing hold no writer thread each (they held one apiece, 16 to 24 KB of stack):
/// their bodies wait in the writers' park, so nib's threads grow by at most tiny_http's one
/// per connection and the park's; other visitors are served meanwhile, and every download
/// arrives whole once its client reads.
#[test]
fn stalled_downloads_wait_in_the_park_not_on_a_thread_each() {
    const N: usize = 20;
    const SIZE: usize = 12 << 20;
    let site = site();
    site.write("static/big.bin", &"x".repeat(SIZE));
    let s = TestServer::start(&site);
    assert_eq!(s.get("/").status, 200);
    let base = vm_kb(s.pid(), "Threads");
    // One after the other, each once the last answer has begun (its head and the start of
    // its body wait in the socket): a burst of connections can wait behind tiny_http's
    // pool, which is not what this pins.
    let conns: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut first = [0u8; 1];
            c.peek(&mut first).expect("the answer begins");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let threads = vm_kb(s.pid(), "Threads");
    assert!(
        threads <= base + N as u64 + 2,
        "{threads} threads with {N} stalled downloads (baseline {base})"
    );
    assert_eq!(s.get("/posts/hello/").status, 200);
    for c in conns {
        let r = read_response(&mut BufReader::new(c), false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), SIZE, "the download arrives whole");
    }
}

/// One burst: a connection per request, all arriving in the same instant (a barrier
/// before the connects), each sending its request and keeping its connection open, as a
/// browser does. For each, in order: the time from its request to its answer's first byte
/// when the request is complete (ends with a blank line; `None` inside when no answer came
/// within 8 s), and the connection, still open.
fn at_once(
    addr: SocketAddr,
    requests: &[&'static [u8]],
) -> Vec<(Option<Option<Duration>>, TcpStream)> {
    let gate = Arc::new(std::sync::Barrier::new(requests.len()));
    let clients: Vec<_> = requests
        .iter()
        .map(|&req| {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.wait();
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
                let sent = Instant::now();
                c.write_all(req).unwrap();
                if !req.ends_with(b"\r\n\r\n") {
                    return (None, c);
                }
                let mut first = [0u8; 1];
                let took = matches!(c.read(&mut first), Ok(1)).then(|| sent.elapsed());
                (Some(took), c)
            })
        })
        .collect();
    clients.into_iter().map(|t| t.join().unwrap()).collect()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_burst_of_keep_alive_connections_does_not_wait_behind_idle_ones() {
    // tiny_http's pool can queue connections of a burst behind threads that then serve
    // idle keep-alive connections: on a fresh nib, 28 of 32 waited more than 5 s, because
    // the guard never counted the 4 served ones (answered between two of its looks) as
    // idle. The guard now frees threads for them within 100 ms; the bound here leaves room
    // for a loaded test machine.
    let site = site();
    for round in 0..3 {
        let s = TestServer::start(&site);
        let (times, held): (Vec<_>, Vec<_>) = at_once(s.addr, &[HEALTHZ; 32])
            .into_iter()
            .map(|(t, c)| (t.flatten(), c))
            .unzip();
        let slow: Vec<_> = times
            .iter()
            .filter(|t| t.is_none_or(|t| t > Duration::from_millis(1000)))
            .collect();
        assert!(slow.is_empty(), "round {round}: {slow:?} of {times:?}");
        drop(held);
    }
}

/// One burst on a fresh nib: 31 connections that send half a header and one complete
/// request, all at once. Returns the time to the complete request's first answer byte
/// (`None`: none within 8 s), and the server's log.
fn burst_with_half_headers(site: &Site) -> (Option<Duration>, String) {
    let s = TestServer::start(site);
    let mut requests: Vec<&'static [u8]> = vec![b"GET / HTTP/1.1\r\nHost: t\r\n"; 31];
    requests.push(HEALTHZ);
    let took = at_once(s.addr, &requests)
        .into_iter()
        .find_map(|(t, _)| t)
        .flatten();
    (took, s.stderr_text())
}

#[test]
fn a_request_queued_behind_unfinished_headers_is_served_at_once() {
    // A burst of connections that send half a header each (or whose huge bodies nib
    // refused, through a proxy) can hold every thread tiny_http's pool has, none of them
    // idle, with a complete request queued behind them (one fresh nib in a few): through
    // Caddy under load, a reader's page waited past the proxy's timeout. The guard now
    // knocks on its own listening socket, which grows the pool.
    let site = site();
    for round in 0..6 {
        let (took, log) = burst_with_half_headers(&site);
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(1)),
            "round {round}: {took:?}\n{log}"
        );
    }
}
