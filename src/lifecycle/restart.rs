//! Restarting: checking that the binary on disk accepts the configuration, retiring
//! tiny_http's duplicate of the listening socket, re-executing in place and handing the
//! socket to a successor process (see the module docs of `lifecycle` for the sequence).

use std::ffi::CString;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LISTEN_FD;
use crate::sys;

/// Environment variables that belong to one image and are not passed to the next.
pub(super) const IMAGE_VARS: [&str; 5] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NIB_CHECK_ONLY",
    HANDOVER_VAR,
];

/// Set for a successor started by [`hand_over`]: the listening socket is at fd 3. (A
/// successor's PID is not known before it starts, so `LISTEN_PID` cannot name it.)
pub(super) const HANDOVER_VAR: &str = "NIB_HANDED_OVER";

/// A restart whose answers in flight (a large download, say) are not all out after this
/// long hands the socket to a new process instead of waiting for them: connections that
/// arrive meanwhile are then served within this bound, not after the whole drain.
pub(super) const HANDOVER_AFTER: Duration = Duration::from_millis(500);

/// Runs the binary on disk with this process's arguments and `NIB_CHECK_ONLY=1`: it loads
/// the configuration exactly as a new image would and exits. `Err` carries its message.
pub(super) fn validate(exe: &std::path::Path) -> Result<(), String> {
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
pub(super) fn exec_self(exe: &std::path::Path, listener: RawFd) -> io::Error {
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
    if listener != LISTEN_FD {
        // Only reached when fd 3 was taken at start-up; dup2 clears close-on-exec.
        if let Err(e) = sys::dup2(listener, LISTEN_FD) {
            return e;
        }
    } else if let Err(e) = sys::set_cloexec(LISTEN_FD, false) {
        return e;
    }
    // A SIGHUP or SIGTERM between exec and the new image's handlers would hit the default
    // action (terminate); blocked, it waits for the new image, which unblocks it.
    // It fails only for an invalid `how`, so its result is ignored.
    let _ = sys::block_handled_signals(true);
    let e = sys::execve(&path, &argv, &envp);
    // The exec failed: this image serves on, so it takes the signals and keeps the socket
    // to itself again. Neither call can fail with the arguments they get (the mask was
    // just set by the same call, the descriptor is ours), so their results are ignored.
    let _ = sys::block_handled_signals(false);
    let _ = sys::set_cloexec(LISTEN_FD, true);
    e
}

/// Starts a successor: the binary on disk, with the same arguments, serving on the same
/// listening socket (at fd 3) while this process finishes the answers it has in flight,
/// as nginx's binary upgrade and Unicorn's USR2 do. Returns its PID.
pub(super) fn hand_over(exe: &std::path::Path, listener: RawFd) -> io::Result<u32> {
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
    // The child gets the socket at fd 3 and the handled signals blocked until its
    // handlers are in place, as across `exec_self`.
    sys::pass_fd(&mut cmd, listener, LISTEN_FD);
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Retires tiny_http's duplicate of the listening socket (see the module docs, step 2).
pub(super) fn retire(tiny_fd: RawFd, listener_ino: u64, local: SocketAddr) {
    // If the descriptor is no longer the listening socket, tiny_http's accept thread has
    // ended and closed it already; the number must then not be touched.
    if sys::inode(tiny_fd) != Some(listener_ino) {
        return;
    }
    if let Err(e) = sys::park(tiny_fd, local.is_ipv4()) {
        // tiny_http's thread goes on accepting; the drain waits for it up to its limit.
        eprintln!("nib: restart: retiring tiny_http's listening socket: {e}");
        return;
    }
    // Wake an accept that is already blocked on the real socket. The connection carries
    // no request and is closed at once: whichever image accepts it reads end-of-file.
    let _ = crate::sockets::knock(local);
}
