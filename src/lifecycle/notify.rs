//! systemd's readiness protocol, hand-written: a datagram such as `READY=1` sent to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a
//! leading `@`), plus watchdog pings at half of `$WATCHDOG_USEC`. Everything is read from
//! the environment once at start-up into a [`Notifier`]; without `NOTIFY_SOCKET` every
//! call is a no-op, so the same binary runs under systemd, a container or a terminal.

use std::collections::HashMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotifyAddr {
    /// `@name`: Linux's abstract namespace (no file on disk).
    Abstract(Vec<u8>),
    /// An ordinary socket file.
    Path(String),
}

/// Parses `$NOTIFY_SOCKET`. systemd only ever sets an absolute path or `@name`; anything
/// else is ignored rather than guessed at.
pub(crate) fn parse_notify_addr(value: &str) -> Option<NotifyAddr> {
    if let Some(name) = value.strip_prefix('@') {
        (!name.is_empty()).then(|| NotifyAddr::Abstract(name.as_bytes().to_vec()))
    } else if value.starts_with('/') {
        Some(NotifyAddr::Path(value.to_string()))
    } else {
        None
    }
}

/// The watchdog ping interval: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises, and only when `$WATCHDOG_PID` is unset or names this process.
pub(crate) fn watchdog_interval(
    usec: Option<&str>,
    wpid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    if let Some(p) = wpid
        && p.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// The message announcing a reload, with the timestamp systemd uses to match it with
/// the `READY=1` that ends it.
pub(crate) fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=restarting in place")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's `MONOTONIC_USEC` uses.
pub(crate) fn monotonic_usec() -> u64 {
    crate::sys::monotonic_usec()
}

/// The process's link to systemd (or to nothing).
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Instant,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once.
    pub fn from_env(env: &HashMap<String, String>) -> Notifier {
        let target = env
            .get("NOTIFY_SOCKET")
            .and_then(|v| parse_notify_addr(v))
            .and_then(|addr| {
                let sa = match addr {
                    NotifyAddr::Abstract(name) => SocketAddr::from_abstract_name(name),
                    NotifyAddr::Path(p) => SocketAddr::from_pathname(p),
                };
                // std opens the socket with SOCK_CLOEXEC: it never leaks into an exec.
                Some((UnixDatagram::unbound().ok()?, sa.ok()?))
            });
        let watchdog = watchdog_interval(
            env.get("WATCHDOG_USEC").map(String::as_str),
            env.get("WATCHDOG_PID").map(String::as_str),
            std::process::id(),
        );
        Notifier {
            target,
            watchdog: watchdog.filter(|_| env.contains_key("NOTIFY_SOCKET")),
            last_ping: Instant::now(),
        }
    }

    /// Sends one message. Failures are logged, never fatal: a missing systemd must not
    /// stop a working server.
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(msg.as_bytes(), addr)
        {
            eprintln!("nib: sd_notify: {e}");
        }
    }

    /// Pings the watchdog when half its interval has passed. Called from the request loop
    /// itself, so a loop that stops turning stops pinging and systemd restarts the
    /// process; a helper thread would keep pinging for a dead loop.
    pub fn watchdog_tick(&mut self) {
        if let Some(every) = self.watchdog
            && self.last_ping.elapsed() >= every
        {
            self.send("WATCHDOG=1");
            self.last_ping = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_addresses() {
        let cases = [
            (
                "/run/systemd/notify",
                Some(NotifyAddr::Path("/run/systemd/notify".into())),
            ),
            (
                "@/org/sd/notify/1",
                Some(NotifyAddr::Abstract(b"/org/sd/notify/1".to_vec())),
            ),
            ("@", None),
            ("relative/path", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_notify_addr(input), want, "{input:?}");
        }
    }

    #[test]
    fn watchdog_intervals() {
        let cases = [
            (Some("30000000"), None, Some(Duration::from_secs(15))),
            (Some("30000000"), Some("42"), Some(Duration::from_secs(15))),
            (Some("30000000"), Some("43"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("42"), None),
        ];
        for (usec, wpid, want) in cases {
            assert_eq!(watchdog_interval(usec, wpid, 42), want, "{usec:?} {wpid:?}");
        }
    }

    #[test]
    fn reloading_carries_the_timestamp() {
        let m = reloading_message(123);
        assert!(m.starts_with("RELOADING=1\n"));
        assert!(m.contains("\nMONOTONIC_USEC=123\n"));
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("nib-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let env = HashMap::from([("NOTIFY_SOCKET".to_string(), format!("@{name}"))]);
        Notifier::from_env(&env).send("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
