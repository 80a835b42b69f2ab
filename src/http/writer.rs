//! The writers: a small pool of threads that put answers on the wire, so the request loop
//! never waits for a client. The loop builds an answer (head, then an in-memory page, a
//! file, or chunks it produces from the database) and hands it over as a [`Job`]; a writer
//! thread writes it through tiny_http's writer for that request and reports back with a
//! [`Done`]. A client that takes no byte for [`SEND_TIMEOUT`] makes its write fail (the
//! listening socket's `SO_SNDTIMEO`, which every accepted socket inherits), and the writer
//! then cuts the connection, so a stalled reader holds one writer thread for at most that
//! long and never the loop.
//!
//! Threads are started when every existing one is busy, up to [`MAX_WRITERS`], and end
//! after [`IDLE_EXIT`] without work beyond the first [`KEEP_IDLE`], so after a burst of
//! slow readers the process returns to its usual few threads. A thread's stack is small
//! ([`STACK`]): a writer copies with one 8 KiB buffer and calls nothing deep.
//!
//! Files of [`PARK_FROM`] bytes or more (downloads, the answers a client is most likely to
//! stall on) are not written by a writer thread: once the head is out, the body goes to
//! the *park*, one thread that sends every parked body with non-blocking sends, as each
//! client's socket has room (`poll`). A client that never reads then costs its socket and
//! a few hundred bytes of state instead of a thread (measured: 16 to 24 KB of stack
//! resident per stalled writer thread), and the park cuts it after [`SEND_TIMEOUT`]
//! without progress, as the socket timeout does for the threads.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sys::Ready;

/// A client that takes no byte of its answer for this long is cut.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The most writer threads at once. Each is one slow reader at worst (50 of them hold
/// about 50 threads), and a page answered while they wait gets a thread of its own. Past
/// this, answers queue for the next free thread.
pub(crate) const MAX_WRITERS: usize = 256;

/// Threads kept waiting for work however long they are idle.
const KEEP_IDLE: usize = 1;

/// An idle thread beyond [`KEEP_IDLE`] ends after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(5);

/// A writer's stack: it copies with one 8 KiB buffer and calls nothing deep.
const STACK: usize = 64 * 1024;

/// Files from this size on are sent by the park: more than a socket's buffer takes at
/// once, so the client may well stall on them.
pub(crate) const PARK_FROM: u64 = 64 * 1024;

/// The park's copy buffer: what one non-blocking send offers a client.
const PARK_BUF: usize = 16 * 1024;

/// Sends the park makes to one client per round while its socket takes them whole, so a
/// fast reader gets its file quickly and a round still serves every parked client.
const PARK_BURST: usize = 8;

/// The longest the park sleeps in `poll` while it holds bodies, so it notices clients past
/// [`SEND_TIMEOUT`].
const PARK_TICK_MS: i32 = 1000;

/// What follows the head of an answer.
pub(crate) enum Out {
    /// Nothing more: the head carries the whole answer (an in-memory page is appended to
    /// it, so head and page leave in one write).
    None,
    /// A page from the page cache, shared with the loop.
    Shared(Arc<Vec<u8>>),
    /// `n` bytes of a file, from its current offset.
    File(File, u64),
    /// Pieces the loop produces from the database while this is written (the sitemap, the
    /// feeds); an empty piece ends the body, a closed channel without it breaks it off.
    /// `chunked` frames each piece in chunked encoding.
    Pieces {
        from: Receiver<Vec<u8>>,
        chunked: bool,
    },
}

/// One answer to write.
pub(crate) struct Job {
    /// tiny_http's writer for this request; dropping it lets tiny_http go on with the
    /// connection (the next request, or closing it).
    pub to: Box<dyn Write + Send>,
    pub head: Vec<u8>,
    pub out: Out,
    /// The client, to cut its connection when the answer breaks off.
    pub peer: Option<SocketAddr>,
    /// Close the connection after the answer (a body that ends with the connection).
    pub close: bool,
    /// Set by the loop when it waits on this answer (a parked request, a full pipe of
    /// pieces): the writer then wakes it when it takes a piece or finishes.
    pub wake: Arc<AtomicBool>,
}

/// A writer's report to the loop: this client's answer is out (or broken off).
pub(crate) struct Done {
    pub peer: Option<SocketAddr>,
}

/// How a writer wakes the loop (tiny_http's `Server::unblock`).
pub(crate) type Wake = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Jobs handed over and not yet finished, for the drain.
    active: AtomicUsize,
    done: Mutex<Sender<Done>>,
    wake: Wake,
    /// The park's door, while its thread runs.
    park: Mutex<Option<Door>>,
}

/// How a writer hands a body to the park: the channel, and the bell that wakes its `poll`.
struct Door {
    to: Sender<Parked>,
    bell: UnixStream,
}

/// A file body the park sends.
struct Parked {
    /// tiny_http's writer, kept (its buffer empty, the head flushed) until the body is out,
    /// so tiny_http goes on with the connection only then.
    to: Box<dyn Write + Send>,
    /// The connection, pinned (a duplicate of its descriptor).
    sock: OwnedFd,
    file: File,
    offset: u64,
    left: u64,
    sent: u64,
    peer: Option<SocketAddr>,
    close: bool,
    wake: Arc<AtomicBool>,
    /// When the client last took a byte.
    progress: Instant,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads writing a job. Only ever read and changed under the lock, with `jobs` and
    /// `threads`, so a job is never queued for a thread that has already decided to end.
    busy: usize,
    threads: usize,
}

/// The pool. Owned by the loop.
pub(crate) struct Writers {
    shared: Arc<Shared>,
}

impl Writers {
    /// A pool that reports on `done` and wakes the loop with `wake`.
    pub fn new(done: Sender<Done>, wake: Wake) -> Writers {
        Writers {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                active: AtomicUsize::new(0),
                done: Mutex::new(done),
                wake,
                park: Mutex::new(None),
            }),
        }
    }

    /// Answers still being written.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Hands a job to a thread that is not writing (waiting, or just done with a job), or
    /// to a new one when every thread is writing. A page is written in microseconds, so a
    /// thread or two serve every quick answer; only answers stuck on slow clients add
    /// threads (each costs some 20 KB of memory while it lives).
    pub fn submit(&self, job: Job) {
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        let mut q = lock(&self.shared.queue);
        if q.threads > q.busy + q.jobs.len() || q.threads >= MAX_WRITERS {
            q.jobs.push_back(job);
            drop(q);
            self.shared.ready.notify_one();
            return;
        }
        q.threads += 1;
        q.busy += 1;
        drop(q);
        let shared = Arc::clone(&self.shared);
        // The job travels in a slot the thread empties, so a failed spawn gives it back.
        let slot = Arc::new(Mutex::new(Some(job)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("nib-writer".into())
            .stack_size(STACK)
            .spawn(move || {
                let first = lock(&theirs).take();
                drop(theirs);
                work(&shared, first)
            });
        if let Err(e) = spawned {
            eprintln!("nib: starting a writer thread: {e}");
            let mut q = lock(&self.shared.queue);
            q.threads -= 1;
            q.busy -= 1;
            if let Some(job) = lock(&slot).take() {
                // Some thread exists (the loop started with one) or will; the job waits.
                q.jobs.push_back(job);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A writer that panicked mid-job left nothing half-changed under these locks.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reports a finished answer (written, broken off or cut) to the loop.
fn finish(shared: &Shared, peer: Option<SocketAddr>, wake: &AtomicBool) {
    shared.active.fetch_sub(1, Ordering::AcqRel);
    let _ = lock(&shared.done).send(Done { peer });
    if wake.swap(false, Ordering::AcqRel) {
        (shared.wake)();
    }
}

/// A writer thread's life: its first job, then whatever the queue gives it.
fn work(shared: &Arc<Shared>, mut job: Option<Job>) {
    loop {
        let wrote = job.is_some();
        if let Some(j) = job.take() {
            let peer = j.peer;
            let wake = Arc::clone(&j.wake);
            // A panic while writing one answer costs that answer, not the thread's count.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_job(j, shared)));
            match r {
                // Handed to the park, which reports it when it is out.
                Ok(false) => {}
                Ok(true) => finish(shared, peer, &wake),
                Err(_) => {
                    eprintln!("nib: a writer panicked; the answer was cut");
                    finish(shared, peer, &wake);
                }
            }
        }
        let mut q = lock(&shared.queue);
        if wrote {
            q.busy -= 1;
        }
        loop {
            if let Some(j) = q.jobs.pop_front() {
                q.busy += 1;
                job = Some(j);
                break;
            }
            let (guard, timeout) = shared
                .ready
                .wait_timeout(q, IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            q = guard;
            if timeout.timed_out() && q.jobs.is_empty() && q.threads > KEEP_IDLE {
                q.threads -= 1;
                return;
            }
        }
    }
}

/// Writes one answer, or its head and hands the body to the park (then returns false: the
/// park reports it). On failure cuts the connection (the client cannot tell a broken-off
/// answer from a whole one otherwise) and logs what is worth a line.
fn write_job(job: Job, shared: &Arc<Shared>) -> bool {
    let Job {
        mut to,
        head,
        out,
        peer,
        close,
        wake,
    } = job;
    let wake_loop = &*shared.wake;
    let result = match out {
        Out::File(mut f, n) if n >= PARK_FROM => match peer.and_then(pin_connection) {
            Some(sock) => match start_body(&mut to, &head, &mut f) {
                Ok(offset) => {
                    let parked = Parked {
                        to,
                        sock,
                        file: f,
                        offset,
                        left: n,
                        sent: 0,
                        peer,
                        close,
                        wake,
                        progress: Instant::now(),
                    };
                    park(shared, parked);
                    return false;
                }
                Err(e) => Err(e),
            },
            None => write_out(&mut to, &head, Out::File(f, n), &wake, wake_loop),
        },
        out => write_out(&mut to, &head, out, &wake, wake_loop),
    };
    let cut = close || result.is_err();
    if cut && let Some((fd, ino)) = peer.and_then(crate::sockets::find_by_peer) {
        crate::sockets::cut(fd, ino, Shutdown::Both);
    }
    drop(to);
    report(result, peer);
    true
}

/// One log line for an answer that broke off, when it is worth one.
fn report(result: io::Result<()>, peer: Option<SocketAddr>) {
    match result {
        Ok(()) => {}
        Err(e) if quiet(&e) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            eprintln!(
                "nib: cut {}: took no byte of its answer for {} s",
                peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
                SEND_TIMEOUT.as_secs()
            )
        }
        Err(e) => eprintln!("nib: writing response: {e}"),
    }
}

/// A client that went away is no news.
fn quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

fn write_out(
    to: &mut Box<dyn Write + Send>,
    head: &[u8],
    out: Out,
    wake: &AtomicBool,
    wake_loop: &dyn Fn(),
) -> io::Result<()> {
    match out {
        Out::None => to.write_all(head)?,
        Out::Shared(page) => {
            // Head and page in one write where they fit a small buffer: one segment.
            if head.len() + page.len() <= 16 * 1024 {
                let mut both = Vec::with_capacity(head.len() + page.len());
                both.extend_from_slice(head);
                both.extend_from_slice(&page);
                to.write_all(&both)?;
            } else {
                to.write_all(head)?;
                to.write_all(&page)?;
            }
        }
        Out::File(f, n) => {
            to.write_all(head)?;
            // A file that shrank since it was measured would leave the client waiting for
            // bytes that never come.
            let sent = io::copy(&mut f.take(n), to)?;
            if sent != n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ended after {sent} of {n} bytes"),
                ));
            }
        }
        Out::Pieces { from, chunked } => {
            to.write_all(head)?;
            loop {
                let piece = from
                    .recv()
                    .map_err(|_| io::Error::other("the body broke off while it was produced"))?;
                // The loop may be waiting for room in the pipe to produce the next piece.
                if wake.swap(false, Ordering::AcqRel) {
                    wake_loop();
                }
                if piece.is_empty() {
                    if chunked {
                        to.write_all(b"0\r\n\r\n")?;
                    }
                    break;
                }
                if chunked {
                    write!(to, "{:x}\r\n", piece.len())?;
                    to.write_all(&piece)?;
                    to.write_all(b"\r\n")?;
                } else {
                    to.write_all(&piece)?;
                }
            }
        }
    }
    to.flush()
}

/// The connection to `peer`, pinned by a duplicate of its descriptor.
fn pin_connection(peer: SocketAddr) -> Option<OwnedFd> {
    let (fd, ino) = crate::sockets::find_by_peer(peer)?;
    crate::sockets::pinned(fd, ino)
}

/// Writes the head through tiny_http (flushed, so it leaves before the body, which goes
/// to the socket directly) and returns the file's offset, where the body starts.
fn start_body(to: &mut Box<dyn Write + Send>, head: &[u8], f: &mut File) -> io::Result<u64> {
    to.write_all(head)?;
    to.flush()?;
    f.stream_position()
}

/// Hands a body to the park, starting its thread when none runs.
fn park(shared: &Arc<Shared>, job: Parked) {
    let mut door = lock(&shared.park);
    let job = match door.as_ref() {
        Some(d) => match d.to.send(job) {
            Ok(()) => {
                // A full bell already rings; a failed ring is one the park hears anyway.
                let _ = (&d.bell).write(&[1]);
                return;
            }
            // The park is gone (it panicked); a new one takes the job.
            Err(back) => back.0,
        },
        None => job,
    };
    let started = UnixStream::pair().and_then(|(ours, theirs)| {
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let shared2 = Arc::clone(shared);
        std::thread::Builder::new()
            .name("nib-park".into())
            .stack_size(STACK)
            .spawn(move || park_loop(&shared2, &rx, &theirs))?;
        Ok(Door { to: tx, bell: ours })
    });
    match started {
        Ok(d) => {
            // The thread holds the receiver, so the send succeeds.
            let _ = d.to.send(job);
            *door = Some(d);
        }
        Err(e) => {
            drop(door);
            eprintln!("nib: starting the park thread: {e}");
            end_parked(shared, job, Err(e));
        }
    }
}

/// The park's life: sends every parked body as its client takes it, and ends after
/// [`IDLE_EXIT`] with nothing to send.
fn park_loop(shared: &Arc<Shared>, rx: &Receiver<Parked>, bell: &UnixStream) {
    let mut jobs: Vec<Parked> = Vec::new();
    let mut buf = vec![0u8; PARK_BUF];
    loop {
        if jobs.is_empty() {
            match rx.recv_timeout(IDLE_EXIT) {
                Ok(j) => jobs.push(j),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    let mut door = lock(&shared.park);
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => {
                            // Writers that find no door start a new park.
                            *door = None;
                            return;
                        }
                    }
                }
            }
        }
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let mut fds = vec![(bell.as_raw_fd(), Ready::Read)];
        fds.extend(jobs.iter().map(|j| (j.sock.as_raw_fd(), Ready::Write)));
        // A failed poll (out of memory) tries every socket; their sends say which can go.
        let ready =
            crate::sys::poll_ready(&fds, PARK_TICK_MS).unwrap_or_else(|_| vec![true; fds.len()]);
        if ready[0] {
            let mut rung = [0u8; 64];
            while matches!((&*bell).read(&mut rung), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        let mut keep = Vec::with_capacity(jobs.len());
        for (mut j, ready) in jobs.drain(..).zip(ready.into_iter().skip(1)) {
            let step = if ready {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    send_some(&mut j, &mut buf)
                }))
                .unwrap_or_else(|_| Err(io::Error::other("the park panicked sending a file")))
            } else {
                Ok(false)
            };
            match step {
                Ok(true) => end_parked(shared, j, Ok(())),
                Ok(false) if now.duration_since(j.progress) >= SEND_TIMEOUT => {
                    end_parked(shared, j, Err(io::ErrorKind::TimedOut.into()))
                }
                Ok(false) => keep.push(j),
                Err(e) => end_parked(shared, j, Err(e)),
            }
        }
        jobs = keep;
    }
}

/// Sends what the client's socket takes now, up to [`PARK_BURST`] buffers; true when the
/// body is out. Bytes read but not taken are read again next time (from the page cache).
fn send_some(j: &mut Parked, buf: &mut [u8]) -> io::Result<bool> {
    for _ in 0..PARK_BURST {
        if j.left == 0 {
            return Ok(true);
        }
        let want = usize::try_from(j.left).unwrap_or(usize::MAX).min(buf.len());
        let got = j.file.read_at(&mut buf[..want], j.offset)?;
        if got == 0 {
            // A file that shrank since it was measured would leave the client waiting for
            // bytes that never come.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended after {} of {} bytes", j.sent, j.sent + j.left),
            ));
        }
        match crate::sys::send_nowait(j.sock.as_fd(), &buf[..got]) {
            Ok(k) => {
                j.offset += k as u64;
                j.left -= k as u64;
                j.sent += k as u64;
                j.progress = Instant::now();
                if k < got {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(j.left == 0)
}

/// A parked body is out or broken off: cut the connection when it breaks off or ends with
/// the answer, let tiny_http go on, log, and report to the loop.
fn end_parked(shared: &Shared, j: Parked, result: io::Result<()>) {
    if j.close || result.is_err() {
        let _ = crate::sys::shutdown(j.sock.as_fd(), Shutdown::Both);
    }
    let Parked {
        to,
        sock,
        peer,
        wake,
        ..
    } = j;
    drop(to);
    drop(sock);
    report(result, peer);
    finish(shared, peer, &wake);
}
