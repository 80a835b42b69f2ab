//! The integration-test harness: [`TestServer`] starts the real `nib` binary on port 0 with a
//! scratch site and database, learns its address from the start-up line, and kills it on
//! drop. [`get`] and [`raw`] are a deliberately small HTTP/1.1 client over a plain socket, so
//! tests control every byte they send. [`Nginx`] and [`deploy_nginx`] put nginx in front
//! of it, and [`need_tool`] is how a test asks for a program it needs: a test without it
//! skips, unless `NIB_REQUIRE_TOOLS=1` (set by `.ci/run`) makes that a failure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nib");

/// A scratch site folder with `posts/` and `static/`.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("posts")).unwrap();
        std::fs::create_dir_all(dir.path().join("static")).unwrap();
        Site { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> &Site {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn post(&self, name: &str, text: &str) -> &Site {
        self.write(&format!("posts/{name}"), text)
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("nib.db")
    }
}

/// Runs `nib` with `args` against the site and returns (exit code, stdout, stderr).
pub fn nib(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--root")
        .arg(site.path())
        .args(args)
        .env_remove("NIB_ADMIN_TOKEN")
        .env_remove("NIB_BASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run nib");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real binary, serving a site on 127.0.0.1:0. Killed on drop.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stderr line so far (the log of problems and lifecycle events).
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Every stdout line so far (the access log).
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start(site: &Site) -> TestServer {
        Self::start_with(site, &[], &[])
    }

    pub fn start_with(site: &Site, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root")
            .arg(site.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("NIB_ADMIN_TOKEN")
            .env_remove("NIB_BASE_URL")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start nib");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = Arc::clone(&stderr);
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("nib: serving http://") {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        {
            let lines = Arc::clone(&stdout);
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address in start-up line"),
            Err(_) => {
                let _ = child.kill();
                panic!("nib did not start; stderr: {:?}", stderr.lock().unwrap());
            }
        };
        TestServer {
            child,
            addr,
            stderr,
            stdout,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        get(self.addr, path)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig}");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl TestServer {
    /// The PIDs of successors this server handed its socket to (a restart with answers
    /// still in flight), in order.
    pub fn successors(&self) -> Vec<u32> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let rest = l.split_once("handed the socket to PID ")?.1;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Successors are not our children: they are stopped by PID.
        for pid in self.successors() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A request with extra header lines (each `Name: value`).
pub fn get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(addr, &req)
}

/// Sends `request` as is and reads the whole response (the request should ask for
/// `Connection: close`, or the server closes after one answer).
pub fn raw(addr: SocketAddr, request: &str) -> Resp {
    raw_bytes(addr, request.as_bytes(), request.starts_with("HEAD "))
}

pub fn raw_bytes(addr: SocketAddr, request: &[u8], head: bool) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request).expect("send");
    read_response(&mut BufReader::new(s), head)
}

/// Reads one response from a stream (Content-Length, chunked, or until close).
pub fn read_response<R: Read>(r: &mut BufReader<R>, head: bool) -> Resp {
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if head || status == 304 || status == 204 {
        // no body
    } else if let Some(n) = headers.get("content-length") {
        let n: usize = n.parse().unwrap();
        body.resize(n, 0);
        r.read_exact(&mut body).expect("body");
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// Polls `f` until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of open file descriptors of a process (Linux).
pub fn fd_count(pid: u32) -> usize {
    // nib's socket watch lists its own /proc/self/fd every few milliseconds: that
    // descriptor lives only for the look, and is not counted.
    let own_list = format!("/proc/{pid}/fd");
    std::fs::read_dir(&own_list)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .map_or(true, |t| t != std::path::Path::new(&own_list))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Any request: `headers` are extra `Name: value` lines; a `Content-Length` is added for a
/// non-empty body or a POST unless one of `headers` sets it (or `Transfer-Encoding`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let sets_length = headers.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h.starts_with("content-length:") || h.starts_with("transfer-encoding:")
    });
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !sets_length && (!body.is_empty() || method == "POST") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw_bytes(addr, &bytes, method == "HEAD")
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An nginx process started for a test from a config text, with its pid, logs and temp
/// files in its own folder; killed on drop.
pub struct Nginx {
    /// Kept so the folder lives as long as the process that uses it.
    _dir: tempfile::TempDir,
    /// Where its server listens (the test says which port the config uses).
    pub addr: SocketAddr,
    child: Child,
}

impl Nginx {
    /// Starts nginx with `conf` (which may use `{dir}` for its folder) and waits until
    /// `port` accepts. `None` when nginx is missing (see [`need_tool`]).
    pub fn start(conf: &str, port: u16) -> Option<Nginx> {
        let bin = need_tool(&["nginx"], "apt-get install nginx-light")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("nginx.conf"), conf.replace("{dir}", &d)).unwrap();
        let child = Command::new(&bin)
            .args([
                "-p",
                &d,
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        if !eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_ok()) {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not start: {log}");
        }
        Some(Nginx {
            _dir: dir,
            addr,
            child,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; a SIGKILLed master leaves them behind.
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if !eventually(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// nginx from deploy/nginx.conf made into a loopback test config (the way bench/run.sh
/// does it): plain HTTP on a free port at 127.0.0.1 and [::1], nib at `upstream_port`,
/// logs, pid and temporary files in the test's folder. The header lines nib depends on
/// are kept as they are. `None` when nginx is missing (see [`need_tool`]).
pub fn deploy_nginx(upstream_port: u16) -> Option<Nginx> {
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
    )
    .expect("deploy/nginx.conf");
    let port = free_port();
    let d = "{dir}";
    let mut out = String::new();
    let mut skipping = false;
    for line in conf.lines() {
        skipping |= line.contains("# BEGIN http-redirect");
        if skipping {
            skipping = !line.contains("# END http-redirect");
            continue;
        }
        if !line.trim_end().ends_with("# tls") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let replacements = [
        ("user www-data;", String::new()),
        ("worker_processes auto;", "worker_processes 1;".into()),
        ("pid /run/nginx.pid;", format!("pid {d}/nginx.pid;")),
        ("/var/log/nginx/error.log", format!("{d}/error.log")),
        ("/var/log/nginx/access.log", format!("{d}/access.log")),
        ("127.0.0.1:8080", format!("127.0.0.1:{upstream_port}")),
        ("limit_conn perip 16", "limit_conn perip 1000".into()),
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{port}; listen [::1]:{port};"),
        ),
        ("/srv/nib/static/", format!("{d}/static/")),
        (
            "http {",
            format!(
                "http {{ client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; \
                 fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;"
            ),
        ),
    ];
    for (from, to) in replacements {
        assert!(
            out.contains(from),
            "deploy/nginx.conf no longer has {from:?}"
        );
        out = out.replace(from, &to);
    }
    Nginx::start(&out, port)
}

/// Whether the machine asks every tool a test needs to be there: `NIB_REQUIRE_TOOLS=1`,
/// which `.ci/run` sets, so a green CI cannot hide a test that never ran.
fn tools_required() -> bool {
    std::env::var("NIB_REQUIRE_TOOLS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Says that a test cannot run because `tool` is missing (or unusable) and is being
/// skipped, with `hint` on how to get it. The caller then returns, and the test passes, so
/// `cargo test` works on a machine without the tool; under `NIB_REQUIRE_TOOLS=1` this
/// panics instead, naming the tool.
pub fn tool_missing(tool: &str, hint: &str) {
    if tools_required() {
        panic!("{tool} is missing and NIB_REQUIRE_TOOLS=1 requires it ({hint})");
    }
    eprintln!("skipping: {tool} is missing ({hint}; NIB_REQUIRE_TOOLS=1 makes this fail)");
}

/// The path of a tool a test needs, the first of `names` found on `PATH` or in the
/// folders where Debian puts it. When none is found: [`tool_missing`] (a skip, or a panic
/// under `NIB_REQUIRE_TOOLS=1`) and `None`, upon which the test returns.
pub fn need_tool(names: &[&str], hint: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<&str> = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain([
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/bin",
            "/usr/lib/chromium",
        ])
        .collect();
    let found = names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| Path::new(dir).join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        tool_missing(&names.join(" or "), hint);
    }
    found
}

#[test]
fn a_missing_tool_skips_or_fails_as_nib_require_tools_says() {
    let found = std::panic::catch_unwind(|| need_tool(&["nib-test-no-such-tool"], "none"));
    if tools_required() {
        assert!(found.is_err(), "a missing tool must fail the test");
    } else {
        assert!(
            matches!(found, Ok(None)),
            "a missing tool must skip the test"
        );
    }
}

/// Caddy started from deploy/Caddyfile for a test: plain HTTP on a loopback port, nib at
/// `upstream_port`, no admin endpoint, its state in the test's folder. Killed on drop.
pub struct DeployCaddy {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl DeployCaddy {
    pub fn start(upstream_port: u16) -> Option<DeployCaddy> {
        let bin = need_tool(&["caddy"], "apt-get install caddy")?;
        let mut conf = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile"),
        )
        .expect("deploy/Caddyfile");
        let port = free_port();
        let replacements = [
            (
                "example.org {",
                format!("http://:{port} {{\n\tbind 127.0.0.1"),
            ),
            ("127.0.0.1:8080", format!("127.0.0.1:{upstream_port}")),
            ("{\n\tservers {", "{\n\tadmin off\n\tservers {".into()),
        ];
        for (from, to) in replacements {
            assert!(
                conf.contains(from),
                "deploy/Caddyfile no longer has {from:?}"
            );
            conf = conf.replace(from, &to);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, conf).unwrap();
        let child = std::process::Command::new(bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start caddy");
        let mut caddy = DeployCaddy {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(caddy.addr).is_ok()
        });
        assert!(
            up && caddy.child.try_wait().unwrap().is_none(),
            "caddy did not start"
        );
        Some(caddy)
    }
}

impl Drop for DeployCaddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/PID/status` figure in kB (`VmHWM`, `VmRSS`, `Threads`), 0 when unreadable.
pub fn vm_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    nib::test_support::parse_status_kb(&text, key).unwrap_or(0)
}
