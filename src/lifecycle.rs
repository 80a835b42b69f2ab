//! The life of the server process: binding (or inheriting) the listening socket, the
//! request loop's outer shell, signals, and shutdown. Handlers know nothing of this; they
//! run inside [`serve`]'s loop one request at a time.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::StartupError;
use crate::http::{self, App};

/// How long the loop waits for a request before doing its housekeeping anyway.
const TICK: Duration = Duration::from_millis(250);

/// Keeps glibc's allocator from growing a memory arena per thread: tiny_http runs a thread
/// per connection, and with the default of 8 arenas per core each burst of connections left
/// hundreds of KB behind. One arena costs some lock contention on buffers that are small
/// and short-lived anyway.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn set_nodelay(listener: &TcpListener) {
    // tiny_http never sets TCP_NODELAY; with Nagle and delayed ACKs a 6.7 KB page took
    // 44 ms. Linux hands the option on to every accepted socket.
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "nib: setting TCP_NODELAY: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// `nib serve`: indexes the posts, binds, and answers requests until SIGTERM or SIGINT.
pub fn serve(mut cfg: Config, _env: &HashMap<String, String>) -> Result<u8, StartupError> {
    tune_allocator();
    let started = Instant::now();
    let (db, mut index, refresh) = crate::open_site(&cfg)?;
    let indexed_in = started.elapsed();
    // A second pass finds nothing changed: that is the cost every request loop check pays.
    index.refresh(&db, &cfg.posts_dir);
    let scan = index.last_scan;

    let listener = TcpListener::bind(cfg.listen)
        .map_err(|e| StartupError::Other(format!("binding {}: {e}", cfg.listen)))?;
    set_nodelay(&listener);
    let local = listener
        .local_addr()
        .map_err(|e| StartupError::Other(e.to_string()))?;
    if !local.ip().is_loopback() {
        eprintln!(
            "nib: warning: listening on public address {local}; put nginx or Caddy in front (see deploy/)"
        );
    }
    if cfg.base_url.is_none() {
        cfg.base_url = Some(format!("http://{local}"));
    }
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| StartupError::Other(format!("starting server: {e}")))?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| StartupError::Other(format!("installing signal handler: {e}")))?;
    }

    let mut app = App::new(cfg, db)?;
    app.index = index;
    match crate::admin::setup_secrets(&app.db, &app.cfg) {
        // Shown this once: only its hash is kept.
        Ok(Some(token)) => eprintln!(
            "nib: admin token (shown only now): {token}\nnib: log in at {}/admin/login",
            app.cfg.base()
        ),
        Ok(None) => {}
        Err(e) => return Err(StartupError::Db(e)),
    }
    crate::memory::release_startup_memory();
    let public = app.db.count_public().unwrap_or(0);
    eprintln!(
        "nib: serving http://{local} ({public} posts, {} with problems; indexed {} files in {} ms; a change scan takes {:.1} ms)",
        refresh.broken,
        refresh.parsed,
        indexed_in.as_millis(),
        scan.as_secs_f64() * 1000.0
    );

    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(TICK) {
            Ok(Some(req)) => {
                app.refresh_posts();
                http::handle(&app, req);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("nib: accepting connections failed: {e}");
                break;
            }
        }
        app.tick();
    }
    eprintln!("nib: stopping");
    app.finish();
    Ok(0)
}
