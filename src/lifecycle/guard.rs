//! The connection guard: tiny_http runs a thread per connection and has no limits of its
//! own, so the request loop looks at the TCP sockets the process holds (`sockets`) and
//! cuts the ones that only cost memory: idle keep-alive connections, requests whose header
//! never completes, and the most idle connections beyond `max_connections`. A watch thread
//! of its own answers header floods and frees tiny_http threads for starved connections.
//! The same scan tells the graceful restart when every connection has been answered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::MAX_HEADER;
use crate::sockets::{Conn, cut, inspect, own_fds, pinned, scan};
use crate::sys;

/// A connection that has sent nothing for this long between requests is closed. Five
/// seconds covers a browser fetching a page's assets and a reader clicking the next link
/// soon after; each idle connection holds a tiny_http thread (a stack and ~10 KB of RSS),
/// and nginx in front reconnects in microseconds over loopback, so a short value is cheap.
pub(crate) const IDLE: Duration = Duration::from_secs(5);

/// A request whose header (or small body) has not completed this long after its first
/// byte is cut. A real client sends a header in one packet, nginx always does; ten
/// seconds leaves room for a slow mobile link while an attacker trickling bytes must
/// open 25 new connections a second to hold 256 of them.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// How often the guard looks at the sockets while serving.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Why the guard closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Idle,
    SlowRequest,
    OverLimit,
}

/// The guard's view of one socket for [`decide`]: how long it has been idle and, when
/// bytes arrived that have not been answered yet, for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct View {
    pub ino: u64,
    pub idle: Duration,
    pub pending: Option<Duration>,
}

/// The pure rule: idle connections and overdue requests go, then the most idle beyond the
/// connection cap. A connection with a request pending counts as idle only once the guard
/// itself has seen it pending for [`IDLE`]: after a stall of the loop (when the guard did
/// not look), requests that arrived meanwhile are complete and about to be answered, and
/// their sockets' silence since is not idleness.
pub(crate) fn decide(views: &[View], max_connections: usize) -> Vec<(u64, Reason)> {
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for v in views {
        if v.pending.is_some_and(|p| p >= HEADER_DEADLINE) {
            out.push((v.ino, Reason::SlowRequest));
        } else if v.idle >= IDLE && v.pending.is_none_or(|p| p >= IDLE) {
            out.push((v.ino, Reason::Idle));
        } else {
            keep.push(*v);
        }
    }
    if keep.len() > max_connections {
        keep.sort_by_key(|v| std::cmp::Reverse(v.idle));
        let excess = keep.len() - max_connections;
        out.extend(keep[..excess].iter().map(|v| (v.ino, Reason::OverLimit)));
    }
    out
}

/// What the guard remembers about a socket between sweeps.
struct Track {
    tx_seen: u64,
    rx_answered: u64,
    pending_since: Option<Instant>,
}

/// The guard's state across sweeps.
pub(crate) struct Guard {
    max_connections: usize,
    tracks: HashMap<u64, Track>,
    last_sweep: Instant,
}

impl Guard {
    pub fn new(max_connections: usize) -> Guard {
        Guard {
            max_connections,
            tracks: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// One sweep, at most every [`SWEEP_EVERY`]; `skip` are sockets that must not be
    /// touched or counted. Logs one line when it closed something.
    pub fn sweep(&mut self, skip: &HashSet<u64>) {
        if self.last_sweep.elapsed() < SWEEP_EVERY {
            return;
        }
        self.last_sweep = Instant::now();
        let now = Instant::now();
        // Without the list (no descriptor to spare), this sweep is skipped.
        let Ok(conns) = scan(skip) else { return };
        let mut views = Vec::with_capacity(conns.len());
        let mut live = HashSet::with_capacity(conns.len());
        for c in &conns {
            live.insert(c.ino);
            let t = self.tracks.entry(c.ino).or_insert(Track {
                tx_seen: c.bytes_acked,
                // First seen after an answer went out: what came before was answered.
                rx_answered: if c.bytes_acked > 0 {
                    c.bytes_received
                } else {
                    0
                },
                pending_since: None,
            });
            if c.bytes_acked != t.tx_seen {
                // An answer went out: everything received so far counts as answered.
                t.tx_seen = c.bytes_acked;
                t.rx_answered = c.bytes_received;
                t.pending_since = None;
            }
            if c.bytes_received > t.rx_answered && t.pending_since.is_none() {
                t.pending_since = Some(now);
            }
            let idle = Duration::from_millis(c.last_recv_ms.min(c.last_sent_ms) as u64);
            views.push(View {
                ino: c.ino,
                // Unread bytes waiting in the kernel are not idleness, and neither is an
                // answer the client has not taken yet: its writer gives up after
                // `writer::SEND_TIMEOUT` without progress.
                idle: if c.inq > 0 || c.outq > 0 {
                    Duration::ZERO
                } else {
                    idle
                },
                pending: t.pending_since.map(|p| now - p),
            });
        }
        self.tracks.retain(|ino, _| live.contains(ino));
        let verdicts = decide(&views, self.max_connections);
        if verdicts.is_empty() {
            return;
        }
        let (mut idle, mut slow, mut over) = (0, 0, 0);
        for (ino, why) in verdicts {
            let Some(c) = conns.iter().find(|c| c.ino == ino) else {
                continue;
            };
            if cut(c.fd, c.ino, Shutdown::Both) {
                self.tracks.remove(&ino);
                match why {
                    Reason::Idle => idle += 1,
                    Reason::SlowRequest => slow += 1,
                    Reason::OverLimit => over += 1,
                }
            }
        }
        let n = idle + slow + over;
        if n > 0 {
            eprintln!(
                "nib: guard: closed {n} connections ({idle} idle > {}s, {slow} request unfinished > {}s, {over} over max_connections={}); {} were open",
                IDLE.as_secs(),
                HEADER_DEADLINE.as_secs(),
                self.max_connections,
                conns.len()
            );
        }
    }
}

/// What tiny_http may read past a header block before it hands the request over: its
/// 1 KiB read buffer and a body of up to 1 KiB, which it reads with the header.
const HEADER_SLACK: u64 = 2 * 1024;

/// How often the socket watch looks at the sockets, at the least.
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// The longest pause between two looks: on a busy machine a look takes longer in wall
/// time without costing more CPU, and the pause must not grow with it past what a header
/// flood may read meanwhile.
const WATCH_MOST: Duration = Duration::from_millis(25);

/// The answer to a header block over [`MAX_HEADER`], written straight to the socket.
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: nib\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nConnection: close\r\n\r\nrequest header block over 8 KiB\n";

/// A new connection whose request has waited this long without tiny_http reading a byte
/// of it is starved (see [`watch_sockets`]). tiny_http takes a request it has a thread for
/// within microseconds, so even a loaded machine stays far below this.
const STARVED: Duration = Duration::from_millis(20);

/// A request still waiting this long for a thread makes the watch free or add threads
/// itself: a starved request is then answered well within 100 ms of its arrival (60 ms at
/// worst in `bench/burst.py`), since the wait is measured from the kernel's own receive
/// time, not from when the watch first saw it.
const STARVED_LONG: Duration = Duration::from_millis(40);

/// A connection silent this long in both directions between requests may be closed for a
/// starved one, rather than adding a thread for it. A second is well past the pause
/// between a page and its assets, and past any pause of the loop, so such a connection
/// has had every answer it asked for.
const IDLE_ENOUGH: u32 = 1000;

/// The most connections the watch opens to its own listening socket in one look, to wake
/// threads for starved connections (see [`watch_sockets`]).
const KNOCKS_MOST: usize = 8;

/// How long a knock counts as on its way: a starved connection still seen this soon after
/// a knock may be the one it is about to free, so it is not knocked for again.
const KNOCK_FLIGHT: Duration = Duration::from_millis(25);

/// What the watch remembers of a socket between looks.
struct Mark {
    /// Bytes acknowledged by the client when last seen.
    acked: u64,
    /// How much tiny_http had read when an answer last went out.
    read: u64,
}

/// Starts the socket watch, a thread of its own that no request can hold up. It looks at
/// every socket each few milliseconds, reading from the kernel how much each client sent
/// and how much tiny_http has read, and acts on two things the loop cannot see:
///
/// - **Header floods.** tiny_http reads a request's header block on the connection's
///   thread, a byte at a time into a buffer without a limit, before nib sees anything:
///   one client streaming an endless header line grew the process by 25 MB a second. A
///   socket with no answer in progress whose client has sent more than a header block may
///   hold (plus [`HEADER_SLACK`]) since the last answer is answered 431 and shut, so
///   tiny_http's read ends and its buffer is freed. Sockets in `skip` (whose request body
///   nib reads; `true` once nib has answered it) are left alone until that answer goes
///   out; the watch then takes them off.
/// - **Starved connections.** tiny_http's thread pool can queue a new connection behind
///   threads that each serve a keep-alive connection (its `spawn` counts a thread that was
///   just woken as still waiting), and the queued connection then waits until one of them
///   closes: under 32 keep-alive clients a run fell to a tenth of the others' throughput.
///   A starved connection is one tiny_http has not begun: its request waits in the kernel,
///   nothing of it read and nothing sent. While one has waited [`STARVED`], the watch says
///   so in `starving`, and the loop's next answers on keep-alive connections ask their
///   clients to close (`Connection: close`), so their threads take the waiting
///   connections. Once one has waited [`STARVED_LONG`], the watch frees or adds a thread
///   for each: it closes connections silent between requests for [`IDLE_ENOUGH`], the
///   most idle first (such a connection has had every answer it asked for, and its client
///   reconnects, as after any keep-alive timeout), and for the rest it knocks: it opens a
///   connection of its own to the listening socket, which tiny_http gives a new thread
///   when none waits and ends at once, and that thread then takes the oldest waiting
///   connection. (Through a proxy that opens a connection per request, the threads may all
///   be held by refused huge bodies, which nothing else frees.)
///
/// Each look costs a few system calls per socket; the pause between looks grows with the
/// time a look takes (twenty times it, up to [`WATCH_MOST`]), so the watch costs at most a
/// twentieth of a core up to some 300 open sockets. It ends when `stop` is set.
pub(crate) fn watch_sockets(
    local: SocketAddr,
    skip: Arc<Mutex<HashMap<u64, bool>>>,
    starving: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut watch = Watch {
        local,
        skip,
        starving,
        marks: HashMap::new(),
        live: HashSet::new(),
        knocking: false,
        knocks: VecDeque::new(),
    };
    let spawned = std::thread::Builder::new()
        .name("nib-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                watch.look();
                std::thread::sleep(WATCH_EVERY.max(started.elapsed() * 20).min(WATCH_MOST));
            }
        });
    if let Err(e) = spawned {
        eprintln!("nib: starting the socket watch: {e}");
    }
}

/// The socket watch's state between looks.
struct Watch {
    /// The listening socket's address, to knock on (see [`watch_sockets`]).
    local: SocketAddr,
    skip: Arc<Mutex<HashMap<u64, bool>>>,
    starving: Arc<AtomicUsize>,
    marks: HashMap<u64, Mark>,
    /// The sockets seen in the current look.
    live: HashSet<u64>,
    /// Whether the last look knocked (a run of knocks is logged once).
    knocking: bool,
    /// When the knocks of the last [`KNOCK_FLIGHT`] were made.
    knocks: VecDeque<Instant>,
}

/// What one look found.
#[derive(Default)]
struct Look {
    refused: usize,
    starved: usize,
    starved_long: bool,
    /// Connections silent between requests: (idle ms, fd, inode).
    idle: Vec<(u32, i32, u64)>,
}

impl Watch {
    /// One look at every socket (see [`watch_sockets`]).
    fn look(&mut self) {
        self.live.clear();
        let mut look = Look::default();
        if let Ok(fds) = own_fds() {
            for fd in fds {
                let Some(c) = inspect(fd) else { continue };
                if c.is_open() && self.live.insert(c.ino) {
                    self.look_at(&c, &mut look);
                }
            }
        }
        let live = &self.live;
        self.marks.retain(|ino, _| live.contains(ino));
        lock(&self.skip).retain(|ino, _| live.contains(ino));
        self.starving.store(look.starved, Ordering::Release);
        let mut freed = 0;
        if look.starved_long {
            look.idle
                .sort_unstable_by_key(|&(ms, _, _)| std::cmp::Reverse(ms));
            for &(ms, fd, ino) in &look.idle {
                if freed == look.starved || ms < IDLE_ENOUGH {
                    break;
                }
                if cut(fd, ino, Shutdown::Both) {
                    self.marks.remove(&ino);
                    freed += 1;
                }
            }
        }
        // Connections still wait with none left to close: every other thread tiny_http
        // has is held by a connection that is not idle, or by nothing nib can reach (a
        // refused huge body's reader). Each knock adds a thread for one of them, up to
        // [`KNOCKS_MOST`] a look, less those still on their way; the first that fails
        // (the listening socket's backlog full) ends the round.
        let now = Instant::now();
        while self.knocks.front().is_some_and(|t| now - *t > KNOCK_FLIGHT) {
            self.knocks.pop_front();
        }
        let mut knocked = false;
        if look.starved_long {
            let want = look.starved.saturating_sub(freed + self.knocks.len());
            for _ in 0..want.min(KNOCKS_MOST) {
                if crate::sockets::knock(self.local).is_err() {
                    break;
                }
                self.knocks.push_back(now);
                knocked = true;
            }
        }
        if look.refused > 0 {
            eprintln!(
                "nib: guard: answered 431 to {} connections whose header block passed {} KiB",
                look.refused,
                MAX_HEADER / 1024
            );
        }
        if freed > 0 {
            eprintln!(
                "nib: guard: closed {freed} idle keep-alive connections to serve {} waiting for a thread",
                look.starved
            );
        }
        if knocked && !self.knocking {
            eprintln!(
                "nib: guard: {} connections wait for a thread with none idle to free: knocking to grow tiny_http's pool",
                look.starved
            );
        }
        self.knocking = knocked;
    }

    /// Looks at one open connection, seen for the first time in this look.
    fn look_at(&mut self, c: &Conn, look: &mut Look) {
        let read = c.bytes_received.saturating_sub(c.inq as u64);
        let m = self.marks.entry(c.ino).or_insert(Mark {
            acked: c.bytes_acked,
            // First seen after an answer went out, with nothing received since: what was
            // read was answered. (Taking it as unanswered hid every connection served
            // between two looks from the starved rule, which then waited for the 5 s idle
            // sweep.) When bytes came after the answer, they may be a request tiny_http
            // has read and the loop not yet answered, so they count as unanswered.
            read: if c.bytes_acked > 0 && c.last_recv_ms > c.last_sent_ms {
                read
            } else {
                0
            },
        });
        if c.inq > 0 && read == 0 && c.bytes_acked == 0 {
            // A connection tiny_http has not begun; its request arrived when the kernel
            // last received data.
            let waited = Duration::from_millis(u64::from(c.last_recv_ms));
            if waited >= STARVED {
                look.starved += 1;
            }
            look.starved_long |= waited >= STARVED_LONG;
            return;
        }
        if c.bytes_acked != m.acked || c.outq > 0 {
            // An answer is going out: what came before it was a request (and its body, if
            // nib read one and has answered it: the socket's mark moves past the body, so
            // it is no longer set aside; a `100 Continue` before the body does not count).
            m.acked = c.bytes_acked;
            m.read = read;
            let mut skip = lock(&self.skip);
            if skip.get(&c.ino) == Some(&true) {
                skip.remove(&c.ino);
            }
            return;
        }
        if read > m.read {
            if read - m.read > MAX_HEADER + HEADER_SLACK
                && !lock(&self.skip).contains_key(&c.ino)
                && refuse_header(c.fd, c.ino)
            {
                look.refused += 1;
            }
            return;
        }
        // Nothing pending and nothing going out: between requests, if nothing came in
        // after the last answer began (a request that came in the same millisecond may
        // have been read and not yet answered).
        if c.inq == 0 && c.bytes_received > 0 && c.last_recv_ms > c.last_sent_ms {
            look.idle.push((c.last_sent_ms, c.fd, c.ino));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the 431 to the socket at `fd` (if it still is `ino`) and shuts it.
fn refuse_header(fd: i32, ino: u64) -> bool {
    let Some(dup) = pinned(fd, ino) else {
        return false;
    };
    // tiny_http writes nothing on a connection whose request it is still reading, so the
    // bytes cannot interleave with an answer. The send never waits: an answer the socket
    // has no room for is lost, and the shutdown ends the connection either way, as it does
    // when the peer has gone already; so neither result changes what happens next.
    let _ = sys::send_nowait(dup.as_fd(), TOO_LARGE);
    let _ = sys::shutdown(dup.as_fd(), Shutdown::Both);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ino: u64, idle_ms: u64, pending_ms: Option<u64>) -> View {
        View {
            ino,
            idle: Duration::from_millis(idle_ms),
            pending: pending_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn decisions() {
        type Case<'a> = (&'a [View], usize, &'a [(u64, Reason)]);
        let cases: &[Case] = &[
            (&[v(1, 100, None)], 10, &[]),
            (&[v(1, 5_000, None)], 10, &[(1, Reason::Idle)]),
            (&[v(1, 5_000, Some(6_000))], 10, &[(1, Reason::Idle)]),
            // A request waiting for its answer, first seen after a 6 s stall, is not idle.
            (&[v(1, 6_000, Some(200))], 10, &[]),
            (&[v(1, 200, Some(10_000))], 10, &[(1, Reason::SlowRequest)]),
            (&[v(1, 200, Some(9_000))], 10, &[]),
            (
                &[v(1, 100, None), v(2, 300, None), v(3, 200, None)],
                1,
                &[(2, Reason::OverLimit), (3, Reason::OverLimit)],
            ),
            (
                &[v(1, 9_000, None), v(2, 300, None), v(3, 200, None)],
                2,
                &[(1, Reason::Idle)],
            ),
        ];
        for (views, max, want) in cases {
            assert_eq!(decide(views, *max), want.to_vec(), "{views:?} max {max}");
        }
    }
}
