//! One generation of the request loop: one image's worth of serving, from opening the
//! site to the end of the drain. The loop's state lives in [`Serving`]; what a turn of the
//! loop does once the request (if any) is handled is decided by the pure [`next_action`]
//! from [`Facts`], so every rule of when to restart, stop, hand over or keep serving is in
//! one function with a table of cases beside it.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tiny_http::{Request, Response, Server};

use super::restart::{HANDOVER_AFTER, hand_over, retire, validate};
use super::{Process, Why, current_exe};
use crate::app::App;
use crate::config::Config;
use crate::error::StartupError;
use crate::http::flow::Flow;
use crate::lifecycle::guard::{self, Guard};
use crate::lifecycle::notify;
use crate::sockets::{self, Conn};
use crate::sys;

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

/// What the loop knows at one point of a turn. The facts that cost something to learn
/// (running the new image, reading the resident set, polling the backlog, listing the
/// connections) start as `None` and are learnt only when [`next_action`] asks for them,
/// in the order it asks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Facts {
    /// SIGTERM or SIGINT came.
    stop: bool,
    /// SIGHUP came and has not been acted on.
    hup: bool,
    /// tiny_http reported in this turn that its accept thread ended.
    accept_failed: bool,
    /// tiny_http's accept thread is known to have ended.
    accept_dead: bool,
    /// Sockets of refused huge bodies.
    quarantined: usize,
    /// `max_rss_kb` is set and the resident set was last read [`RSS_EVERY`] ago.
    rss_due: bool,
    /// No request came in this turn.
    quiet: bool,
    /// No answer or body is in flight.
    flow_idle: bool,
    drain_limit: Duration,
    /// The drain under way, if any.
    drain: Option<DrainFacts>,
    /// Whether the binary on disk accepts the configuration.
    new_image_ok: Option<bool>,
    /// Whether the resident set is above `max_rss_kb`.
    rss_over: Option<bool>,
    /// How long connections have waited in the backlog without tiny_http taking any
    /// (zero when none waits).
    deaf_for: Option<Duration>,
    /// Whether the list of connections was read and is empty (false when it could not be
    /// read: no connection is then known to be answered).
    none_open: Option<bool>,
}

/// The drain under way.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DrainFacts {
    why: Why,
    /// Since the drain began.
    elapsed: Duration,
    /// Whether this drain has tried to hand the socket to a successor.
    handover_tried: bool,
}

/// What to do next in a turn of the loop. The first six learn a fact or change the drain,
/// and the turn goes on with [`next_action`]; the rest end the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Run the binary on disk to check the configuration (SIGHUP).
    CheckNewImage,
    /// Read the resident set.
    ReadRss,
    /// Look whether connections wait in the backlog.
    LookAtBacklog,
    /// A stop came during a restart: stop instead.
    StopInstead,
    /// List the open connections.
    ListConnections,
    /// Answers are still in flight after [`HANDOVER_AFTER`]: start a successor.
    HandOver,
    /// Begin a drain for this reason.
    Begin(Why),
    /// tiny_http's accept thread is gone without a word: begin a restart, with nothing to
    /// retire.
    BeginDeaf,
    /// Nothing to begin: sweep idle connections and wait for the next request.
    KeepServing,
    /// Every accepted connection is answered: the generation ends.
    Finish,
    /// The drain's time is up: cut what is left and end the generation.
    CutAndFinish,
    /// Draining on: shut the reading side of connections with nothing left to read.
    ShutIdleReads,
}

/// The decision of one step of a turn (see [`Action`]).
fn next_action(f: &Facts) -> Action {
    match &f.drain {
        Some(d) => next_drain_action(f, d),
        None => next_serving_action(f),
    }
}

fn next_serving_action(f: &Facts) -> Action {
    if f.stop {
        return Action::Begin(Why::Stop);
    }
    if f.hup {
        match f.new_image_ok {
            None => return Action::CheckNewImage,
            Some(true) => return Action::Begin(Why::Hup),
            // A config the new image refuses keeps this one serving; only deafness is
            // looked at in this turn.
            Some(false) => {}
        }
    } else if f.accept_failed {
        return Action::Begin(Why::AcceptDied);
    } else if f.quarantined >= QUARANTINE_LIMIT {
        return Action::Begin(Why::Quarantine);
    } else if f.rss_due {
        match f.rss_over {
            None => return Action::ReadRss,
            Some(true) => return Action::Begin(Why::Memory),
            Some(false) => {}
        }
    }
    // A backlog that tiny_http does not empty means its accept thread is gone without a
    // word (it panics when it cannot duplicate an accepted socket). Only looked at when no
    // request came for a tick: a busy loop pays nothing for it, and a full backlog under
    // load is not taken for deafness.
    if !f.quiet {
        return Action::KeepServing;
    }
    match f.deaf_for {
        None => Action::LookAtBacklog,
        Some(d) if d >= DEAF_AFTER => Action::BeginDeaf,
        Some(_) => Action::KeepServing,
    }
}

fn next_drain_action(f: &Facts, d: &DrainFacts) -> Action {
    let restarting = !matches!(d.why, Why::Stop | Why::HandedOver);
    if restarting && f.stop {
        return Action::StopInstead;
    }
    let Some(none_open) = f.none_open else {
        return Action::ListConnections;
    };
    if f.accept_dead && f.flow_idle && none_open {
        return Action::Finish;
    }
    if restarting && !d.handover_tried && d.elapsed >= HANDOVER_AFTER {
        return Action::HandOver;
    }
    if d.elapsed >= f.drain_limit {
        return Action::CutAndFinish;
    }
    Action::ShutIdleReads
}

/// The drain under way (see the module docs of `lifecycle`, step 3).
struct Drain {
    why: Why,
    since: Instant,
    handover_tried: bool,
}

/// What came of waiting for a request.
struct Turn {
    quiet: bool,
    accept_failed: bool,
}

/// The request loop's state for one generation.
struct Serving<'a> {
    p: &'a mut Process,
    max_rss_kb: Option<u64>,
    drain_limit: Duration,
    server: Arc<Server>,
    /// tiny_http's duplicate of the listening socket.
    tiny_fd: RawFd,
    flow: Flow,
    app: App,
    guard: Guard,
    watch_stop: Arc<AtomicBool>,
    /// Sockets the loop must neither count nor touch: refused huge bodies.
    quarantined: HashSet<u64>,
    accept_dead: bool,
    drain: Option<Drain>,
    /// The connections listed in this turn of a drain (`Err` when the list could not be
    /// read: it takes a descriptor, and under EMFILE there is none).
    conns: io::Result<Vec<Conn>>,
    read_shut: HashSet<u64>,
    last_rss: Instant,
    deaf_since: Option<Instant>,
    /// Whether the heap has been handed back since the last request (see `receive`).
    trimmed: bool,
}

/// One image's worth of serving, from opening the site to the end of the drain.
pub(super) fn generation(cfg: &Config, p: &mut Process) -> Result<Why, StartupError> {
    let mut s = Serving::start(cfg, p)?;
    loop {
        let turn = s.receive();
        if s.decide(turn) {
            break;
        }
    }
    Ok(s.finish())
}

/// Gives tiny_http a duplicate of the listening socket (the original stays ours for the
/// handover) and a flow of answers that wakes it. Returns the server and the duplicate's
/// number.
fn start_server(p: &Process) -> Result<(Arc<Server>, RawFd, Flow), StartupError> {
    let tiny = sys::dup_cloexec(p.listener.as_raw_fd())
        .map_err(|e| StartupError::Other(format!("duplicating the listening socket: {e}")))?;
    let tiny_listener = std::net::TcpListener::from(tiny);
    let tiny_fd = tiny_listener.as_raw_fd();
    let server = Server::from_listener(tiny_listener, None)
        .map_err(|e| StartupError::Other(format!("starting server: {e}")))?;
    let server = Arc::new(server);
    // Writers and body readers wake the loop through tiny_http's own queue: an `unblock`
    // ends the wait for the next request early. A weak reference, so that only the loop
    // decides when the server goes (see `Serving::finish`).
    let weak = Arc::downgrade(&server);
    let flow = Flow::new(Arc::new(move || {
        if let Some(s) = weak.upgrade() {
            s.unblock();
        }
    }));
    Ok((server, tiny_fd, flow))
}

impl<'a> Serving<'a> {
    /// Opens the site, starts tiny_http and the socket watch, and tells systemd.
    fn start(cfg: &Config, p: &'a mut Process) -> Result<Serving<'a>, StartupError> {
        let started = Instant::now();
        let (db, mut index, refresh) = crate::app::open_site(cfg)?;
        let indexed_in = started.elapsed();
        // The watch first, then a second pass: a change made since the first pass is found
        // by it, and one made later is an event for the loop's first check. The pass finds
        // nothing changed otherwise, and its time is what a check that scans costs.
        index.watch(&cfg.posts_dir);
        index.refresh(&db, &cfg.posts_dir);
        let scan = index.last_scan;
        let (server, tiny_fd, flow) = start_server(p)?;

        let mut app = App::new(cfg.clone(), db)?;
        app.index = index;
        match crate::secrets::setup_secrets(&app.db, &app.cfg) {
            // Shown this once: only its hash is kept.
            Ok(Some(token)) => crate::secrets::announce_token(&token, app.cfg.base()),
            Ok(None) => {}
            Err(e) => return Err(StartupError::db("setting up the admin secrets", e)),
        }
        crate::lifecycle::memory::return_free_heap();
        crate::lifecycle::memory::drop_startup_code();
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

        let watch_stop = Arc::new(AtomicBool::new(false));
        guard::watch_sockets(
            p.local,
            flow.reading_set(),
            flow.starving(),
            Arc::clone(&watch_stop),
        );
        Ok(Serving {
            p,
            max_rss_kb: cfg.max_rss_kb,
            drain_limit: Duration::from_secs(cfg.drain_seconds),
            server,
            tiny_fd,
            flow,
            app,
            guard: Guard::new(cfg.max_connections),
            watch_stop,
            quarantined: HashSet::new(),
            accept_dead: false,
            drain: None,
            conns: Ok(Vec::new()),
            read_shut: HashSet::new(),
            last_rss: Instant::now(),
            deaf_since: None,
            trimmed: true,
        })
    }

    /// Waits for a request (at most a tick) and handles it, then does the loop's
    /// housekeeping.
    fn receive(&mut self) -> Turn {
        let timeout = if self.flow.ready() {
            // A streamed body can go on at once: look for a request without waiting.
            Duration::ZERO
        } else if self.drain.is_some() {
            DRAIN_TICK
        } else {
            TICK
        };
        let received = self.server.recv_timeout(timeout);
        // tiny_http hands over requests, so it is accepting: only a quiet tick can be deaf.
        let quiet = matches!(received, Ok(None));
        // Set when tiny_http reports that its accept thread ended (EMFILE, say); the
        // restart then begins like any other, with its log line and notification.
        let mut accept_failed = false;
        if !quiet {
            self.deaf_since = None;
        }
        match received {
            Ok(Some(req)) => match declared_body(&req) {
                Some(n) if n > crate::request::MAX_BODY => {
                    if let Some(ino) = refuse_huge_body(&self.app, req, n) {
                        self.quarantined.insert(ino);
                    }
                }
                _ => {
                    self.app.refresh_posts();
                    self.flow.take(&self.app, req);
                    self.trimmed = false;
                }
            },
            Ok(None) => {
                // A quiet tick after a burst: give the burst's freed heap (fragments glibc
                // would keep) back to the kernel, once, so RSS returns to its idle size.
                if !self.trimmed {
                    crate::lifecycle::memory::return_free_heap();
                    self.trimmed = true;
                }
            }
            Err(e) => {
                if !self.accept_dead && self.drain.is_none() {
                    eprintln!("nib: tiny_http stopped accepting: {e}");
                    accept_failed = true;
                }
                self.accept_dead = true;
            }
        }
        self.flow.turn(&self.app);
        self.app.tick();
        self.p.notifier.watchdog_tick();
        Turn {
            quiet,
            accept_failed,
        }
    }

    /// The facts at the start of a turn's decision; the costly ones are left to learn.
    fn facts(&self, turn: &Turn) -> Facts {
        Facts {
            stop: self.p.signals.stop.load(Ordering::Relaxed),
            hup: self.p.signals.hup.load(Ordering::Relaxed),
            accept_failed: turn.accept_failed,
            accept_dead: self.accept_dead,
            quarantined: self.quarantined.len(),
            rss_due: self.max_rss_kb.is_some() && self.last_rss.elapsed() >= RSS_EVERY,
            quiet: turn.quiet,
            flow_idle: self.flow.idle(),
            drain_limit: self.drain_limit,
            drain: self.drain_facts(),
            new_image_ok: None,
            rss_over: None,
            deaf_for: None,
            none_open: None,
        }
    }

    fn drain_facts(&self) -> Option<DrainFacts> {
        self.drain.as_ref().map(|d| DrainFacts {
            why: d.why,
            elapsed: d.since.elapsed(),
            handover_tried: d.handover_tried,
        })
    }

    /// Decides and acts until the turn is over. Returns whether the generation has ended.
    fn decide(&mut self, turn: Turn) -> bool {
        let mut f = self.facts(&turn);
        loop {
            f.drain = self.drain_facts();
            match next_action(&f) {
                Action::CheckNewImage => f.new_image_ok = Some(self.check_new_image()),
                Action::ReadRss => f.rss_over = Some(self.rss_over()),
                Action::LookAtBacklog => f.deaf_for = Some(self.deaf_for()),
                Action::StopInstead => self.stop_instead(),
                Action::ListConnections => {
                    // Without the list, no connection is known to be answered: the drain
                    // waits on, up to its limit, rather than cut requests in flight.
                    self.conns = sockets::scan(&self.quarantined);
                    f.none_open = Some(self.conns.as_ref().is_ok_and(|c| c.is_empty()));
                }
                Action::HandOver => self.hand_over(),
                Action::Begin(why) => {
                    self.begin(why);
                    return false;
                }
                Action::BeginDeaf => {
                    eprintln!("nib: connections are waiting but tiny_http is not accepting them");
                    // Its thread is gone: there is no accept to retire or to wait for.
                    self.accept_dead = true;
                    self.begin(Why::AcceptDied);
                    return false;
                }
                Action::KeepServing => {
                    self.sweep();
                    return false;
                }
                Action::Finish => return true,
                Action::CutAndFinish => {
                    self.cut_all();
                    return true;
                }
                Action::ShutIdleReads => {
                    self.shut_idle_reads();
                    return false;
                }
            }
        }
    }

    /// SIGHUP: whether the binary on disk accepts the configuration.
    fn check_new_image(&mut self) -> bool {
        self.p.signals.hup.store(false, Ordering::Relaxed);
        eprintln!("nib: SIGHUP: checking the new config and binary");
        match validate(&current_exe(&self.p.started_as)) {
            Ok(()) => true,
            Err(msg) => {
                eprintln!(
                    "nib: not restarting, the new image would not start: {msg}; serving on with the running config"
                );
                false
            }
        }
    }

    fn rss_over(&mut self) -> bool {
        self.last_rss = Instant::now();
        let limit = self.max_rss_kb.unwrap_or(u64::MAX);
        match crate::lifecycle::memory::status_kb("VmRSS") {
            Some(rss) if rss > limit => {
                eprintln!("nib: resident memory {rss} KB is above max_rss_kb = {limit}");
                true
            }
            _ => false,
        }
    }

    /// How long connections have been waiting in the backlog (zero when none waits).
    fn deaf_for(&mut self) -> Duration {
        // A poll that fails says nothing about the backlog, and is taken as none waiting.
        if sys::readable_now(self.p.listener.as_raw_fd()).unwrap_or(false) {
            self.deaf_since.get_or_insert_with(Instant::now).elapsed()
        } else {
            self.deaf_since = None;
            Duration::ZERO
        }
    }

    /// Begins a drain: tells the log and systemd, and retires tiny_http's socket.
    fn begin(&mut self, why: Why) {
        eprintln!("nib: {}", why.describe());
        if why == Why::Stop {
            self.p.notifier.send("STOPPING=1");
        } else {
            self.p
                .notifier
                .send(&notify::reloading_message(notify::monotonic_usec()));
        }
        if !self.accept_dead {
            retire(self.tiny_fd, self.p.listener_ino, self.p.local);
        }
        self.drain = Some(Drain {
            why,
            since: Instant::now(),
            handover_tried: false,
        });
    }

    fn sweep(&mut self) {
        let mut skip = std::borrow::Cow::Borrowed(&self.quarantined);
        if self.flow.reading_sockets().next().is_some() {
            skip.to_mut().extend(self.flow.reading_sockets());
        }
        self.guard.sweep(&skip)
    }

    fn stop_instead(&mut self) {
        if let Some(d) = self.drain.as_mut() {
            d.why = Why::Stop;
        }
        self.p.notifier.send("STOPPING=1");
        eprintln!("nib: stop requested during the restart: stopping instead");
    }

    /// Starts a successor that serves the socket while this process finishes its answers.
    fn hand_over(&mut self) {
        let Some(d) = self.drain.as_mut() else { return };
        d.handover_tried = true;
        match hand_over(
            &current_exe(&self.p.started_as),
            self.p.listener.as_raw_fd(),
        ) {
            Ok(pid) => {
                eprintln!(
                    "nib: answers still in flight after {} ms: handed the socket to PID {pid}, which serves new connections; this process exits when they are out",
                    HANDOVER_AFTER.as_millis()
                );
                // systemd follows the successor (NotifyAccess=main suffices: this is still
                // the main process when it says so).
                self.p.notifier.send(&format!("MAINPID={pid}"));
                d.why = Why::HandedOver;
            }
            Err(e) => eprintln!(
                "nib: handing the socket over: {e}; restarting in place once the answers are out"
            ),
        }
    }

    /// The drain's time is up: every connection still open is shut.
    fn cut_all(&mut self) {
        let mut n = 0;
        for c in self.conns.as_deref().unwrap_or_default() {
            n += sockets::cut(c.fd, c.ino, Shutdown::Both) as usize;
        }
        eprintln!(
            "nib: {} s passed: shut {n} connections still open{}",
            self.drain_limit.as_secs(),
            if self.accept_dead {
                ""
            } else {
                "; tiny_http's accept thread never ended"
            }
        );
    }

    /// Connections with nothing left to read get `shutdown(SHUT_RD)` (step 3 of the
    /// module docs of `lifecycle`).
    fn shut_idle_reads(&mut self) {
        for c in self.conns.as_deref().unwrap_or_default() {
            let nothing_left =
                c.inq == 0 && (c.bytes_received > 0 || c.last_recv_ms >= FRESH_GRACE_MS);
            if nothing_left
                && !self.read_shut.contains(&c.ino)
                && sockets::cut(c.fd, c.ino, Shutdown::Read)
            {
                self.read_shut.insert(c.ino);
            }
        }
    }

    /// Ends the generation: the socket watch, the app (and its database), the server.
    fn finish(mut self) -> Why {
        let d = self.drain.expect("the loop only ends while draining");
        self.watch_stop.store(true, Ordering::Relaxed);
        eprintln!(
            "nib: every accepted connection answered in {} ms",
            d.since.elapsed().as_millis()
        );
        let mut app = self.app;
        self.flow.finish();
        app.finish();
        // Closing the database checkpoints its WAL; the new image opens it afresh.
        drop(app);
        // Dropping the Server would connect to the listening socket to wake an accept
        // thread that has ended already; that connection would reach the next image for
        // nothing.
        std::mem::forget(self.server);
        d.why
    }
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
    let (fd, ino) = sockets::find_by_peer(peer?)?;
    sockets::cut(fd, ino, Shutdown::Both);
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn serving() -> Facts {
        Facts {
            stop: false,
            hup: false,
            accept_failed: false,
            accept_dead: false,
            quarantined: 0,
            rss_due: false,
            quiet: false,
            flow_idle: true,
            drain_limit: 30 * S,
            drain: None,
            new_image_ok: None,
            rss_over: None,
            deaf_for: None,
            none_open: None,
        }
    }

    fn draining(why: Why, elapsed: Duration) -> Facts {
        Facts {
            drain: Some(DrainFacts {
                why,
                elapsed,
                handover_tried: false,
            }),
            none_open: Some(false),
            ..serving()
        }
    }

    fn tried(mut f: Facts) -> Facts {
        f.drain.as_mut().unwrap().handover_tried = true;
        f
    }

    #[test]
    fn next_action_table() {
        use Action::*;
        let s = serving();
        #[rustfmt::skip]
        let cases = [
            // Serving: the signals first, then what went wrong, in order.
            ("nothing to do", s, KeepServing),
            ("stop", Facts { stop: true, hup: true, accept_failed: true, ..s }, Begin(Why::Stop)),
            ("hup checks the new image", Facts { hup: true, accept_failed: true, ..s }, CheckNewImage),
            ("hup with a good image", Facts { hup: true, new_image_ok: Some(true), ..s }, Begin(Why::Hup)),
            ("hup with a bad image serves on", Facts { hup: true, new_image_ok: Some(false), accept_failed: true, quarantined: 99, ..s }, KeepServing),
            ("a bad image still looks for deafness", Facts { hup: true, new_image_ok: Some(false), quiet: true, ..s }, LookAtBacklog),
            ("accept failed", Facts { accept_failed: true, quarantined: 99, ..s }, Begin(Why::AcceptDied)),
            ("quarantine below the limit", Facts { quarantined: QUARANTINE_LIMIT - 1, ..s }, KeepServing),
            ("quarantine full", Facts { quarantined: QUARANTINE_LIMIT, rss_due: true, ..s }, Begin(Why::Quarantine)),
            ("rss due", Facts { rss_due: true, ..s }, ReadRss),
            ("rss over", Facts { rss_due: true, rss_over: Some(true), ..s }, Begin(Why::Memory)),
            ("rss under", Facts { rss_due: true, rss_over: Some(false), ..s }, KeepServing),
            ("rss over but not due", Facts { rss_over: Some(true), ..s }, KeepServing),
            ("a quiet tick looks at the backlog", Facts { quiet: true, ..s }, LookAtBacklog),
            ("a quiet tick after rss under", Facts { quiet: true, rss_due: true, rss_over: Some(false), ..s }, LookAtBacklog),
            ("no backlog", Facts { quiet: true, deaf_for: Some(Duration::ZERO), ..s }, KeepServing),
            ("deaf briefly", Facts { quiet: true, deaf_for: Some(DEAF_AFTER - MS), ..s }, KeepServing),
            ("deaf", Facts { quiet: true, deaf_for: Some(DEAF_AFTER), ..s }, BeginDeaf),
            ("deaf but busy is not looked at", Facts { deaf_for: Some(DEAF_AFTER), ..s }, KeepServing),
            // Draining: a stop overrides a restart, then the connections decide.
            ("stop during a restart", Facts { stop: true, ..draining(Why::Hup, MS) }, StopInstead),
            ("stop during a stop", Facts { stop: true, ..draining(Why::Stop, MS) }, ShutIdleReads),
            ("stop after the handover", Facts { stop: true, ..draining(Why::HandedOver, MS) }, ShutIdleReads),
            ("the drain lists connections", Facts { none_open: None, ..draining(Why::Hup, MS) }, ListConnections),
            ("drained", Facts { accept_dead: true, none_open: Some(true), ..draining(Why::Hup, 40 * S) }, Finish),
            ("accept thread still running", Facts { none_open: Some(true), ..draining(Why::Stop, MS) }, ShutIdleReads),
            ("answers in flight", Facts { accept_dead: true, flow_idle: false, none_open: Some(true), ..draining(Why::Stop, MS) }, ShutIdleReads),
            ("connections open, or no list", Facts { accept_dead: true, ..draining(Why::Stop, MS) }, ShutIdleReads),
            ("hand over after a while", draining(Why::Hup, HANDOVER_AFTER), HandOver),
            ("not before", draining(Why::Hup, HANDOVER_AFTER - MS), ShutIdleReads),
            ("hand over once", tried(draining(Why::Hup, HANDOVER_AFTER)), ShutIdleReads),
            ("a stop never hands over", draining(Why::Stop, HANDOVER_AFTER), ShutIdleReads),
            ("memory restarts hand over too", draining(Why::Memory, S), HandOver),
            ("time is up", tried(draining(Why::Hup, 30 * S)), CutAndFinish),
            ("time is up after the handover", draining(Why::HandedOver, 30 * S), CutAndFinish),
            ("time is up for a stop", draining(Why::Stop, 30 * S), CutAndFinish),
            ("a late loop hands over before the cut", draining(Why::Quarantine, 30 * S), HandOver),
            ("drained beats time up", Facts { accept_dead: true, none_open: Some(true), ..draining(Why::Stop, 30 * S) }, Finish),
        ];
        for (name, facts, want) in cases {
            assert_eq!(next_action(&facts), want, "{name}");
        }
    }
}
