//! The request flow on the loop: what happens to a request between tiny_http handing it
//! over and its answer leaving, so that no client can hold the loop.
//!
//! - A request whose connection still has an answer in flight (pipelining) waits, parked,
//!   until that answer is out: answers to one connection leave in order, and a client that
//!   pipelines without reading costs one answer in memory, not one per request.
//! - A request body tiny_http has not read already is read off the loop, on a thread of
//!   its own, only once the handler has passed its checks (route, method, length, and for
//!   the owner's forms the cookie), and within [`BODY_DEADLINE`]; then the handler runs
//!   again with it (see [`Error::NeedBody`]).
//! - Answers go to the writers ([`super::writer`]) and the access log; a streamed body is produced here a
//!   few pieces at a time, as its writer takes them ([`Pump`]).

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::Request;

use crate::access_log::AccessLog;
use crate::app::App;
use crate::error::Error;
use crate::http::writer::{Done, Wake, Writers};
use crate::http::{self, End, Pump, Pumped, Wire};
use crate::request::MAX_BODY;
use crate::request::Target;

/// A request body that has not fully arrived this long after the handler asked for it is
/// answered 408 and its connection closed.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Requests one connection may have waiting behind its answer in flight; past that the
/// connection is closed (nginx never pipelines to nib; a browser does not pipeline).
const MAX_PARKED: usize = 16;

/// Bodies read at once. Each holds a thread for up to [`BODY_DEADLINE`]; past this, a
/// further body is answered 503 at once.
const MAX_BODY_READERS: usize = 64;

/// A connection with an answer in flight.
struct Conn {
    in_flight: usize,
    parked: VecDeque<Request>,
    /// Shared with the writer of its answer: set when a request is parked behind it.
    wake: Arc<AtomicBool>,
}

/// A body being read off the loop.
struct Reading {
    /// The socket (descriptor and inode), found when the read began.
    sock: Option<(i32, u64)>,
    since: Instant,
    /// Set when the deadline passed and the socket was shut for reading.
    late: Arc<AtomicBool>,
}

/// What a body reader sends back.
struct BodyRead {
    req: Request,
    body: Result<Vec<u8>, Error>,
    late: Arc<AtomicBool>,
}

/// The flow's state; owned by the loop.
pub(crate) struct Flow {
    wire: Wire,
    done: Receiver<Done>,
    bodies_tx: Sender<BodyRead>,
    bodies: Receiver<BodyRead>,
    wake: Wake,
    conns: HashMap<SocketAddr, Conn>,
    pumps: Vec<Pump>,
    reading: Vec<Reading>,
    /// A pump could produce more right away: the loop should not sleep.
    ready: bool,
    /// The sockets in `reading`, shared with the socket watch, which leaves them alone.
    reading_set: Arc<Mutex<HashMap<u64, bool>>>,
    /// Connections waiting for a tiny_http thread, as the socket watch last counted them.
    starving: Arc<AtomicUsize>,
}

impl Flow {
    /// `wake` interrupts the loop's wait for the next request (tiny_http's `unblock`).
    pub fn new(wake: Wake) -> Flow {
        let (done_tx, done) = channel();
        let (bodies_tx, bodies) = channel();
        Flow {
            wire: Wire {
                writers: Writers::new(done_tx, Arc::clone(&wake)),
                log: AccessLog::default(),
            },
            done,
            bodies_tx,
            bodies,
            wake,
            conns: HashMap::new(),
            pumps: Vec::new(),
            reading: Vec::new(),
            ready: false,
            reading_set: Arc::default(),
            starving: Arc::default(),
        }
    }

    /// Whether the loop has work it can do without waiting (a streamed body to go on with).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Whether nothing is in flight: no answer being written or produced, no body being
    /// read, no request parked. A stop or restart waits for this.
    pub fn idle(&self) -> bool {
        self.wire.writers.active() == 0
            && self.pumps.is_empty()
            && self.reading.is_empty()
            && self.conns.values().all(|c| c.parked.is_empty())
    }

    /// The sockets whose bodies are being read: the guard leaves them to the body's own
    /// deadline, which ends with an answer rather than a cut.
    pub fn reading_sockets(&self) -> impl Iterator<Item = u64> + '_ {
        self.reading
            .iter()
            .filter_map(|r| r.sock.map(|(_, ino)| ino))
    }

    /// The same sockets, as a set the socket watch shares.
    pub fn reading_set(&self) -> Arc<Mutex<HashMap<u64, bool>>> {
        Arc::clone(&self.reading_set)
    }

    /// The count of connections waiting for a tiny_http thread, which the socket watch
    /// keeps and the flow uses up.
    pub fn starving(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.starving)
    }

    /// Takes a request tiny_http handed over.
    pub fn take(&mut self, app: &App, req: Request) {
        // The header watch cuts a header block that grows past the limit while it is read;
        // one that arrived whole between two of its looks is answered here.
        if let Some(status) = oversized(&req) {
            let t = Target::of(&req).ok();
            let e = if status == 414 {
                Error::UriTooLong
            } else {
                Error::HeaderTooLarge
            };
            let reply = http::error_reply(app, t.as_ref(), e);
            return self.dispatch(app, req, reply, End::Close);
        }
        if let Some(peer) = req.remote_addr().copied()
            && let Some(c) = self.conns.get_mut(&peer)
        {
            if c.parked.len() >= MAX_PARKED {
                eprintln!("nib: {peer}: over {MAX_PARKED} pipelined requests unanswered; closing");
                cut(Some(peer), std::net::Shutdown::Both);
                // Taking the writer out first keeps the drop from writing a 500 (which would
                // wait behind the answer in flight); with the socket shut, what is left of
                // a body reads as end-of-file at once.
                drop(req.into_writer());
                return;
            }
            c.parked.push_back(req);
            c.wake.store(true, Ordering::Release);
            return;
        }
        self.answer(app, req, None);
    }

    /// Builds and dispatches the answer to `req`, with its body when it was read here.
    fn answer(&mut self, app: &App, mut req: Request, body: Option<Vec<u8>>) {
        *app.body.borrow_mut() = body;
        let built = http::build(app, &mut req);
        app.body.borrow_mut().take();
        match built {
            None => self.read_body(app, req),
            Some(reply) => self.dispatch(app, req, reply, End::AsAsked),
        }
    }

    /// Hands an answer to the writers; `end` says how the connection goes on after it.
    fn dispatch(&mut self, app: &App, req: Request, reply: http::Reply, end: End) {
        let peer = req.remote_addr().copied();
        // An answer to a request with its body unread goes out from a thread that ends the
        // connection (see `http::dispatch`): nothing follows it on that connection.
        let tracked = !http::may_hold_body(&req);
        let wake = match peer.filter(|_| tracked) {
            Some(p) => {
                let c = self.conns.entry(p).or_insert_with(|| Conn {
                    in_flight: 0,
                    parked: VecDeque::new(),
                    wake: Arc::new(AtomicBool::new(false)),
                });
                c.in_flight += 1;
                Arc::clone(&c.wake)
            }
            None => Arc::new(AtomicBool::new(false)),
        };
        // While a connection waits for one of tiny_http's threads (see
        // `guard::watch_sockets`), a keep-alive answer asks its client to close, so the
        // thread serving it goes to the waiting one.
        let end = if end == End::AsAsked && tracked && take_one(&self.starving) {
            End::Ask
        } else {
            end
        };
        if let Some(pump) = http::dispatch(app, req, reply, &mut self.wire, wake, end) {
            self.pumps.push(pump);
            self.ready = true;
        }
    }

    /// Starts reading `req`'s body on a thread of its own.
    fn read_body(&mut self, app: &App, req: Request) {
        let peer = req.remote_addr().copied();
        if self.reading.len() >= MAX_BODY_READERS {
            let t = Target::of(&req).ok();
            let reply = http::error_reply(
                app,
                t.as_ref(),
                Error::Unavailable("too many request bodies at once".into()),
            );
            return self.dispatch(app, req, reply, End::AsAsked);
        }
        // The socket is set aside before the thread starts reading: the header watch must
        // not take the body for an endless header.
        let sock = peer.and_then(crate::sockets::find_by_peer);
        if let Some((_, ino)) = sock {
            lock(&self.reading_set).insert(ino, false);
        }
        let late = Arc::new(AtomicBool::new(false));
        let back = self.bodies_tx.clone();
        let wake = Arc::clone(&self.wake);
        let theirs = Arc::clone(&late);
        // The request travels in a slot the thread empties, so a failed spawn gives it back
        // instead of dropping it here (a drop would read the body on the loop).
        let slot = Arc::new(Mutex::new(Some(req)));
        let their_slot = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("nib-body".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let Some(mut req) = lock(&their_slot).take() else {
                    return;
                };
                drop(their_slot);
                let mut buf = Vec::new();
                // `as_reader` first sends `100 Continue` when the client waits for it.
                let r = req
                    .as_reader()
                    .take(MAX_BODY as u64 + 1)
                    .read_to_end(&mut buf);
                let body = match r {
                    Ok(_) if buf.len() > MAX_BODY => Err(Error::PayloadTooLarge),
                    Ok(_) if req.body_length().is_some_and(|n| buf.len() < n) => {
                        Err(Error::BadRequest("the request body ended early".into()))
                    }
                    Ok(_) => Ok(buf),
                    Err(_) => Err(Error::BadRequest("could not read the request body".into())),
                };
                let _ = back.send(BodyRead {
                    req,
                    body,
                    late: theirs,
                });
                wake();
            });
        match spawned {
            Ok(_) => self.reading.push(Reading {
                sock,
                since: Instant::now(),
                late,
            }),
            Err(e) => {
                eprintln!("nib: starting a thread to read a request body: {e}");
                if let Some((_, ino)) = sock {
                    lock(&self.reading_set).remove(&ino);
                }
                if let Some(req) = lock(&slot).take() {
                    let t = Target::of(&req).ok();
                    let reply = http::error_reply(
                        app,
                        t.as_ref(),
                        Error::Unavailable("could not start reading the request body".into()),
                    );
                    self.dispatch(app, req, reply, End::AsAsked);
                }
            }
        }
    }

    /// The loop's turn between requests: reports from the writers, bodies that arrived,
    /// bodies past their deadline, and the next pieces of streamed bodies.
    pub fn turn(&mut self, app: &App) {
        while let Ok(Done { peer }) = self.done.try_recv() {
            let Some(p) = peer else { continue };
            let next = match self.conns.get_mut(&p) {
                Some(c) => {
                    c.in_flight = c.in_flight.saturating_sub(1);
                    if c.in_flight > 0 {
                        continue;
                    }
                    c.parked.pop_front()
                }
                None => continue,
            };
            match next {
                Some(req) => self.answer(app, req, None),
                None => {
                    self.conns.remove(&p);
                }
            }
        }
        while let Ok(BodyRead { req, body, late }) = self.bodies.try_recv() {
            let mut sock = None;
            self.reading.retain(|r| {
                let this = Arc::ptr_eq(&r.late, &late);
                if this {
                    sock = r.sock;
                }
                !this
            });
            let body = if late.load(Ordering::Acquire) {
                Err(Error::RequestTimeout)
            } else {
                body
            };
            match body {
                Ok(b) => self.answer(app, req, Some(b)),
                Err(e) => {
                    let t = Target::of(&req).ok();
                    let reply = http::error_reply(app, t.as_ref(), e);
                    self.dispatch(app, req, reply, End::AsAsked);
                }
            }
            // The answer is handed over: the socket watch takes the socket off the set
            // once it sees the answer leave (the body read is not a header), not before.
            if let Some((_, ino)) = sock {
                lock(&self.reading_set).insert(ino, true);
            }
        }
        for r in &self.reading {
            if r.since.elapsed() >= BODY_DEADLINE
                && !r.late.swap(true, Ordering::AcqRel)
                && let Some((fd, ino)) = r.sock
            {
                // Reading ends at once; the 408 can still be written.
                crate::sockets::cut(fd, ino, std::net::Shutdown::Read);
            }
        }
        let mut ready = false;
        self.pumps.retain_mut(|p| match p.turn(app) {
            Pumped::Finished => false,
            Pumped::Waiting => true,
            Pumped::Ready => {
                ready = true;
                true
            }
        });
        self.ready = ready;
        if self.wire.log.due() {
            self.wire.log.write();
        }
    }

    /// Writes the access log lines still waiting, when the loop stops.
    pub fn finish(&mut self) {
        self.wire.log.write();
    }
}

/// 414 or 431 when the request line or the header block is over
/// [`crate::http::MAX_HEADER`], as nginx answers with its default buffers.
fn oversized(req: &Request) -> Option<u16> {
    let max = crate::http::MAX_HEADER as usize;
    if req.url().len() > max {
        return Some(414);
    }
    let block: usize = req
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    (block + req.url().len() > max).then_some(431)
}

/// Takes one from a count kept by another thread, if it is above zero.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
        .is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shuts `peer`'s connection (`how`: `SHUT_RD` or `SHUT_RDWR`), found by its address.
fn cut(peer: Option<SocketAddr>, how: std::net::Shutdown) {
    if let Some((fd, ino)) = peer.and_then(crate::sockets::find_by_peer) {
        crate::sockets::cut(fd, ino, how);
    }
}
