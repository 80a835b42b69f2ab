//! The life of the server process: the listening socket (bound, or inherited through
//! `LISTEN_FDS` from systemd or from the previous image of this process), the request
//! loop's outer shell, signals, graceful stop, graceful restart in place, the connection
//! guard's schedule, systemd notifications, and the memory limit. Handlers know nothing of
//! this; they run inside the loop one request at a time. This file binds the socket and
//! runs the generations; `generation` is the loop itself (its decisions in one pure
//! function), and `restart` the steps below that start the next image.
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
//! When answers are still in flight [`HANDOVER_AFTER`](restart::HANDOVER_AFTER) into step 3
//! (a large download to a slow reader, which may take up to `drain_seconds`), waiting for
//! them would leave new connections in the backlog as long. The image then hands over
//! instead, as nginx's binary upgrade and Unicorn's USR2 do: it starts the binary on disk
//! as a new process with the socket at fd 3 (`NIB_HANDED_OVER=1`), tells systemd the new
//! main PID (`MAINPID=`), finishes its answers and exits 0. The successor serves at once.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::error::StartupError;
use crate::lifecycle::notify::Notifier;
use crate::sys;

mod generation;
pub(crate) mod guard;
pub(crate) mod memory;
pub(crate) mod notify;
mod restart;

use generation::generation;
use restart::{HANDOVER_VAR, exec_self, validate};

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
    if let Err(e) = sys::raise_nofile_limit() {
        eprintln!("nib: raising the limit on open files: {e}");
    }
}

/// Options for the listening socket, whichever way it came (bound, inherited, systemd).
fn tune_listener(fd: RawFd) {
    // tiny_http never sets TCP_NODELAY; with Nagle and delayed ACKs a 6.7 KB page took
    // 44 ms. Linux hands it on to every accepted socket.
    if let Err(e) = sys::set_tcp_int(fd, sys::TcpOption::NoDelay, 1) {
        eprintln!("nib: setting TCP_NODELAY: {e}");
    }
    // Accept a connection only once its request has begun to arrive (Unicorn's
    // `tcp_defer_accept`, nginx's `deferred`): tiny_http's thread for it then reads at
    // once instead of sleeping until the first bytes come and being woken for them. With
    // one request per connection this took a post page from 14,000 to 17,000 requests/s.
    // A client that connects and says nothing stays in the kernel, holding no thread and
    // no descriptor, until the deferral ends (one SYN-ACK retransmission, about 1-3 s);
    // then it is accepted anyway and the guard treats it as any idle connection.
    if let Err(e) = sys::set_tcp_int(fd, sys::TcpOption::DeferAccept, 1) {
        eprintln!("nib: setting TCP_DEFER_ACCEPT: {e}");
    }
    // A send that moves no byte for this long fails (EAGAIN), so a client that stops
    // reading frees its writer thread (see `writer`). Linux copies socket options from the
    // listening socket to each accepted one; on the listener itself it changes nothing.
    if let Err(e) = sys::set_send_timeout(fd, crate::http::writer::SEND_TIMEOUT) {
        eprintln!("nib: setting SO_SNDTIMEO: {e}");
    }
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
        let l =
            sys::adopt_listener(fd).map_err(|e| StartupError::Other(format!("LISTEN_FDS: {e}")))?;
        // Nothing this process starts may inherit it; the handover clears the flag again.
        sys::set_cloexec(fd, true).map_err(|e| StartupError::Other(format!("fd {fd}: {e}")))?;
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
    // No other thread runs yet, so fd 3 cannot be taken between the check and the move.
    Ok(sys::move_listener(l, LISTEN_FD))
}

/// The signals the loop reacts to, as flags set by signal-hook's handlers.
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
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
    // It fails only for an invalid `how`, so its result is ignored.
    let _ = sys::block_handled_signals(false);
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
        listener_ino: sys::inode(listener.as_raw_fd()).unwrap_or(0),
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
