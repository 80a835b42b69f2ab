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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// A writer thread's life: its first job, then whatever the queue gives it.
fn work(shared: &Shared, mut job: Option<Job>) {
    loop {
        let wrote = job.is_some();
        if let Some(j) = job.take() {
            let peer = j.peer;
            let wake = Arc::clone(&j.wake);
            // A panic while writing one answer costs that answer, not the thread's count.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_job(j, &*shared.wake)
            }));
            if r.is_err() {
                eprintln!("nib: a writer panicked; the answer was cut");
            }
            shared.active.fetch_sub(1, Ordering::AcqRel);
            let _ = lock(&shared.done).send(Done { peer });
            if wake.swap(false, Ordering::AcqRel) {
                (shared.wake)();
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

/// Writes one answer; on failure cuts the connection (the client cannot tell a broken-off
/// answer from a whole one otherwise) and logs what is worth a line.
fn write_job(job: Job, wake_loop: &dyn Fn()) {
    let Job {
        mut to,
        head,
        out,
        peer,
        close,
        wake,
    } = job;
    let result = write_out(&mut to, &head, out, &wake, wake_loop);
    let cut = close || result.is_err();
    if cut && let Some((fd, ino)) = peer.and_then(crate::sockets::find_by_peer) {
        crate::sockets::cut(fd, ino, std::net::Shutdown::Both);
    }
    drop(to);
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
