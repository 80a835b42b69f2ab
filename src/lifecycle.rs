//! The life of the server process: the listening socket (bound, or inherited through
//! `LISTEN_FDS` from systemd or from the previous image of this process), the request
//! loop's outer shell, signals, graceful stop, graceful restart in place, the connection
//! guard's schedule, systemd notifications, and the memory limit. Handlers know nothing of
//! this; they run inside the loop one request at a time.
//!
//! # The handover (SIGHUP)
//!
//! tiny_http 0.12 accepts on its own thread and offers no way to stop it short of dropping
//! the `Server`, and a connection it accepted is lost if the image is replaced before the
//! connection has been answered. So nib keeps the listening socket itself (at fd 3) and
//! gives tiny_http a duplicate. A restart then:
//!
//! 1. validates the new configuration by running the binary on disk with
//!    `NIB_CHECK_ONLY=1` (a bad config is logged and the old server keeps serving);
//! 2. retires tiny_http's duplicate: `dup3` puts an unbound, unlistened socket in its
//!    place, so tiny_http's next `accept` fails with EINVAL and its accept thread ends.
//!    If the thread is already blocked in `accept` on the real socket, one connection to
//!    ourselves wakes it; whichever connection it takes (ours, empty, or a client's) is
//!    answered by this image, and the rest stay in the kernel's backlog;
//! 3. keeps answering until the accept thread has reported its end and no TCP connection
//!    is left open in the process. Connections with nothing left to read get
//!    `shutdown(SHUT_RD)`: tiny_http reads end-of-file after the request it already has
//!    and closes them once that request is answered (idle keep-alive connections close
//!    at once; clients retry on a new connection, which waits in the backlog);
//! 4. calls `Flow::finish` and `App::finish`, closes the database, clears close-on-exec on fd 3 only and
//!    executes the binary on disk with the same arguments, `LISTEN_FDS=1` and
//!    `LISTEN_PID` set to our own (unchanged) PID.
//!
//! From step 2 on nothing new is accepted by this image and the listening socket is
//! never closed, so no connection is refused or reset; the new image accepts the backlog.
//!
//! When answers are still in flight [`HANDOVER_AFTER`] into step 3 (a large download to a
//! slow reader, which may take up to `drain_seconds`), waiting for them would leave new
//! connections in the backlog as long. The image then hands over instead, as nginx's
//! binary upgrade and Unicorn's USR2 do: it starts the binary on disk as a new process
//! with the socket at fd 3 (`NIB_HANDED_OVER=1`), tells systemd the new main PID
//! (`MAINPID=`), finishes its answers and exits 0. The successor serves at once.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tiny_http::{Request, Response};

use crate::app::App;
use crate::config::Config;
use crate::error::StartupError;
use crate::guard::{self, Guard};
use crate::http::flow::Flow;
use crate::notify::{self, Notifier};

/// How long the loop waits for a request before doing its housekeeping anyway.
const TICK: Duration = Duration::from_millis(250);

/// While draining, the loop looks at the connections this often.
const DRAIN_TICK: Duration = Duration::from_millis(20);

/// A connection that has sent nothing yet is left alone this long during a drain: a
/// client that has just connected sends its request within microseconds over loopback,
/// so one second is far beyond that and short enough not to hold a restart up.
const FRESH_GRACE_MS: u32 = 1000;

/// After this many refused huge bodies (each strands one tiny_http thread, see
/// [`refuse_huge_body`]) the process restarts in place to get them back.
const QUARANTINE_LIMIT: usize = 16;

/// How often resident memory is compared with `max_rss_kb`.
const RSS_EVERY: Duration = Duration::from_secs(2);

/// A listening socket with connections waiting for this long while tiny_http takes none
/// means its accept thread is gone (it can also die by panicking, which reports nothing).
const DEAF_AFTER: Duration = Duration::from_secs(3);

/// The descriptor the listening socket is handed over at, as systemd does.
const LISTEN_FD: RawFd = 3;

/// Why a generation of the request loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Stop,
    /// A successor serves the socket; this process exits once its answers are out.
    HandedOver,
    Hup,
    AcceptDied,
    Memory,
    Quarantine,
}

impl Why {
    fn describe(self) -> &'static str {
        match self {
            Why::Stop => "stopping",
            Why::HandedOver => "handed over",
            Why::Hup => "restarting in place (SIGHUP)",
            Why::AcceptDied => "restarting in place (tiny_http stopped accepting)",
            Why::Memory => "restarting in place (resident memory above max_rss_kb)",
            Why::Quarantine => "restarting in place (to free threads held by refused bodies)",
        }
    }
}

/// Parses `LISTEN_FDS`/`LISTEN_PID` (sd_listen_fds(3)): `Ok(Some(3))` when exactly one
/// socket was passed to this process, `Ok(None)` when none was (or it was meant for
/// another process), `Err` for a number of sockets nib cannot use.
pub(crate) fn listen_fds(
    fds: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Result<Option<RawFd>, String> {
    let Some(fds) = fds else { return Ok(None) };
    if pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(my_pid) {
        return Ok(None);
    }
    match fds.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(1) => Ok(Some(LISTEN_FD)),
        Ok(n) => Err(format!("LISTEN_FDS={n}: nib serves exactly one socket")),
        Err(_) => Err(format!("LISTEN_FDS={fds:?} is not a number")),
    }
}

/// Raises the soft limit on open files to the hard limit: each connection costs tiny_http
/// two descriptors, and the default soft limit of 1024 would make `accept` fail (which
/// ends tiny_http's accept thread) long before memory runs short.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Options for the listening socket, whichever way it came (bound, inherited, systemd).
fn tune_listener(fd: RawFd) {
    // tiny_http never sets TCP_NODELAY; with Nagle and delayed ACKs a 6.7 KB page took
    // 44 ms. Linux hands it on to every accepted socket.
    set_tcp_option(fd, libc::TCP_NODELAY, 1, "TCP_NODELAY");
    // Accept a connection only once its request has begun to arrive (Unicorn's
    // `tcp_defer_accept`, nginx's `deferred`): tiny_http's thread for it then reads at
    // once instead of sleeping until the first bytes come and being woken for them. With
    // one request per connection this took a post page from 14,000 to 17,000 requests/s.
    // A client that connects and says nothing stays in the kernel, holding no thread and
    // no descriptor, until the deferral ends (one SYN-ACK retransmission, about 1-3 s);
    // then it is accepted anyway and the guard treats it as any idle connection.
    set_tcp_option(fd, libc::TCP_DEFER_ACCEPT, 1, "TCP_DEFER_ACCEPT");
    // A send that moves no byte for this long fails (EAGAIN), so a client that stops
    // reading frees its writer thread (see `writer`). Linux copies socket options from the
    // listening socket to each accepted one; on the listener itself it changes nothing.
    let t = crate::http::writer::SEND_TIMEOUT;
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a correctly sized timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!("nib: setting SO_SNDTIMEO: {}", io::Error::last_os_error());
    }
}

fn set_tcp_option(fd: RawFd, name: libc::c_int, value: libc::c_int, what: &str) {
    // SAFETY: a valid fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            name,
            &value as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!("nib: setting {what}: {}", io::Error::last_os_error());
    }
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only change the descriptor's flags.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            -1
        } else if on {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number is harmless.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat writes into the zeroed buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

/// The listening socket: inherited at fd 3, or bound and moved to fd 3 when that is free
/// (so a handover never has to overwrite a descriptor in use).
fn acquire_listener(
    cfg: &Config,
    env: &HashMap<String, String>,
) -> Result<TcpListener, StartupError> {
    let inherited = if env.get(HANDOVER_VAR).is_some_and(|v| v == "1") {
        Some(LISTEN_FD)
    } else {
        listen_fds(
            env.get("LISTEN_FDS").map(String::as_str),
            env.get("LISTEN_PID").map(String::as_str),
            std::process::id(),
        )
        .map_err(StartupError::Other)?
    };
    if let Some(fd) = inherited {
        let ok = guard::is_tcp_listener(fd);
        if !ok {
            return Err(StartupError::Other(format!(
                "LISTEN_FDS: fd {fd} is not a listening TCP socket"
            )));
        }
        // Nothing this process starts may inherit it; the handover clears the flag again.
        set_cloexec(fd, true).map_err(|e| StartupError::Other(format!("fd {fd}: {e}")))?;
        // SAFETY: systemd (or our previous image) handed this descriptor to us to own.
        let l = unsafe { TcpListener::from_raw_fd(fd) };
        if let Ok(local) = l.local_addr()
            && cfg.listen.port() != 0
            && local != cfg.listen
        {
            eprintln!(
                "nib: note: keeping the inherited socket {local}; listen = {} takes effect on a full restart",
                cfg.listen
            );
        }
        return Ok(l);
    }
    let l = TcpListener::bind(cfg.listen)
        .map_err(|e| StartupError::Other(format!("binding {}: {e}", cfg.listen)))?;
    if l.as_raw_fd() != LISTEN_FD && !fd_is_open(LISTEN_FD) {
        // SAFETY: fd 3 is free (checked just above, and no other thread runs yet).
        let rc = unsafe { libc::dup3(l.as_raw_fd(), LISTEN_FD, libc::O_CLOEXEC) };
        if rc == LISTEN_FD {
            drop(l);
            // SAFETY: dup3 just created fd 3 for us.
            return Ok(unsafe { TcpListener::from_raw_fd(LISTEN_FD) });
        }
    }
    Ok(l)
}

/// The signals the loop reacts to, as flags set by signal-hook's handlers.
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

const HANDLED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn mask_signals(how: libc::c_int) {
    // SAFETY: builds a signal set on the stack and applies it to the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn install_signals() -> Result<Signals, StartupError> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let err = |e: io::Error| StartupError::Other(format!("installing signal handler: {e}"));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(err)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)).map_err(err)?;
    // The previous image blocked these signals across exec so that a SIGHUP arriving in
    // between could not kill the process (its default action); with the handlers in
    // place, unblocking delivers whatever is pending.
    mask_signals(libc::SIG_UNBLOCK);
    Ok(Signals { stop, hup })
}

/// The binary to execute on restart: the path this process was started from, so that a
/// new binary installed there (a rename, as `install` and package managers do) is
/// picked up; `/proc/self/exe` (the running inode) when that path is gone.
fn exe_path() -> PathBuf {
    let p = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
}

fn current_exe(started_as: &std::path::Path) -> PathBuf {
    if started_as.is_file() {
        started_as.to_path_buf()
    } else {
        PathBuf::from("/proc/self/exe")
    }
}

/// Environment variables that belong to one image and are not passed to the next.
const IMAGE_VARS: [&str; 5] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NIB_CHECK_ONLY",
    HANDOVER_VAR,
];

/// Set for a successor started by [`hand_over`]: the listening socket is at fd 3. (A
/// successor's PID is not known before it starts, so `LISTEN_PID` cannot name it.)
const HANDOVER_VAR: &str = "NIB_HANDED_OVER";

/// A restart whose answers in flight (a large download, say) are not all out after this
/// long hands the socket to a new process instead of waiting for them: connections that
/// arrive meanwhile are then served within this bound, not after the whole drain.
const HANDOVER_AFTER: Duration = Duration::from_millis(500);

/// Runs the binary on disk with this process's arguments and `NIB_CHECK_ONLY=1`: it loads
/// the configuration exactly as a new image would and exits. `Err` carries its message.
fn validate(exe: &std::path::Path) -> Result<(), String> {
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env("NIB_CHECK_ONLY", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the new image did not finish loading its config in 10 s".into());
            }
        }
    };
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    if status.success() {
        Ok(())
    } else {
        let msg = text.trim().replace('\n', "; ");
        Err(if msg.is_empty() {
            format!("the new image exited with {status}")
        } else {
            msg
        })
    }
}

/// Replaces this process with `exe`, handing the listening socket over at fd 3. Returns
/// only when the exec failed; the socket is then still ours and unchanged.
fn exec_self(exe: &std::path::Path, listener: RawFd) -> io::Error {
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::other("NUL in argument"));
    let build = || -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = cstr(exe.as_os_str().as_bytes())?;
        let argv = std::env::args_os()
            .map(|a| cstr(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut envp = Vec::new();
        for (k, v) in std::env::vars_os() {
            if IMAGE_VARS.iter().any(|n| k == *n) {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstr(&kv)?);
        }
        envp.push(cstr(b"LISTEN_FDS=1")?);
        envp.push(cstr(
            format!("LISTEN_PID={}", std::process::id()).as_bytes(),
        )?);
        Ok((path, argv, envp))
    };
    let (path, argv, envp) = match build() {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());

    if listener != LISTEN_FD {
        // Only reached when fd 3 was taken at start-up; dup2 clears close-on-exec.
        // SAFETY: both are valid descriptor numbers; fd 3 is overwritten on purpose.
        if unsafe { libc::dup2(listener, LISTEN_FD) } < 0 {
            return io::Error::last_os_error();
        }
    } else if let Err(e) = set_cloexec(LISTEN_FD, false) {
        return e;
    }
    // A SIGHUP or SIGTERM between exec and the new image's handlers would hit the default
    // action (terminate); blocked, it waits for the new image, which unblocks it.
    mask_signals(libc::SIG_BLOCK);
    // SAFETY: null-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = io::Error::last_os_error();
    mask_signals(libc::SIG_UNBLOCK);
    let _ = set_cloexec(LISTEN_FD, true);
    e
}

/// Starts a successor: the binary on disk, with the same arguments, serving on the same
/// listening socket (at fd 3) while this process finishes the answers it has in flight,
/// as nginx's binary upgrade and Unicorn's USR2 do. Returns its PID.
fn hand_over(exe: &std::path::Path, listener: RawFd) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for v in IMAGE_VARS {
        cmd.env_remove(v);
    }
    // systemd names the process it started in WATCHDOG_PID; the successor pings the
    // watchdog as the new main process, so the name must not stop it (see
    // `notify::watchdog_interval`).
    cmd.env_remove("WATCHDOG_PID");
    cmd.env(HANDOVER_VAR, "1");
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe
    // functions (dup2, fcntl, sigprocmask) on descriptors and a set it owns.
    unsafe {
        cmd.pre_exec(move || {
            if listener != LISTEN_FD {
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(listener, LISTEN_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // As across exec_self: a signal before the successor's handlers waits for
            // them instead of killing it.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in HANDLED {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Whether connections wait in the listening socket's backlog right now.
fn backlog_waiting(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

/// Retires tiny_http's duplicate of the listening socket (see the module docs, step 2).
fn retire(tiny_fd: RawFd, listener_ino: u64, local: SocketAddr) {
    // If the descriptor is no longer the listening socket, tiny_http's accept thread has
    // ended and closed it already; the number must then not be touched.
    if inode(tiny_fd) != Some(listener_ino) {
        return;
    }
    let domain = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: a fresh socket, duplicated over tiny_http's descriptor number: the number
    // stays valid (tiny_http still owns and will close it); only what it refers to changes.
    unsafe {
        let parked = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if parked < 0 {
            eprintln!(
                "nib: restart: creating a socket: {}",
                io::Error::last_os_error()
            );
            return;
        }
        libc::dup3(parked, tiny_fd, libc::O_CLOEXEC);
        libc::close(parked);
    }
    // Wake an accept that is already blocked on the real socket. The connection carries
    // no request and is closed at once: whichever image accepts it reads end-of-file.
    let ip = match local.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, local.port()), Duration::from_secs(1));
}

/// Answers a request whose declared body is over [`crate::request::MAX_BODY`] without ever dropping its
/// body reader. tiny_http drains an unread body when the request is dropped, allocating
/// `vec![0; remaining]` first: a Content-Length of a few GB or more aborts the process,
/// and any unread body blocks the loop until the client has sent it all. No public
/// tiny_http API avoids that drain, so the 413 goes out through `Request::upgrade` (which
/// writes the response and hands the reader over) and the reader is leaked with
/// `mem::forget`; the socket is then shut down. The connection's tiny_http thread stays
/// blocked for good on a channel the leaked reader holds (a few KB), which is why the
/// loop restarts in place after [`QUARANTINE_LIMIT`] of these. Returns the socket's inode.
fn refuse_huge_body(app: &App, req: Request, declared: usize) -> Option<u64> {
    let peer = req.remote_addr().copied();
    eprintln!(
        "nib: refused a {declared}-byte body for {} {} from {} (limit {})",
        crate::access_log::LogSafe(req.method().as_str()),
        crate::access_log::LogSafe(&req.url().chars().take(200).collect::<String>()),
        peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        crate::request::MAX_BODY
    );
    // The same answer the route would give (JSON `{"error": …}` on the API), built by the
    // one error path in http.rs.
    let target = crate::request::Target::of(&req).ok();
    let reply = crate::handlers::errors::error_reply(
        app,
        target.as_ref(),
        crate::error::Error::PayloadTooLarge,
    );
    let (status, headers, body) = reply.into_parts().unwrap_or((413, Vec::new(), Vec::new()));
    println!(
        "{}",
        crate::access_log::access_line(&req, status, Some(body.len() as u64))
    );
    let mut resp = Response::empty(status);
    for (name, value) in [("Server", "nib"), ("X-Content-Type-Options", "nosniff")]
        .into_iter()
        .chain(headers.iter().map(|(n, v)| (*n, v.as_str())))
    {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            resp.add_header(h);
        }
    }
    // An upgraded response carries no body and no length: the body is written on the raw
    // stream, and the client reads it up to the shutdown below.
    let mut stream = req.upgrade("nib-refused", resp);
    let _ = stream.write_all(&body).and_then(|()| stream.flush());
    std::mem::forget(stream);
    let (fd, ino) = guard::find_by_peer(peer?)?;
    guard::cut(fd, ino, libc::SHUT_RDWR);
    Some(ino)
}

/// The declared Content-Length when tiny_http will treat it as the body length.
fn declared_body(req: &Request) -> Option<usize> {
    if crate::request::header(req, "Transfer-Encoding").is_some() {
        return None;
    }
    crate::request::header(req, "Content-Length")?
        .trim()
        .parse()
        .ok()
}

/// Process-wide state that outlives one generation of the loop.
struct Process {
    listener: TcpListener,
    listener_ino: u64,
    local: SocketAddr,
    signals: Signals,
    notifier: Notifier,
    started_as: PathBuf,
}

/// `nib serve`: binds (or inherits) the socket and serves until SIGTERM or SIGINT,
/// restarting in place on SIGHUP.
pub(crate) fn serve(cfg: Config, env: &HashMap<String, String>) -> Result<u8, StartupError> {
    if env.get("NIB_CHECK_ONLY").is_some_and(|v| v == "1") {
        // A restarting server asked whether this binary accepts the current config:
        // Config::load has succeeded to get here.
        return Ok(0);
    }
    raise_nofile();
    let signals = install_signals()?;
    let listener = acquire_listener(&cfg, env)?;
    tune_listener(listener.as_raw_fd());
    let local = listener
        .local_addr()
        .map_err(|e| StartupError::Other(e.to_string()))?;
    if !crate::auth::is_loopback(local.ip()) {
        eprintln!(
            "nib: warning: listening on public address {local}; put nginx or Caddy in front (see deploy/)"
        );
    }
    let mut p = Process {
        listener_ino: inode(listener.as_raw_fd()).unwrap_or(0),
        listener,
        local,
        signals,
        notifier: Notifier::from_env(env),
        started_as: exe_path(),
    };
    let mut cfg = cfg;
    if cfg.base_url.is_none() {
        cfg.base_url = Some(format!("http://{local}"));
    }
    loop {
        let why = generation(&cfg, &mut p)?;
        if why == Why::Stop {
            eprintln!("nib: stopped");
            return Ok(0);
        }
        if why == Why::HandedOver {
            eprintln!("nib: answers in flight finished; the successor serves on");
            return Ok(0);
        }
        let exe = current_exe(&p.started_as);
        // The drain freed descriptors and threads, so a check that could not even start
        // before (EMFILE) runs now; a config broken since start-up keeps this image.
        if let Err(msg) = validate(&exe) {
            eprintln!(
                "nib: not restarting, the new image would not start: {msg}; serving on with the running config"
            );
            continue;
        }
        let err = exec_self(&exe, p.listener.as_raw_fd());
        eprintln!(
            "nib: restart failed: exec {}: {err}; serving on",
            exe.display()
        );
    }
}

/// One image's worth of serving, from opening the site to the end of the drain.
fn generation(cfg: &Config, p: &mut Process) -> Result<Why, StartupError> {
    let started = Instant::now();
    let (db, mut index, refresh) = crate::open_site(cfg)?;
    let indexed_in = started.elapsed();
    // The watch first, then a second pass: a change made since the first pass is found by
    // it, and one made later is an event for the loop's first check. The pass finds
    // nothing changed otherwise, and its time is what a check that scans costs.
    index.watch(&cfg.posts_dir);
    index.refresh(&db, &cfg.posts_dir);
    let scan = index.last_scan;

    // tiny_http gets a duplicate: the original stays ours for the handover.
    // SAFETY: F_DUPFD_CLOEXEC on our own listening socket.
    let tiny_fd = unsafe { libc::fcntl(p.listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if tiny_fd < 0 {
        return Err(StartupError::Other(format!(
            "duplicating the listening socket: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: tiny_fd is a fresh descriptor that tiny_http will own.
    let tiny_listener = unsafe { TcpListener::from_raw_fd(tiny_fd) };
    let server = tiny_http::Server::from_listener(tiny_listener, None)
        .map_err(|e| StartupError::Other(format!("starting server: {e}")))?;
    let server = Arc::new(server);
    // Writers and body readers wake the loop through tiny_http's own queue: an `unblock`
    // ends the wait for the next request early. A weak reference, so that only the loop
    // decides when the server goes (see the end of this function).
    let weak = Arc::downgrade(&server);
    let mut flow = Flow::new(Arc::new(move || {
        if let Some(s) = weak.upgrade() {
            s.unblock();
        }
    }));

    let mut app = App::new(cfg.clone(), db)?;
    app.index = index;
    match crate::secrets::setup_secrets(&app.db, &app.cfg) {
        // Shown this once: only its hash is kept.
        Ok(Some(token)) => crate::secrets::announce_token(&token, app.cfg.base()),
        Ok(None) => {}
        Err(e) => return Err(StartupError::db("setting up the admin secrets", e)),
    }
    crate::memory::return_free_heap();
    crate::memory::drop_startup_code();
    let public = app.db.count_public().unwrap_or(0);
    eprintln!(
        "nib: serving http://{} ({public} posts, {} with problems; indexed {} files in {} ms; a change scan takes {:.1} ms)",
        p.local,
        refresh.broken,
        refresh.parsed,
        indexed_in.as_millis(),
        scan.as_secs_f64() * 1000.0
    );
    p.notifier
        .send(&format!("READY=1\nSTATUS=serving http://{}", p.local));

    let mut guard = Guard::new(cfg.max_connections);
    let watch_stop = Arc::new(AtomicBool::new(false));
    guard::watch_sockets(flow.reading_set(), flow.starving(), Arc::clone(&watch_stop));
    let drain_limit = Duration::from_secs(cfg.drain_seconds);
    // Sockets the loop must neither count nor touch: refused huge bodies.
    let mut quarantined: HashSet<u64> = HashSet::new();
    let mut accept_dead = false;
    let mut draining: Option<(Why, Instant)> = None;
    // Whether this drain has tried to hand the socket to a successor.
    let mut handover_tried = false;
    let mut read_shut: HashSet<u64> = HashSet::new();
    let mut last_rss = Instant::now();
    let mut deaf_since: Option<Instant> = None;
    // Whether the heap has been handed back since the last request (see the idle branch).
    let mut trimmed = true;

    loop {
        let timeout = if flow.ready() {
            // A streamed body can go on at once: look for a request without waiting.
            Duration::ZERO
        } else if draining.is_some() {
            DRAIN_TICK
        } else {
            TICK
        };
        let received = server.recv_timeout(timeout);
        // tiny_http hands over requests, so it is accepting: only a quiet tick can be deaf.
        let quiet = matches!(received, Ok(None));
        // Set when tiny_http reports that its accept thread ended (EMFILE, say); the
        // restart then begins below like any other, with its log line and notification.
        let mut accept_failed = false;
        if !quiet {
            deaf_since = None;
        }
        match received {
            Ok(Some(req)) => match declared_body(&req) {
                Some(n) if n > crate::request::MAX_BODY => {
                    if let Some(ino) = refuse_huge_body(&app, req, n) {
                        quarantined.insert(ino);
                    }
                }
                _ => {
                    app.refresh_posts();
                    flow.take(&app, req);
                    trimmed = false;
                }
            },
            Ok(None) => {
                // A quiet tick after a burst: give the burst's freed heap (fragments glibc
                // would keep) back to the kernel, once, so RSS returns to its idle size.
                if !trimmed {
                    crate::memory::return_free_heap();
                    trimmed = true;
                }
            }
            Err(e) => {
                if !accept_dead && draining.is_none() {
                    eprintln!("nib: tiny_http stopped accepting: {e}");
                    accept_failed = true;
                }
                accept_dead = true;
            }
        }
        flow.turn(&app);
        app.tick();
        p.notifier.watchdog_tick();

        if let Some((why, since)) = draining.as_mut() {
            if !matches!(*why, Why::Stop | Why::HandedOver)
                && p.signals.stop.load(Ordering::Relaxed)
            {
                *why = Why::Stop;
                p.notifier.send("STOPPING=1");
                eprintln!("nib: stop requested during the restart: stopping instead");
            }
            // Without the list (reading it takes a descriptor, and under EMFILE there is
            // none), no connection is known to be answered: the drain waits on, up to its
            // limit, rather than cut requests in flight.
            let scanned = guard::scan(&quarantined);
            let conns = scanned.as_deref().unwrap_or_default();
            if accept_dead && flow.idle() && scanned.as_ref().is_ok_and(|c| c.is_empty()) {
                break;
            }
            if !matches!(*why, Why::Stop | Why::HandedOver)
                && !handover_tried
                && since.elapsed() >= HANDOVER_AFTER
            {
                handover_tried = true;
                match hand_over(&current_exe(&p.started_as), p.listener.as_raw_fd()) {
                    Ok(pid) => {
                        eprintln!(
                            "nib: answers still in flight after {} ms: handed the socket to PID {pid}, which serves new connections; this process exits when they are out",
                            HANDOVER_AFTER.as_millis()
                        );
                        // systemd follows the successor (NotifyAccess=main suffices: this
                        // is still the main process when it says so).
                        p.notifier.send(&format!("MAINPID={pid}"));
                        *why = Why::HandedOver;
                    }
                    Err(e) => eprintln!(
                        "nib: handing the socket over: {e}; restarting in place once the answers are out"
                    ),
                }
            }
            if since.elapsed() >= drain_limit {
                let mut n = 0;
                for c in conns {
                    n += guard::cut(c.fd, c.ino, libc::SHUT_RDWR) as usize;
                }
                eprintln!(
                    "nib: {} s passed: shut {n} connections still open{}",
                    drain_limit.as_secs(),
                    if accept_dead {
                        ""
                    } else {
                        "; tiny_http's accept thread never ended"
                    }
                );
                break;
            }
            for c in conns {
                let nothing_left =
                    c.inq == 0 && (c.bytes_received > 0 || c.last_recv_ms >= FRESH_GRACE_MS);
                if nothing_left
                    && !read_shut.contains(&c.ino)
                    && guard::cut(c.fd, c.ino, libc::SHUT_RD)
                {
                    read_shut.insert(c.ino);
                }
            }
            continue;
        }

        let mut begin = None;
        if p.signals.stop.load(Ordering::Relaxed) {
            begin = Some(Why::Stop);
        } else if p.signals.hup.swap(false, Ordering::Relaxed) {
            eprintln!("nib: SIGHUP: checking the new config and binary");
            match validate(&current_exe(&p.started_as)) {
                Ok(()) => begin = Some(Why::Hup),
                Err(msg) => eprintln!(
                    "nib: not restarting, the new image would not start: {msg}; serving on with the running config"
                ),
            }
        } else if accept_failed {
            begin = Some(Why::AcceptDied);
        } else if quarantined.len() >= QUARANTINE_LIMIT {
            begin = Some(Why::Quarantine);
        } else if let Some(limit) = cfg.max_rss_kb
            && last_rss.elapsed() >= RSS_EVERY
        {
            last_rss = Instant::now();
            if let Some(rss) = crate::memory::status_kb("VmRSS")
                && rss > limit
            {
                eprintln!("nib: resident memory {rss} KB is above max_rss_kb = {limit}");
                begin = Some(Why::Memory);
            }
        }
        if begin.is_none() && quiet {
            // A backlog that tiny_http does not empty means its accept thread is gone
            // without a word (it panics when it cannot duplicate an accepted socket). Only
            // looked at when no request came for a tick: a busy loop pays nothing for it,
            // and a full backlog under load is not taken for deafness.
            if backlog_waiting(p.listener.as_raw_fd()) {
                let since = *deaf_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= DEAF_AFTER {
                    eprintln!("nib: connections are waiting but tiny_http is not accepting them");
                    // Its thread is gone: there is no accept to retire or to wait for.
                    accept_dead = true;
                    begin = Some(Why::AcceptDied);
                }
            } else {
                deaf_since = None;
            }
        }
        match begin {
            Some(why) => {
                eprintln!("nib: {}", why.describe());
                if why == Why::Stop {
                    p.notifier.send("STOPPING=1");
                } else {
                    p.notifier
                        .send(&notify::reloading_message(notify::monotonic_usec()));
                }
                if !accept_dead {
                    retire(tiny_fd, p.listener_ino, p.local);
                }
                draining = Some((why, Instant::now()));
            }
            None => {
                let mut skip = std::borrow::Cow::Borrowed(&quarantined);
                if flow.reading_sockets().next().is_some() {
                    skip.to_mut().extend(flow.reading_sockets());
                }
                guard.sweep(&skip)
            }
        }
    }
    let (why, since) = draining.expect("the loop only ends while draining");
    watch_stop.store(true, Ordering::Relaxed);
    eprintln!(
        "nib: every accepted connection answered in {} ms",
        since.elapsed().as_millis()
    );
    flow.finish();
    app.finish();
    // Closing the database checkpoints its WAL; the new image opens it afresh.
    drop(app);
    // Dropping the Server would connect to the listening socket to wake an accept thread
    // that has ended already; that connection would reach the next image for nothing.
    std::mem::forget(server);
    Ok(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_fds_parsing() {
        let cases = [
            (None, None, Ok(None)),
            (Some("1"), Some("42"), Ok(Some(3))),
            (Some("1"), Some("43"), Ok(None)),
            (Some("1"), None, Ok(None)),
            (Some("0"), Some("42"), Ok(None)),
            (Some("2"), Some("42"), Err(())),
            (Some("x"), Some("42"), Err(())),
        ];
        for (fds, pid, want) in cases {
            let got = listen_fds(fds, pid, 42).map_err(|_| ());
            assert_eq!(got, want, "{fds:?} {pid:?}");
        }
    }
}
