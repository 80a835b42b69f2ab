//! The wire: how a request becomes an answer on the socket. [`build`] routes a request
//! (catching panics) into a [`Reply`]; [`dispatch`] writes its status line and headers and
//! hands it to the writers ([`writer`]), producing a streamed body piecewise ([`Pump`]);
//! [`flow`] decides which request runs next and reads bodies off the loop. Nothing here
//! waits for a client.

pub(crate) mod flow;
pub(crate) mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use tiny_http::{Method, Request, StatusCode};

use crate::access_log::{AccessLog, LogSafe};
use crate::app::App;
use crate::dates;
use crate::error::Error;
use crate::handlers::{errors::error_reply, route};
use crate::reply::{Body, Fill, Parts, Reply};
use crate::request::{Target, header, may_hold_body};
use writer::{Job, Out, Writers};

/// Makes a panic print one line on stderr (where and what) instead of the default
/// two-line message with a backtrace hint: the request that hit it gets a 500 from
/// [`handle`] and the server goes on.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("nib: panic at {at}: {what}");
    }));
}

/// Builds the answer to one request: routes it, catching panics, and turns errors into
/// answers. `None` when the handler has passed its checks and needs a request body that
/// has not been read yet ([`Error::NeedBody`]): the loop reads it off the loop and builds
/// again with it in [`App::body`].
pub(crate) fn build(app: &App, req: &mut Request) -> Option<Reply> {
    // A read-only request runs in one read transaction: SQLite then takes and checks its
    // locks once per request instead of once per query (six fcntl calls and three fstat
    // calls fewer for a post page), and every query of the page sees the same snapshot.
    // GETs never write (clicks are written by the loop). A streamed body's later pieces
    // are produced outside it, each query on its own.
    //
    // A page kept in the page cache needs no query, so it is answered without one: the
    // transaction's locking alone cost more than the rest of the answer's own work.
    let read_tx = matches!(*req.method(), Method::Get | Method::Head)
        && !app.kept(req.url())
        && app.db.begin_read().is_ok();
    let reply = match Target::of(req) {
        Err(e) => Some(error_reply(app, None, e)),
        Ok(t) => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(app, req, &t)));
            match r {
                Ok(Ok(reply)) => Some(reply),
                Ok(Err(Error::NeedBody)) => None,
                Ok(Err(e)) => Some(error_reply(app, Some(&t), e)),
                // The panic hook has printed the message and location already.
                Err(_) => Some(error_reply(
                    app,
                    Some(&t),
                    Error::Internal("handler panicked".into()),
                )),
            }
        }
    };
    if read_tx && let Err(e) = app.db.commit() {
        eprintln!("nib: ending a read transaction: {e}");
    }
    reply
}

/// Hands a built answer to the writers and logs it. Returns the [`Pump`] the loop keeps
/// for a streamed body. Nothing here waits for the client.
///
/// tiny_http reads whatever is left of a request body when the request is dropped. A
/// body nobody read (a refused one, or one sent with a GET) would hold whoever drops the
/// request for as long as the client keeps sending, so such answers go out from a
/// short-lived thread of their own, with [`respond`], which stops reading the socket
/// first. A file or streamed answer to a request carrying a body is refused instead.
pub(crate) fn dispatch(
    app: &App,
    req: Request,
    reply: Reply,
    wire: &mut Wire,
    wake: Arc<AtomicBool>,
    end: End,
) -> Option<Pump> {
    if may_hold_body(&req) {
        let reply = match reply.body {
            Body::Empty | Body::Bytes(_) | Body::Shared(_) => reply,
            Body::File(..) | Body::Stream(_) => {
                let t = Target::of(&req).ok();
                error_reply(
                    app,
                    t.as_ref(),
                    Error::BadRequest("this request takes no body".into()),
                )
            }
        };
        let parts = reply.into_parts()?;
        wire.log.add(&req, parts.0, Some(parts.2.len() as u64));
        let spawned = std::thread::Builder::new()
            .name("nib-refuse".into())
            .stack_size(64 * 1024)
            .spawn(move || respond(req, parts));
        if let Err(e) = spawned {
            eprintln!("nib: starting a thread to answer a request with a body: {e}");
        }
        return None;
    }
    send(req, reply, wire, wake, end)
}

/// What answers go out through: the writer threads and the access log.
pub(crate) struct Wire {
    pub(crate) writers: Writers,
    pub(crate) log: AccessLog,
}

/// How a connection goes on after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// As the request asked (tiny_http's rule, see [`persistence`]).
    AsAsked,
    /// The answer says `Connection: close`, and a client that heeds it closes the
    /// connection, freeing tiny_http's thread for a connection that waits for one.
    Ask,
    /// The answer says `Connection: close` and nib closes the connection after it.
    Close,
}

/// How many pieces of a streamed body wait between the loop and its writer: with the one
/// the writer is sending and the one the loop holds when the pipe is full, a streamed body
/// costs at most three pieces of memory however slowly its client reads.
pub(crate) const PIPE_PIECES: usize = 1;

/// The most pieces a streamed body produces in one turn of the loop, so a fast client's
/// sitemap does not hold the loop for the whole of it.
pub(crate) const PIECES_PER_TURN: usize = 8;

/// A streamed body the loop is producing while a writer sends it.
pub(crate) struct Pump {
    fill: Fill,
    to: SyncSender<Vec<u8>>,
    /// A piece the pipe had no room for.
    held: Option<Vec<u8>>,
    /// Tells the writer to wake the loop when it takes a piece.
    wake: Arc<AtomicBool>,
    what: String,
}

/// Where a [`Pump`] stands after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// The body is complete, or broken off (the writer cuts the connection).
    Finished,
    /// The pipe is full; the writer wakes the loop when it takes a piece.
    Waiting,
    /// More can be produced now.
    Ready,
}

impl Pump {
    /// Produces pieces while the writer has room, at most [`PIECES_PER_TURN`].
    pub fn turn(&mut self, app: &App) -> Pumped {
        for _ in 0..PIECES_PER_TURN {
            let piece = match self.held.take() {
                Some(p) => p,
                None => {
                    let mut buf = Vec::new();
                    let more = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        (self.fill)(app, &mut buf)
                    }));
                    match more {
                        // A piece can be empty (a feed entry deleted meanwhile); an empty
                        // piece in the pipe means the end, so it is not sent.
                        Ok(Ok(true)) if buf.is_empty() => continue,
                        Ok(Ok(true)) => buf,
                        Ok(Ok(false)) => Vec::new(),
                        Ok(Err(e)) => {
                            eprintln!(
                                "nib: {}: body broke off: {}",
                                self.what,
                                crate::error::chain(&e)
                            );
                            return Pumped::Finished;
                        }
                        Err(_) => {
                            eprintln!("nib: {}: body broke off: panicked", self.what);
                            return Pumped::Finished;
                        }
                    }
                }
            };
            let end = piece.is_empty();
            match self.to.try_send(piece) {
                Ok(()) if end => return Pumped::Finished,
                Ok(()) => {}
                Err(TrySendError::Full(p)) => {
                    self.wake.store(true, Ordering::Release);
                    // The writer may have taken a piece between the try and the flag.
                    match self.to.try_send(p) {
                        Ok(()) if end => return Pumped::Finished,
                        Ok(()) => {}
                        Err(TrySendError::Full(p)) => {
                            self.held = Some(p);
                            return Pumped::Waiting;
                        }
                        Err(TrySendError::Disconnected(_)) => return Pumped::Finished,
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Pumped::Finished,
            }
        }
        Pumped::Ready
    }
}

/// Produces a whole streamed body into `out` (for `nib build`).
pub(crate) fn fill_all(app: &App, mut fill: Fill, out: &mut dyn io::Write) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let more = fill(app, &mut buf).map_err(|e| io::Error::other(e.to_string()))?;
        out.write_all(&buf)?;
        if !more {
            return Ok(());
        }
    }
}

/// Whether the connection stays open after an answer. tiny_http decides it from the
/// request alone (see [`persistence`]) and closes the socket itself; the answer must say
/// the same, which tiny_http cannot do for us: it drops a `Connection` header we give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// The last answer on this connection: `Connection: close`.
    Close,
    /// HTTP/1.1's default: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked to keep the connection: `Connection: keep-alive`.
    KeepAlive10,
}

/// tiny_http's rule (its `ClientConnection`): `close` or `upgrade` in the request's
/// `Connection` header ends the connection, and so does HTTP/1.0 unless it asks for
/// `keep-alive`.
pub(crate) fn persistence(http10: bool, connection: Option<&str>) -> Persist {
    let connection = connection.map(str::to_ascii_lowercase);
    match connection.as_deref() {
        Some(c) if c.contains("close") || c.contains("upgrade") => Persist::Close,
        Some(c) if http10 && c.contains("keep-alive") => Persist::KeepAlive10,
        _ if http10 => Persist::Close,
        _ => Persist::KeepAlive,
    }
}

/// How the body is delimited, which the head announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body may follow (204, 304): neither length nor encoding.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 has no chunks: a body of unknown length ends when the connection does.
    UntilClose,
}

/// The most a request line and header block may take, as nginx's default
/// `large_client_header_buffers`: past it a request is answered 431 and its connection
/// closed.
pub(crate) const MAX_HEADER: u64 = 8 * 1024;

/// The headers every answer carries, whichever way it is written.
pub(crate) const BASE_HEADERS: [(&str, &str); 2] =
    [("Server", "nib"), ("X-Content-Type-Options", "nosniff")];

/// The status line and headers of an answer, ending with the blank line. `extra` are the
/// route's headers; a value that is not plain visible ASCII, or a name this function
/// writes itself, is dropped with a log line, so no route can split or reframe a response.
pub(crate) fn head(
    status: u16,
    extra: &[(&'static str, String)],
    framing: Framing,
    persist: Persist,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(
        256 + extra
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nDate: {}\r\n",
        StatusCode(status).default_reason_phrase(),
        dates::http(dates::now()),
    );
    for (name, value) in BASE_HEADERS {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    const OURS: [&str; 6] = [
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "Date",
        "Server",
        "X-Content-Type-Options",
    ];
    for (name, value) in extra {
        if !header_value_ok(value) || OURS.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            eprintln!("nib: dropping bad response header {name}");
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = match framing {
        Framing::None | Framing::UntilClose => Ok(()),
        Framing::Length(n) => write!(out, "Content-Length: {n}\r\n"),
        Framing::Chunked => write!(out, "Transfer-Encoding: chunked\r\n"),
    };
    let persist = if framing == Framing::UntilClose {
        Persist::Close
    } else {
        persist
    };
    out.extend_from_slice(match persist {
        Persist::Close => b"Connection: close\r\n\r\n".as_slice(),
        Persist::KeepAlive10 => b"Connection: keep-alive\r\n\r\n",
        Persist::KeepAlive => b"\r\n",
    });
    out
}

/// Answers a request that may still hold part of its body (see [`may_hold_body`]) and logs
/// it. This goes through tiny_http's `respond`, which writes the answer before it reads
/// the rest of the body; [`send`]'s `into_writer` would read the body first, and a client
/// waiting for `100 Continue` or for the answer would then wait on nib while nib waited
/// on it. tiny_http frames the body itself.
pub(crate) fn respond(req: Request, (status, extra, body): Parts) {
    use tiny_http::{Header, Response};
    // tiny_http reads the rest of the body when the request is dropped, at the end of
    // `respond`. Shutting the socket for reading first ends that read at once (the answer
    // can still be written); the connection then ends after this answer.
    if let Some((fd, ino)) = req
        .remote_addr()
        .copied()
        .and_then(crate::sockets::find_by_peer)
    {
        crate::sockets::cut(fd, ino, std::net::Shutdown::Read);
    }
    let mut headers: Vec<Header> = BASE_HEADERS
        .iter()
        .filter_map(|(n, v)| Header::from_bytes(*n, *v).ok())
        .collect();
    for (name, value) in &extra {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(h) if header_value_ok(value) => headers.push(h),
            _ => eprintln!("nib: dropping bad response header {name}"),
        }
    }
    let n = body.len();
    let response = Response::new(
        StatusCode(status),
        headers,
        io::Cursor::new(body),
        Some(n),
        None,
    );
    if let Err(e) = req.respond(response) {
        eprintln!("nib: writing response: {e}");
    }
}

/// A header value nib will send: visible ASCII, spaces and tabs, nothing that could end
/// the line or confuse a client.
pub(crate) fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Hands a reply to a request whose body tiny_http has read (see [`dispatch`]) to the
/// writers, with the headers every response carries, and logs the request.
///
/// The answer is written by nib, through `Request::into_writer`, rather than by tiny_http's
/// `respond`: tiny_http silently drops `Connection: close`, so a client that sent it (or
/// spoke HTTP/1.0) was told nothing, took the connection for a persistent one and sent its
/// next request into a socket being closed (wrk counted a read error for every request).
/// Writing the head and an in-memory body as one buffer also sends a page in one segment,
/// where `respond` sent the head and the body apart.
pub(crate) fn send(
    req: Request,
    reply: Reply,
    wire: &mut Wire,
    wake: Arc<AtomicBool>,
    end: End,
) -> Option<Pump> {
    let status = reply.status;
    wire.log.add(&req, status, reply.len());
    let http10 = *req.http_version() == (1, 0);
    let persist = match end {
        End::AsAsked => persistence(http10, header(&req, "Connection")),
        End::Ask | End::Close => Persist::Close,
    };
    let no_body = *req.method() == Method::Head;
    let framing = match &reply.body {
        _ if status < 200 || status == 204 || status == 304 => Framing::None,
        Body::Stream(_) if http10 => Framing::UntilClose,
        Body::Stream(_) => Framing::Chunked,
        Body::Empty | Body::Bytes(_) | Body::Shared(_) | Body::File(..) => {
            Framing::Length(reply.len().unwrap_or(0))
        }
    };
    let mut head = head(status, &reply.headers, framing, persist);
    let peer = req.remote_addr().copied();
    // The writer closes the connection after the answer when the caller says so (a header
    // block over the limit), and for an HTTP/1.0 client that asked to keep the connection
    // but was sent a body that ends with it: tiny_http would keep it open (rare: feeds and
    // the sitemap only).
    let close = end == End::Close
        || (framing == Framing::UntilClose
            && persistence(http10, header(&req, "Connection")) != Persist::Close);
    let what = format!("{} {}", LogSafe(req.method().as_str()), LogSafe(req.url()));
    let mut pump = None;
    let out = match reply.body {
        _ if no_body || framing == Framing::None => Out::None,
        Body::Empty => Out::None,
        Body::Bytes(b) => {
            // The page goes into the same buffer, reserved once.
            head.reserve_exact(b.len());
            head.extend_from_slice(&b);
            Out::None
        }
        Body::Shared(b) => Out::Shared(b),
        Body::File(f, n) => Out::File(f, n),
        Body::Stream(fill) => {
            let (to, from) = sync_channel(PIPE_PIECES);
            pump = Some(Pump {
                fill,
                to,
                held: None,
                wake: Arc::clone(&wake),
                what,
            });
            Out::Pieces {
                from,
                chunked: framing == Framing::Chunked,
            }
        }
    };
    // Dropping the writer tells tiny_http the answer is complete: it then reads the next
    // request, or closes the connection. The writer thread drops it when it is done.
    wire.writers.submit(Job {
        to: req.into_writer(),
        head,
        out,
        peer,
        close,
        wake,
    });
    pump
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::HTML;

    #[test]
    fn persistence_follows_tiny_http() {
        let cases = [
            (false, None, Persist::KeepAlive),
            (false, Some("keep-alive"), Persist::KeepAlive),
            (false, Some("close"), Persist::Close),
            (false, Some("Keep-Alive, Close"), Persist::Close),
            (false, Some("Upgrade"), Persist::Close),
            (true, None, Persist::Close),
            (true, Some("Keep-Alive"), Persist::KeepAlive10),
            (true, Some("close"), Persist::Close),
            (true, Some("TE"), Persist::Close),
        ];
        for (http10, connection, want) in cases {
            assert_eq!(
                persistence(http10, connection),
                want,
                "{http10} {connection:?}"
            );
        }
    }

    #[test]
    fn heads_say_how_the_body_ends() {
        let extra = [("Content-Type", HTML.to_string())];
        let cases = [
            (
                200,
                Framing::Length(5),
                Persist::KeepAlive,
                &["Content-Length: 5\r\n\r\n"][..],
                &["Connection"][..],
            ),
            (
                200,
                Framing::Length(5),
                Persist::Close,
                &["Content-Length: 5\r\nConnection: close\r\n\r\n"],
                &[],
            ),
            (
                200,
                Framing::Length(0),
                Persist::KeepAlive10,
                &["Connection: keep-alive\r\n\r\n"],
                &[],
            ),
            (
                200,
                Framing::Chunked,
                Persist::KeepAlive,
                &["Transfer-Encoding: chunked\r\n\r\n"],
                &["Content-Length"],
            ),
            // A body that ends with the connection must close it, whatever was asked.
            (
                200,
                Framing::UntilClose,
                Persist::KeepAlive10,
                &["Connection: close\r\n\r\n"],
                &["Content-Length", "chunked"],
            ),
            (
                304,
                Framing::None,
                Persist::KeepAlive,
                &["HTTP/1.1 304 Not Modified\r\n"],
                &["Content-Length", "chunked"],
            ),
        ];
        for (status, framing, persist, has, lacks) in cases {
            let text = String::from_utf8(head(status, &extra, framing, persist)).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(
                text.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"),
                "{text}"
            );
            assert!(
                text.contains("\r\nX-Content-Type-Options: nosniff\r\n"),
                "{text}"
            );
            assert!(text.ends_with("\r\n\r\n"), "{text}");
            for want in has {
                assert!(text.contains(want), "{want:?} missing from {text}");
            }
            for unwanted in lacks {
                assert!(!text.contains(unwanted), "{unwanted:?} in {text}");
            }
        }
    }

    #[test]
    fn heads_drop_headers_that_could_split_or_reframe() {
        let extra = [
            ("X-Evil", "a\r\nSet-Cookie: x=1".to_string()),
            ("Content-Length", "99".to_string()),
            ("connection", "keep-alive".to_string()),
            ("Location", "/ok".to_string()),
        ];
        let text =
            String::from_utf8(head(301, &extra, Framing::Length(3), Persist::Close)).unwrap();
        assert!(
            !text.contains("Set-Cookie") && !text.contains("99"),
            "{text}"
        );
        assert!(!text.contains("keep-alive"), "{text}");
        assert!(text.contains("\r\nLocation: /ok\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    }
}
