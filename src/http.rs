//! The request loop and routing. One thread takes requests from tiny_http, routes them in
//! [`route`], and answers; a panic in a handler becomes a 500 for that request alone. Pages
//! are built from their own database rows, with strong ETags and `Last-Modified` so
//! revalidation is a 304 without rendering; the last few are kept whole in the page cache
//! (`cache.rs`) under those ETags. Every path derived from a URL goes through [`safe_join`].

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use askama::Template;
use tiny_http::{Method, Request, StatusCode};

use crate::admin;
use crate::cache::PageCache;
use crate::config::Config;
use crate::dates;
use crate::db::Db;
use crate::error::Error;
use crate::links::{self, ClickBatch};
use crate::posts::Index;
use crate::render::{self, Fnv, Pager, PostView, Site};
use crate::writer::{Job, Out, Writers};

/// How often pending clicks are written at most.
const CLICK_FLUSH: Duration = Duration::from_secs(1);
/// The most links whose clicks wait in memory before they are written anyway.
const CLICK_BATCH_MAX: usize = 1024;

/// Everything a handler may read. Handlers get `&App`; the loop alone mutates it between
/// requests (the post index refresh). The `RefCell`s (pending clicks, the page cache,
/// the access log) are the only state handlers change in memory: each is
/// bounded, and the loop runs one handler at a time.
pub struct App {
    pub cfg: Config,
    pub db: Db,
    pub index: Index,
    /// (when the public site last changed, a counter that moves with it)
    pub site: (i64, i64),
    config_fingerprint: u64,
    /// Clicks counted but not yet written; see [`App::tick`].
    pub clicks: RefCell<ClickBatch>,
    last_flush: Instant,
    /// The pages rendered last, under their ETags.
    pub pages: RefCell<PageCache>,
    /// Access log lines not yet written.
    log: RefCell<AccessLog>,
    /// The request body the loop read off the loop for the request being answered (see
    /// [`Error::NeedBody`]); taken by the handler that asked for it.
    pub body: RefCell<Option<Vec<u8>>>,
}

impl App {
    pub fn new(cfg: Config, db: Db) -> rusqlite::Result<App> {
        let site = db.site_version()?;
        // The binary's size and time stand for its build: templates are compiled in, so a
        // rebuilt nib must not answer a 304 for a page it now renders differently.
        let build = std::fs::metadata("/proc/self/exe")
            .map(|m| {
                m.len()
                    ^ m.modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs())
            })
            .unwrap_or(0);
        let config_fingerprint = cfg.fingerprint() ^ build.rotate_left(17);
        Ok(App {
            cfg,
            db,
            index: Index::new(),
            site,
            config_fingerprint,
            clicks: RefCell::new(ClickBatch::default()),
            last_flush: Instant::now(),
            pages: RefCell::new(PageCache::default()),
            log: RefCell::new(AccessLog::default()),
            body: RefCell::new(None),
        })
    }

    /// Brings the post index up to date when a check is due; called before each request.
    ///
    /// The site's version is read back at every due check, not only when this check
    /// changed something: another nib on the same database (`nib build`, `nib check`) may
    /// have indexed an edit first, and the pages kept under the old version must go.
    pub fn refresh_posts(&mut self) {
        if !self.index.is_due() {
            return;
        }
        self.index.refresh_if_due(&self.db, &self.cfg.posts_dir);
        match self.db.site_version() {
            Ok(v) if v != self.site => {
                self.site = v;
                // Every kept page names the old version in its ETag: none is served again.
                self.pages.borrow_mut().clear();
            }
            Ok(_) => {}
            Err(e) => eprintln!("nib: reading site version: {e}"),
        }
    }

    /// Housekeeping the loop runs after every request and at least every tick while idle
    /// (a quarter second): the rest of a check of posts/ and deferred writes that must not
    /// wait for the next request.
    pub fn tick(&mut self) {
        // A check of posts/ that left files for a later step goes on while no request
        // comes, too.
        self.refresh_posts();
        // Clicks spread over many links are written early too: measured with random codes
        // over 100,000 links, a second's batch held 11,000 entries (470 KB with its sorted
        // copy), more than the rest of the heap together.
        if self.last_flush.elapsed() >= CLICK_FLUSH || self.clicks.borrow().len() >= CLICK_BATCH_MAX
        {
            self.flush_clicks();
        }
        let log = self.log.get_mut();
        if log.due() {
            log.write();
        }
    }

    /// Called once when the loop stops (before exit or re-exec), after the last request
    /// has been answered: writes whatever is still pending.
    pub fn finish(&mut self) {
        self.flush_clicks();
        self.log.get_mut().write();
    }

    /// Writes the pending clicks in one transaction. On failure (another process holding
    /// the database past the busy timeout) they stay pending for the next try.
    fn flush_clicks(&mut self) {
        self.last_flush = Instant::now();
        let batch = {
            let clicks = self.clicks.borrow();
            if clicks.is_empty() {
                return;
            }
            clicks.snapshot()
        };
        match self.db.add_clicks(links::day_of(dates::now()), &batch) {
            Ok(()) => self.clicks.borrow_mut().commit(&batch),
            Err(e) => eprintln!("nib: writing {} link click counts: {e}", batch.len()),
        }
    }

    pub fn site_view(&self) -> Site<'_> {
        Site {
            title: &self.cfg.title,
            description: &self.cfg.description,
            author: &self.cfg.author,
            base: self.cfg.base(),
        }
    }

    /// Whether the page at `url` (its path, as the request gave it) is in the page cache
    /// under its current ETag: then routing it needs no query.
    fn kept(&self, url: &str) -> bool {
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        // Only pages end in a slash; a short link's redirect does not pay for the lookup.
        path.ends_with('/') && self.pages.borrow().contains(path, &self.page_etag(path))
    }

    /// A strong validator for a page that depends on the whole site: the route, the site's
    /// content version, the settings and the binary.
    fn page_etag(&self, path: &str) -> String {
        let mut h = Fnv::new();
        h.write(path.as_bytes());
        h.write(&self.site.1.to_le_bytes());
        h.write(&self.config_fingerprint.to_le_bytes());
        strong_etag(h.finish())
    }
}

/// A response before it is written: status, headers and a body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

type Parts = (u16, Vec<(&'static str, String)>, Vec<u8>);

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A page from the page cache.
    Shared(Arc<Vec<u8>>),
    /// A file and its length, streamed from disk.
    File(File, u64),
    /// Produced while it is sent, so large listings (the sitemap) never sit in memory.
    Stream(Fill),
}

/// Produces a streamed body a piece at a time: each call appends the next piece to the
/// buffer and returns false when there is no more. It owns its state and is given the
/// `App` at each call, so the loop can keep it between requests and produce the next piece
/// only when the client has taken the last (see `flow`).
pub type Fill = Box<dyn FnMut(&App, &mut Vec<u8>) -> Result<bool, Error>>;

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body.into()),
        }
    }

    pub fn html(body: String) -> Reply {
        Reply::new(200, HTML, body)
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, TEXT, format!("{body}\n"))
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        let mut r = Reply::text(status, &format!("see {location}"));
        r.headers.push(("Location", location.to_string()));
        r
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The parts of a reply with an in-memory body, which can move to another thread.
    pub fn into_parts(self) -> Option<Parts> {
        match self.body {
            Body::Empty => Some((self.status, self.headers, Vec::new())),
            Body::Bytes(b) => Some((self.status, self.headers, b)),
            Body::Shared(b) => Some((self.status, self.headers, b.to_vec())),
            Body::File(..) | Body::Stream(_) => None,
        }
    }

    fn len(&self) -> Option<u64> {
        match &self.body {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Shared(b) => Some(b.len() as u64),
            Body::File(_, n) => Some(*n),
            Body::Stream(_) => None,
        }
    }
}

pub const HTML: &str = "text/html; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";
const XML: &str = "application/xml; charset=utf-8";
/// Pages change whenever a post does, so caches must revalidate; a 304 is cheap.
const CACHE_PAGE: &str = "public, max-age=0, must-revalidate";
/// Files in static/ rarely change; an hour keeps repeat visits off the server.
const CACHE_STATIC: &str = "public, max-age=3600";

/// The request's method, path and query, decoded once.
pub struct Target {
    pub method: Method,
    pub path: String,
    pub query: String,
}

impl Target {
    pub fn of(req: &Request) -> Result<Target, Error> {
        let url = req.url();
        let (raw_path, query) = url.split_once('?').unwrap_or((url, ""));
        let path =
            percent_decode(raw_path).ok_or_else(|| Error::BadRequest("malformed path".into()))?;
        if !path.starts_with('/') {
            return Err(Error::BadRequest("path must start with /".into()));
        }
        Ok(Target {
            method: req.method().clone(),
            path,
            query: query.to_string(),
        })
    }

    pub fn is_read(&self) -> bool {
        matches!(self.method, Method::Get | Method::Head)
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape, invalid UTF-8 or a NUL byte.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            // from_str_radix alone would take `%+A` (a sign) as a digit pair.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}

/// The longest file name Linux file systems take (`NAME_MAX`). A longer segment names no
/// file, and asking the kernel for it fails with `ENAMETOOLONG`, which is no reason for a
/// 500.
const NAME_MAX: usize = 255;

/// The one way a URL path becomes a file path: `rel` is split on `/` and every segment must
/// be a plain name (no `..`, `.`, empty, hidden or backslash segments, none over
/// [`NAME_MAX`] bytes), so the result always lies inside `base` (symlinks aside: see
/// [`open_static`]).
pub fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let mut any = false;
    for seg in rel.split('/') {
        if seg.is_empty()
            || seg.len() > NAME_MAX
            || seg.starts_with('.')
            || seg.contains('\\')
            || seg.contains('\0')
        {
            return None;
        }
        out.push(seg);
        any = true;
    }
    any.then_some(out)
}

/// A strong validator from a 64-bit hash: `"0123456789abcdef"`.
pub fn strong_etag(hash: u64) -> String {
    format!("\"{hash:016x}\"")
}

/// Looks up a request header (case-insensitive).
pub fn header<'r>(req: &'r Request, name: &'static str) -> Option<&'r str> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Whether the client's cached copy is current: `If-None-Match` (weak comparison, as RFC
/// 9110 asks for GET) wins over `If-Modified-Since`.
pub fn not_modified(req: &Request, etag: &str, last_modified: i64) -> bool {
    if let Some(inm) = header(req, "If-None-Match") {
        let bare = etag.trim_start_matches("W/");
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == bare);
    }
    match header(req, "If-Modified-Since").and_then(dates::parse_http) {
        Some(since) => last_modified <= since,
        None => false,
    }
}

/// Answers a cacheable page: 304 when the client's copy is current, else the body from
/// `build` (only called when needed).
fn cached(
    req: &Request,
    etag: String,
    modified: i64,
    cache: &str,
    build: impl FnOnce() -> Result<Reply, Error>,
) -> Result<Reply, Error> {
    let reply = if not_modified(req, &etag, modified) {
        Reply {
            status: 304,
            headers: Vec::new(),
            body: Body::Empty,
        }
    } else {
        build()?
    };
    Ok(reply
        .header("ETag", etag)
        .header("Last-Modified", dates::http(modified))
        .header("Cache-Control", cache.to_string()))
}

/// Routes one request. Only reads `app`; the loop has refreshed the index already.
pub fn route(app: &App, req: &mut Request, t: &Target) -> Result<Reply, Error> {
    let path = t.path.as_str();
    let segs: Vec<&str> = path[1..].split('/').collect();
    // The method is checked before the handler runs: a POST to a page must not render it
    // (or, on the API, count a failed login) only to answer 405.
    macro_rules! read_only {
        ($reply:expr) => {
            if t.is_read() {
                $reply
            } else {
                Err(Error::MethodNotAllowed)
            }
        };
    }
    match segs.as_slice() {
        [""] => read_only!(index(app, req, 1)),
        ["page", n, ""] => match n.parse::<u64>() {
            Ok(1) => read_only!(Ok(Reply::redirect(301, "/"))),
            Ok(n) if n > 1 => read_only!(index(app, req, n)),
            _ => Err(Error::NotFound),
        },
        ["posts", slug, ""] => read_only!(post(app, req, slug)),
        ["posts", slug] if !slug.is_empty() => read_only!(Ok(Reply::redirect(
            301,
            &format!("/posts/{}/", links::encode_component(slug)),
        ))),
        ["tags", ""] => read_only!(tags(app, req)),
        ["tags"] => read_only!(Ok(Reply::redirect(301, "/tags/"))),
        ["tags", tag, ""] => read_only!(tag_page(app, req, tag, 1)),
        ["tags", tag] if !tag.is_empty() => read_only!(Ok(Reply::redirect(
            301,
            &format!("/tags/{}/", links::encode_component(tag)),
        ))),
        ["tags", tag, "page", n, ""] => match n.parse::<u64>() {
            Ok(1) => read_only!(Ok(Reply::redirect(
                301,
                &format!("/tags/{}/", links::encode_component(tag)),
            ))),
            Ok(n) if n > 1 => read_only!(tag_page(app, req, tag, n)),
            _ => Err(Error::NotFound),
        },
        ["feed.xml"] => read_only!(feed(app, req, true)),
        ["rss.xml"] => read_only!(feed(app, req, false)),
        ["sitemap.xml"] => read_only!(sitemap(app, req)),
        ["robots.txt"] => read_only!(robots(app, req)),
        ["healthz"] => read_only!(Ok(match app.db.ping() {
            Ok(()) => Reply::text(200, "ok"),
            Err(e) => {
                eprintln!("nib: healthz: {e}");
                Reply::text(503, "database unavailable")
            }
        }
        .header("Cache-Control", "no-store"))),
        // `/static` alone has no file name: the strip fails and it is a 404.
        ["static", ..] => match path.strip_prefix("/static/") {
            Some(rel) => read_only!(static_file(app, req, rel)),
            None => Err(Error::NotFound),
        },
        ["favicon.ico"] => read_only!(static_file(app, req, "favicon.ico")),
        // The owner's pages. Every change is a POST; GETs only read.
        ["admin"] => read_only!(Ok(Reply::redirect(301, "/admin/"))),
        ["admin", ""] => read_only!(admin::dashboard(app, req, t)),
        ["admin", "login"] => match t.method {
            Method::Post => admin::login(app, req),
            _ => read_only!(admin::login_page(app, t)),
        },
        ["admin", "logout"] if t.method == Method::Post => admin::logout(app, req),
        ["admin", "share"] => match t.method {
            Method::Post => admin::share_post(app, req),
            _ => read_only!(admin::share_page(app, req, t)),
        },
        ["admin", "links"] if t.method == Method::Post => admin::create_form(app, req),
        ["admin", "links", code, "delete"] if t.method == Method::Post => {
            admin::delete_form(app, req, code)
        }
        ["admin", "logout" | "links", ..] => Err(Error::MethodNotAllowed),
        // The JSON API.
        ["api", "links"] => match t.method {
            Method::Post => admin::api_create(app, req),
            _ => read_only!(admin::api_list(app, req, t)),
        },
        ["api", "links", code] => match t.method {
            Method::Delete => admin::api_delete(app, req, code),
            _ => read_only!(admin::api_get(app, req, code)),
        },
        // Short links: whatever single segment nothing above claimed.
        [code] if links::is_code_like(code) => read_only!(admin::redirect(app, req, t, code)),
        [code] if code.strip_suffix('+').is_some_and(links::is_code_like) => {
            read_only!(admin::preview(app, req, t, &code[..code.len() - 1]))
        }
        _ => Err(Error::NotFound),
    }
}

/// The methods a path answers, for the `Allow` header of a 405.
fn allowed(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "links"] | ["admin", "login"] | ["admin", "share"] => "GET, HEAD, POST",
        ["api", "links", _] => "GET, HEAD, DELETE",
        ["admin", "logout"] | ["admin", "links", ..] => "POST",
        _ => "GET, HEAD",
    }
}

/// Where page `page` of a listing starts; a page past the end (or a number so large the
/// offset overflows) is a 404, page 1 always exists.
fn page_offset(page: u64, per: u32, total: u64) -> Result<u64, Error> {
    let offset = page
        .checked_sub(1)
        .and_then(|p| p.checked_mul(per as u64))
        .ok_or(Error::NotFound)?;
    if page > 1 && offset >= total {
        return Err(Error::NotFound);
    }
    Ok(offset)
}

/// The answer for a page kept in the page cache under its current ETag, if it is kept.
fn from_cache(app: &App, req: &Request, path: &str) -> Option<Result<Reply, Error>> {
    let etag = app.page_etag(path);
    let body = app.pages.borrow_mut().get(path, &etag)?;
    Some(cached(req, etag, app.site.0, CACHE_PAGE, || {
        Ok(Reply {
            status: 200,
            headers: vec![("Content-Type", HTML.to_string())],
            body: Body::Shared(body),
        })
    }))
}

/// An HTML page that depends on the whole site (see [`App::page_etag`]), built by `build`,
/// answered and kept in the page cache. Each page's handler looks in the cache first
/// ([`from_cache`]), before the queries it needs to know the page exists.
fn page(
    app: &App,
    req: &Request,
    path: &str,
    build: impl FnOnce() -> Result<Reply, Error>,
) -> Result<Reply, Error> {
    let etag = app.page_etag(path);
    cached(req, etag.clone(), app.site.0, CACHE_PAGE, || {
        let mut reply = build()?;
        if reply.status == 200
            && matches!(&reply.body, Body::Bytes(b) if b.len() <= crate::cache::MAX_PAGE)
            && let Body::Bytes(mut b) = std::mem::replace(&mut reply.body, Body::Empty)
        {
            // Trimmed in place (glibc shrinks the block without copying): a rendered page
            // can hold up to twice its length, and the spare bytes would be kept too.
            b.shrink_to_fit();
            let body = Arc::new(b);
            app.pages.borrow_mut().put(path, &etag, Arc::clone(&body));
            reply.body = Body::Shared(body);
        }
        Ok(reply)
    })
}

fn index(app: &App, req: &Request, page: u64) -> Result<Reply, Error> {
    let path = if page == 1 {
        "/".to_string()
    } else {
        format!("/page/{page}/")
    };
    if let Some(reply) = from_cache(app, req, &path) {
        return reply;
    }
    let total = app.db.count_public()? as u64;
    let per = app.cfg.per_page;
    let offset = page_offset(page, per, total)?;
    self::page(app, req, &path, || {
        let posts = app.db.list_posts(None, per, offset)?;
        let site = app.site_view();
        let page = render::IndexPage {
            site: &site,
            path: &path,
            posts: posts.into_iter().map(PostView::new).collect(),
            pager: Pager::new("/", page, total, per),
        };
        Ok(Reply::html(page.render()?))
    })
}

fn post(app: &App, req: &Request, slug: &str) -> Result<Reply, Error> {
    // A kept page is looked for first, by the route as asked: only a post's own page is
    // kept under its route, so a hit needs no query at all.
    if let Some(reply) = from_cache(app, req, &format!("/posts/{slug}/")) {
        return reply;
    }
    let Some(row) = app.db.post_by_slug(slug)? else {
        return Err(Error::NotFound);
    };
    let path = format!("/posts/{}/", row.slug);
    page(app, req, &path, || {
        let (older, newer) = app.db.neighbours(row.date, &row.slug)?;
        let site = app.site_view();
        let page = render::PostPage {
            site: &site,
            path: &path,
            post: PostView::new(row),
            older,
            newer,
        };
        Ok(Reply::html(page.render()?))
    })
}

fn tags(app: &App, req: &Request) -> Result<Reply, Error> {
    if let Some(reply) = from_cache(app, req, "/tags/") {
        return reply;
    }
    page(app, req, "/tags/", || {
        let site = app.site_view();
        let page = render::TagsPage {
            site: &site,
            path: "/tags/",
            tags: app.db.tags()?,
        };
        Ok(Reply::html(page.render()?))
    })
}

fn tag_page(app: &App, req: &Request, tag: &str, page: u64) -> Result<Reply, Error> {
    let prefix = format!("/tags/{tag}/");
    let path = if page == 1 {
        prefix.clone()
    } else {
        format!("{prefix}page/{page}/")
    };
    if let Some(reply) = from_cache(app, req, &path) {
        return reply;
    }
    let Some((name, count)) = app.db.tag(tag)? else {
        return Err(Error::NotFound);
    };
    let per = app.cfg.per_page;
    let offset = page_offset(page, per, count as u64)?;
    self::page(app, req, &path, || {
        let posts = app.db.list_posts(Some(tag), per, offset)?;
        let site = app.site_view();
        let page = render::TagPage {
            site: &site,
            path: &path,
            name,
            count,
            posts: posts.into_iter().map(PostView::new).collect(),
            pager: Pager::new(&prefix, page, count as u64, per),
        };
        Ok(Reply::html(page.render()?))
    })
}

/// A streamed answer: the sitemap (a line per post) and the feeds (twenty full posts, the
/// largest answers nib gives) never sit in memory whole: measured, a feed built in one
/// string raised peak RSS by 330 KB. `fill` is called for each piece (see [`Fill`]).
fn chunked(
    content_type: &str,
    fill: impl FnMut(&App, &mut Vec<u8>) -> Result<bool, Error> + 'static,
) -> Reply {
    Reply {
        status: 200,
        headers: vec![("Content-Type", content_type.into())],
        body: Body::Stream(Box::new(fill)),
    }
}

/// The Atom (`atom`) or RSS feed: the head, then one entry at a time, then the tail.
fn feed_reply(app: &App, atom: bool) -> Result<Reply, Error> {
    let entries = app.db.post_slugs_after(None, render::FEED_ENTRIES)?;
    let updated = render::feed_updated(entries.iter().map(|(d, _, u)| (*d, *u)));
    let ctype = if atom {
        "application/atom+xml; charset=utf-8"
    } else {
        "application/rss+xml; charset=utf-8"
    };
    let mut next = 0;
    Ok(chunked(ctype, move |app, buf| {
        let site = app.site_view();
        let author = if app.cfg.author.is_empty() {
            &app.cfg.title
        } else {
            &app.cfg.author
        };
        match next {
            0 if atom => render::AtomHead {
                site: &site,
                updated: dates::rfc3339(updated),
                author,
            }
            .write_into(buf)?,
            0 => render::RssHead {
                site: &site,
                updated: dates::http(updated),
            }
            .write_into(buf)?,
            n if n <= entries.len() => {
                // A post deleted since the list was read is left out.
                if let Some(row) = app.db.post_by_slug(&entries[n - 1].1)? {
                    let post = PostView::new(row);
                    if atom {
                        render::AtomEntry { site: &site, post }.write_into(buf)?
                    } else {
                        render::RssEntry {
                            site: &site,
                            author,
                            post,
                        }
                        .write_into(buf)?
                    }
                }
            }
            n if n == entries.len() + 1 => buf.extend_from_slice(
                if atom {
                    render::ATOM_TAIL
                } else {
                    render::RSS_TAIL
                }
                .as_bytes(),
            ),
            _ => return Ok(false),
        }
        next += 1;
        Ok(true)
    }))
}

fn feed(app: &App, req: &Request, atom: bool) -> Result<Reply, Error> {
    let path = if atom { "/feed.xml" } else { "/rss.xml" };
    cached(req, app.page_etag(path), app.site.0, CACHE_PAGE, || {
        feed_reply(app, atom)
    })
}

/// The sitemap: the listing pages first, then the posts a page of 200 at a time.
fn sitemap_reply(app: &App) -> Result<Reply, Error> {
    // Listing pages change with their newest post; using its date keeps the sitemap the
    // same from run to run (and between `serve` and `build`).
    let at = Some(app.db.newest_post()?).filter(|t| *t > 0);
    let per = app.cfg.per_page as u64;
    let mut started = false;
    let mut cursor: Option<(i64, String)> = None;
    let mut done = false;
    Ok(chunked(XML, move |app, buf| {
        if done {
            return Ok(false);
        }
        let base = app.cfg.base();
        if !started {
            started = true;
            buf.extend_from_slice(render::SITEMAP_HEAD.as_bytes());
            render::sitemap_url(buf, base, "/", at);
            render::sitemap_url(buf, base, "/tags/", at);
            for n in 2..=(app.db.count_public()? as u64).div_ceil(per) {
                render::sitemap_url(buf, base, &format!("/page/{n}/"), at);
            }
            for (slug, _, count) in app.db.tags()? {
                render::sitemap_url(buf, base, &format!("/tags/{slug}/"), at);
                for n in 2..=(count as u64).div_ceil(per) {
                    render::sitemap_url(buf, base, &format!("/tags/{slug}/page/{n}/"), at);
                }
            }
            return Ok(true);
        }
        let rows = app.db.post_slugs_after(cursor.as_ref(), 200)?;
        for (date, slug, updated) in &rows {
            let lastmod = updated.unwrap_or(*date).max(*date);
            render::sitemap_url(buf, base, &format!("/posts/{slug}/"), Some(lastmod));
        }
        match rows.into_iter().last() {
            Some((date, slug, _)) => cursor = Some((date, slug)),
            None => {
                buf.extend_from_slice(render::SITEMAP_TAIL.as_bytes());
                done = true;
            }
        }
        Ok(true)
    }))
}

fn sitemap(app: &App, req: &Request) -> Result<Reply, Error> {
    cached(
        req,
        app.page_etag("/sitemap.xml"),
        app.site.0,
        CACHE_PAGE,
        || sitemap_reply(app),
    )
}

fn robots(app: &App, req: &Request) -> Result<Reply, Error> {
    // The site's own robots.txt wins.
    if app.cfg.static_dir.join("robots.txt").is_file() {
        return static_file(app, req, "robots.txt");
    }
    cached(
        req,
        app.page_etag("/robots.txt"),
        app.site.0,
        CACHE_PAGE,
        || Ok(Reply::new(200, TEXT, render::robots(app.cfg.base()))),
    )
}

/// The Content-Type for a file name, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => HTML,
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "map" => "application/json",
        "txt" | "md" => TEXT,
        "xml" => XML,
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// How a static file is refused or missing, before anything is answered.
enum Missing {
    /// Nothing by that name in `static/`: a file built into the binary may stand in.
    Absent,
    /// Something is there that nib will not serve (a FIFO, a directory, a link out of
    /// `static/`, a name the kernel rejects): a 404 like any unknown path.
    Refused,
    /// The system failed (no descriptors left, an I/O error): a 500.
    Failed(io::Error),
}

/// Opens `rel` under `dir` when it is a regular file that really lies inside `dir`.
///
/// The joined path is resolved with `realpath` and must stay under the resolved `dir`, so a
/// symlink that leads out of `static/` is refused while one that stays inside still works;
/// resolving `dir` on every request keeps that true when a deploy swaps `static/` for a
/// link to a new release. The resolved path (which then holds no symlink) is opened with
/// `O_NOFOLLOW`, so a last component swapped for a link in between fails instead of being
/// followed.
///
/// The file type is checked on the opened file (`fstat`), not by a `stat` before the open:
/// a check by name leaves a window in which the name can become a FIFO, and opening a FIFO
/// blocks until a writer comes, which froze the one request loop. `O_NONBLOCK` makes that
/// open return at once; then anything but a regular file is refused. On a regular file
/// `O_NONBLOCK` changes nothing, so the file is read as before. (A device node would be
/// opened before it is refused, but making one in `static/` takes root, and links to
/// `/dev` are refused by the containment check.)
fn open_static(dir: &Path, rel: &str) -> Result<(File, std::fs::Metadata), Missing> {
    use std::os::unix::fs::OpenOptionsExt;
    let joined = safe_join(dir, rel).ok_or(Missing::Refused)?;
    let path = std::fs::canonicalize(&joined).map_err(missing)?;
    let root = std::fs::canonicalize(dir).map_err(missing)?;
    if !path.starts_with(&root) {
        return Err(Missing::Refused);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(missing)?;
    let meta = file.metadata().map_err(Missing::Failed)?;
    if !meta.is_file() {
        return Err(Missing::Refused);
    }
    Ok((file, meta))
}

/// What a failed lookup or open of a static file means for the request.
fn missing(e: io::Error) -> Missing {
    if e.kind() == io::ErrorKind::NotFound {
        return Missing::Absent;
    }
    match e.raw_os_error() {
        // A name too long, a loop of links, a file in the way of a folder, no permission,
        // a socket or a device that will not open: nothing nib can serve, and nothing
        // wrong with nib.
        Some(
            libc::ENAMETOOLONG
            | libc::ELOOP
            | libc::ENOTDIR
            | libc::EACCES
            | libc::EPERM
            | libc::ENXIO
            | libc::ENODEV
            | libc::EAGAIN,
        ) => Missing::Refused,
        // Running out of descriptors or memory, or a failing disk, is nib's problem: a 500
        // that logs it.
        _ => Missing::Failed(e),
    }
}

fn static_file(app: &App, req: &Request, rel: &str) -> Result<Reply, Error> {
    let (mut file, meta) = match open_static(&app.cfg.static_dir, rel) {
        Ok(found) => found,
        Err(Missing::Absent) => {
            return match admin::embedded_asset(rel) {
                Some((ctype, bytes)) => embedded(req, rel, ctype, bytes),
                None => Err(Error::NotFound),
            };
        }
        Err(Missing::Refused) => return Err(Error::NotFound),
        Err(Missing::Failed(e)) => return Err(e.into()),
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let len = meta.len();
    let mut h = Fnv::new();
    h.write(rel.as_bytes());
    h.write(&mtime.to_le_bytes());
    h.write(&len.to_le_bytes());
    let etag = strong_etag(h.finish());
    static_reply(req, etag, mtime, content_type(rel), len, |start, n| {
        // `send` writes `n` bytes from where the file stands.
        if start > 0 {
            io::Seek::seek(&mut file, io::SeekFrom::Start(start))?;
        }
        Ok(Body::File(file, n))
    })
}

/// A file built into the binary, answered like one from `static/`.
fn embedded(
    req: &Request,
    name: &str,
    ctype: &'static str,
    bytes: &'static [u8],
) -> Result<Reply, Error> {
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    h.write(bytes);
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    let etag = strong_etag(h.finish());
    // The binary's build time is unknown here (0 stands for it); the ETag carries the
    // validation.
    static_reply(req, etag, 0, ctype, bytes.len() as u64, |start, n| {
        // Both fit: the range lies inside the slice.
        Ok(Body::Bytes(
            bytes[start as usize..(start + n) as usize].to_vec(),
        ))
    })
}

/// Answers a static file of `len` bytes: a 304 when the client's copy is current (see
/// [`cached`]), else the whole file (200) or the one range it asked for (206, or 416 when
/// the range lies past the end). `part(start, n)` gives the body of `n` bytes from `start`.
/// A HEAD gets the same status and headers as its GET.
fn static_reply(
    req: &Request,
    etag: String,
    modified: i64,
    ctype: &'static str,
    len: u64,
    part: impl FnOnce(u64, u64) -> io::Result<Body>,
) -> Result<Reply, Error> {
    let range = wanted_range(req, &etag, modified, len);
    let mut reply = cached(req, etag, modified, CACHE_STATIC, || {
        Ok(match range {
            Ranged::Whole => Reply {
                status: 200,
                headers: vec![
                    ("Content-Type", ctype.into()),
                    ("Accept-Ranges", "bytes".into()),
                ],
                body: part(0, len)?,
            },
            Ranged::Part { start, end } => Reply {
                status: 206,
                headers: vec![
                    ("Content-Type", ctype.into()),
                    ("Accept-Ranges", "bytes".into()),
                    ("Content-Range", format!("bytes {start}-{end}/{len}")),
                ],
                body: part(start, end - start + 1)?,
            },
            Ranged::Unsatisfiable => Reply::text(416, "range not satisfiable")
                .header("Accept-Ranges", "bytes")
                .header("Content-Range", format!("bytes */{len}")),
        })
    })?;
    if reply.status != 416 {
        return Ok(reply);
    }
    // A shared cache keys on the URL, not on the Range header: a 416 it kept would be
    // served to the next client who asks for the whole file.
    reply.headers.retain(|(name, _)| *name != "Cache-Control");
    Ok(reply.header("Cache-Control", "no-store"))
}

/// What a request asks of a static file: the `Range` it sent, unless an `If-Range` names
/// another version of the file (then the whole of the current one, RFC 9110 13.1.5).
///
/// HEAD follows GET here (RFC 9110 9.3.2: the same header fields as a GET), as nginx does
/// (measured: a HEAD with `Range: bytes=1-2` gets its 206), although RFC 9110 14.2 reserves `Range` for GET: a client probing with HEAD learns what
/// its GET would get.
fn wanted_range(req: &Request, etag: &str, modified: i64, len: u64) -> Ranged {
    let Some(range) = header(req, "Range") else {
        return Ranged::Whole;
    };
    if let Some(cond) = header(req, "If-Range")
        && !if_range_holds(cond, etag, modified)
    {
        return Ranged::Whole;
    }
    parse_range(range, len)
}

/// Whether an `If-Range` validator names the current file: its strong ETag, compared
/// strongly (a weak tag never matches), or exactly its `Last-Modified` date. `modified` 0
/// means the date is unknown (a file built into the binary), so no date matches.
fn if_range_holds(cond: &str, etag: &str, modified: i64) -> bool {
    let cond = cond.trim();
    if cond.starts_with('"') || cond.starts_with("W/") {
        return cond == etag;
    }
    modified > 0 && dates::parse_http(cond) == Some(modified)
}

/// A `Range` header's meaning for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranged {
    /// No range, or one nib ignores: answer the whole file with a 200.
    Whole,
    /// Bytes `start` to `end`, both included, within the file: a 206.
    Part { start: u64, end: u64 },
    /// A range that starts past the end (or asks for the last 0 bytes): a 416.
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110 14.1.2) for a representation of `len` bytes: one of
/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
///
/// Several ranges are ignored and the whole file is sent with a 200, as nginx does when it
/// will not build a multipart body (`max_ranges 1`): nib does not build
/// `multipart/byteranges`, and a 200 is always a correct answer to a range request. A
/// header that does not parse (`bytes=5-2` included, which nginx answers with a 416), or
/// names another unit, is ignored too, as RFC 9110 allows. Numbers too large for 64 bits
/// count as "past any end".
fn parse_range(value: &str, len: u64) -> Ranged {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    // Digits only: `u64::from_str` would also take a leading `+`.
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first.is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes, the whole file if it is shorter.
        (true, _, Some(n)) if n == 0 || len == 0 => Ranged::Unsatisfiable,
        (true, _, Some(n)) => Ranged::Part {
            start: len.saturating_sub(n),
            end: len - 1,
        },
        // `a-`: from a to the end.
        (false, Some(a), None) if last.is_empty() && a < len => Ranged::Part {
            start: a,
            end: len - 1,
        },
        // `a-b`: b may lie past the end, which then ends the range.
        (false, Some(a), Some(b)) if a <= b && a < len => Ranged::Part {
            start: a,
            end: b.min(len - 1),
        },
        // A valid range that starts at or past the end.
        (false, Some(_), None) if last.is_empty() => Ranged::Unsatisfiable,
        (false, Some(a), Some(b)) if a <= b => Ranged::Unsatisfiable,
        _ => Ranged::Whole,
    }
}

/// The HTML 404 page (or a short text for non-HTML clients of the API).
pub fn not_found_page(app: &App, path: &str) -> Reply {
    let site = app.site_view();
    match (render::NotFoundPage { site: &site, path }).render() {
        Ok(html) => Reply::new(404, HTML, html),
        Err(e) => {
            eprintln!("nib: rendering 404 page: {e}");
            Reply::text(404, "not found")
        }
    }
}

/// Turns an error into its answer. A 500 logs the cause; the client sees a generic text.
pub fn error_reply(app: &App, t: Option<&Target>, e: Error) -> Reply {
    let status = e.status();
    if status >= 500 {
        eprintln!(
            "nib: {} {}: {e}",
            LogSafe(t.map(|t| t.method.as_str()).unwrap_or("-")),
            LogSafe(t.map(|t| t.path.as_str()).unwrap_or("-"))
        );
    }
    let path = t.map(|t| t.path.as_str()).unwrap_or("");
    let mut reply = if path.starts_with("/api/") {
        // The API answers in JSON, errors included.
        let r = admin::json(status, &serde_json::json!({ "error": e.public_message() }));
        if status == 401 {
            r.header("WWW-Authenticate", "Bearer")
        } else {
            r
        }
    } else if path == "/admin" || path.starts_with("/admin/") {
        admin_error_page(app, path, &e)
    } else {
        match (&e, t) {
            (Error::NotFound, Some(t)) => not_found_page(app, &t.path),
            _ => Reply::text(status, &e.public_message()),
        }
    };
    if status == 405 {
        reply = reply.header("Allow", allowed(path));
    }
    reply
}

/// An error on an owner's page, as an HTML page with the admin headers.
fn admin_error_page(app: &App, path: &str, e: &Error) -> Reply {
    let message = e.public_message();
    let title = match e.status() {
        400 => "That did not work",
        401 => "Log in first",
        403 => "Refused",
        404 => "Not found",
        409 => "Already taken",
        429 => "Too many attempts",
        _ => "Something went wrong",
    };
    let site = app.site_view();
    let page = admin::MessagePage {
        site: &site,
        path,
        title,
        message: &message,
        refresh: None,
    };
    let mut r = match page.render() {
        Ok(html) => Reply::html(html),
        Err(err) => {
            eprintln!("nib: rendering error page: {err}");
            Reply::text(200, &message)
        }
    };
    r.status = e.status();
    admin::admin_headers(r)
}

/// Makes a panic print one line on stderr (where and what) instead of the default
/// two-line message with a backtrace hint: the request that hit it gets a 500 from
/// [`handle`] and the server goes on.
pub fn install_panic_hook() {
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
pub fn build(app: &App, req: &mut Request) -> Option<Reply> {
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
pub fn dispatch(
    app: &App,
    req: Request,
    reply: Reply,
    writers: &Writers,
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
        app.log
            .borrow_mut()
            .add(&req, parts.0, Some(parts.2.len() as u64));
        let spawned = std::thread::Builder::new()
            .name("nib-refuse".into())
            .stack_size(64 * 1024)
            .spawn(move || respond(req, parts));
        if let Err(e) = spawned {
            eprintln!("nib: starting a thread to answer a request with a body: {e}");
        }
        return None;
    }
    send(req, reply, &mut app.log.borrow_mut(), writers, wake, end)
}

/// How a connection goes on after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
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
const PIPE_PIECES: usize = 1;

/// The most pieces a streamed body produces in one turn of the loop, so a fast client's
/// sitemap does not hold the loop for the whole of it.
const PIECES_PER_TURN: usize = 8;

/// A streamed body the loop is producing while a writer sends it.
pub struct Pump {
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
pub enum Pumped {
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
                            eprintln!("nib: {}: body broke off: {e}", self.what);
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
pub fn fill_all(app: &App, mut fill: Fill, out: &mut dyn io::Write) -> io::Result<()> {
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
enum Persist {
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
fn persistence(http10: bool, connection: Option<&str>) -> Persist {
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
enum Framing {
    /// No body may follow (204, 304): neither length nor encoding.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 has no chunks: a body of unknown length ends when the connection does.
    UntilClose,
}

/// The status line and headers of an answer, ending with the blank line. `extra` are the
/// route's headers; a value that is not plain visible ASCII, or a name this function
/// writes itself, is dropped with a log line, so no route can split or reframe a response.
fn head(
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
        "HTTP/1.1 {status} {}\r\nDate: {}\r\nServer: nib\r\nX-Content-Type-Options: nosniff\r\n",
        StatusCode(status).default_reason_phrase(),
        dates::http(dates::now()),
    );
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
fn respond(req: Request, (status, extra, body): Parts) {
    use tiny_http::{Header, Response};
    // tiny_http reads the rest of the body when the request is dropped, at the end of
    // `respond`. Shutting the socket for reading first ends that read at once (the answer
    // can still be written); the connection then ends after this answer.
    if let Some((fd, ino)) = req
        .remote_addr()
        .copied()
        .and_then(crate::guard::find_by_peer)
    {
        crate::guard::cut(fd, ino, libc::SHUT_RD);
    }
    let mut headers = vec![
        Header::from_bytes("Server", "nib").expect("static header"),
        Header::from_bytes("X-Content-Type-Options", "nosniff").expect("static header"),
    ];
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
fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Whether part of the request's body may still be on the socket when the answer is
/// written. tiny_http reads a body of up to 1 KiB before handing the request over, unless
/// the client sent `Expect: 100-continue` (then it reads nothing until asked); whatever is
/// left is read, to the end, when the request is dropped.
pub fn may_hold_body(req: &Request) -> bool {
    header(req, "Transfer-Encoding").is_some()
        || header(req, "Expect").is_some()
        || req.body_length().is_some_and(|n| n > 1024)
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
fn send(
    req: Request,
    reply: Reply,
    log: &mut AccessLog,
    writers: &Writers,
    wake: Arc<AtomicBool>,
    end: End,
) -> Option<Pump> {
    let status = reply.status;
    log.add(&req, status, reply.len());
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
    writers.submit(Job {
        to: req.into_writer(),
        head,
        out,
        peer,
        close,
        wake,
    });
    pump
}

/// One Combined Log Format line.
pub fn access_line(req: &Request, status: u16, len: Option<u64>) -> String {
    let mut line = String::new();
    write_access_line(&mut line, req, status, len);
    line.pop();
    line
}

/// Text from a request (a URL, a path decoded from one, a header), escaped for a log line
/// as nginx escapes its access log: `"` and `\` get a backslash, and every byte outside
/// printable ASCII is written `\xHH`. A newline (raw, since tiny_http ends a request line
/// only at CRLF, or decoded from `%0a`) can then never start a forged line on stdout or
/// stderr, nor a carriage return or an escape sequence rewrite what a terminal shows.
/// Every log line that prints something a client sent goes through this.
pub struct LogSafe<'s>(pub &'s str);

impl std::fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0.as_bytes();
        let mut plain = 0;
        for (i, &c) in b.iter().enumerate() {
            if (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\' {
                continue;
            }
            // A run of plain bytes is ASCII, so a non-empty `plain..i` starts and ends on
            // char boundaries; an empty one may sit inside a character being escaped.
            if plain < i {
                f.write_str(&self.0[plain..i])?;
            }
            match c {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                c => write!(f, "\\x{c:02x}")?,
            }
            plain = i + 1;
        }
        f.write_str(&self.0[plain..])
    }
}

/// Appends one Combined Log Format line, with its newline, to `out`. Written in place,
/// without a string per field: it runs for every request.
fn write_access_line(out: &mut String, req: &Request, status: u16, len: Option<u64>) {
    use std::fmt::Write;
    // Quoted fields come from the client: a quote, a backslash or a control character in
    // them could end a field or forge a line, so they are escaped (see [`LogSafe`]).
    let quote = |out: &mut String, s: Option<&str>| match s {
        Some(s) => drop(write!(out, "{}", LogSafe(s))),
        None => out.push('-'),
    };
    match req.remote_addr() {
        Some(a) => drop(write!(out, "{}", a.ip())),
        None => out.push('-'),
    }
    let _ = write!(
        out,
        " - - [{}] \"{} ",
        dates::clf(dates::now()),
        // tiny_http takes any ASCII word as a method, a bare newline included.
        LogSafe(req.method().as_str())
    );
    quote(out, Some(req.url()));
    let _ = write!(out, " HTTP/{}\" {status} ", req.http_version());
    match len {
        Some(n) => drop(write!(out, "{n}")),
        None => out.push('-'),
    }
    out.push_str(" \"");
    quote(out, header(req, "Referer"));
    out.push_str("\" \"");
    quote(out, header(req, "User-Agent"));
    out.push_str("\"\n");
}

/// Access log lines not yet written to stdout. A write per request was 5% of the request
/// loop's time for a page from the page cache, so lines are gathered and written together,
/// as nginx's `access_log … buffer=` does: when 4 KiB have gathered or the oldest line is
/// 200 ms old (the loop looks at least every quarter second), and when the loop stops. A
/// crash loses at most those lines, never anything stored.
#[derive(Default)]
pub struct AccessLog {
    lines: String,
    since: Option<Instant>,
}

/// Lines still waiting when the loop ends without [`App::finish`] (a panic outside any
/// handler) are written on the way out.
impl Drop for AccessLog {
    fn drop(&mut self) {
        self.write();
    }
}

impl AccessLog {
    const BUFFER: usize = 4096;
    const WAIT: Duration = Duration::from_millis(200);

    fn add(&mut self, req: &Request, status: u16, len: Option<u64>) {
        self.since.get_or_insert_with(Instant::now);
        write_access_line(&mut self.lines, req, status, len);
    }

    fn due(&self) -> bool {
        self.lines.len() >= Self::BUFFER || self.since.is_some_and(|t| t.elapsed() >= Self::WAIT)
    }

    fn write(&mut self) {
        use std::io::Write;
        if self.lines.is_empty() {
            return;
        }
        // One write for every line; a failed one (stdout closed) is not worth a message.
        let _ = io::stdout().lock().write_all(self.lines.as_bytes());
        self.since = None;
        // The buffer keeps its capacity for the next batch, unless a long line grew it.
        if self.lines.capacity() > 2 * Self::BUFFER {
            self.lines = String::new();
        } else {
            self.lines.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_stays_inside() {
        let base = Path::new("/srv/static");
        let cases = [
            ("style.css", Some("/srv/static/style.css")),
            ("img/a.png", Some("/srv/static/img/a.png")),
            ("../etc/passwd", None),
            ("img/../../x", None),
            ("./x", None),
            (".htaccess", None),
            ("a//b", None),
            ("", None),
            ("a\\..\\b", None),
            ("/abs", None),
            (
                &"a".repeat(255),
                Some(&*format!("/srv/static/{}", "a".repeat(255))),
            ),
            (&"a".repeat(256), None),
            (&format!("img/{}/x", "é".repeat(128)), None),
        ];
        for (rel, want) in cases {
            assert_eq!(safe_join(base, rel), want.map(PathBuf::from), "{rel}");
        }
    }

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        use Ranged::*;
        let part = |start, end| Part { start, end };
        // (header, file length, meaning)
        let cases = [
            ("bytes=0-3", 16, part(0, 3)),
            ("bytes=10-", 16, part(10, 15)),
            ("bytes=-4", 16, part(12, 15)),
            ("bytes=0-0", 16, part(0, 0)),
            ("bytes=15-15", 16, part(15, 15)),
            ("bytes=0-", 16, part(0, 15)),
            // An end past the file ends with it; a suffix longer than it is all of it.
            ("bytes=5-100", 16, part(5, 15)),
            ("bytes=-100", 16, part(0, 15)),
            ("bytes=3-99999999999999999999999", 16, part(3, 15)),
            ("bytes=-99999999999999999999999", 16, part(0, 15)),
            ("BYTES = 1-2", 16, part(1, 2)),
            (" bytes=1-2 ", 16, part(1, 2)),
            // Starting at or past the end, or the last 0 bytes: nothing to send.
            ("bytes=16-", 16, Unsatisfiable),
            ("bytes=16-20", 16, Unsatisfiable),
            ("bytes=99999999999999999999999-", 16, Unsatisfiable),
            ("bytes=-0", 16, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            // Several ranges, other units and nonsense are ignored: the whole file.
            ("bytes=0-1,4-5", 16, Whole),
            ("bytes=0-1, ", 16, Whole),
            ("items=0-1", 16, Whole),
            ("bytes=5-2", 16, Whole),
            ("bytes=-", 16, Whole),
            ("bytes=", 16, Whole),
            ("bytes=a-b", 16, Whole),
            ("bytes=+1-2", 16, Whole),
            ("bytes=1-+2", 16, Whole),
            ("bytes=1--2", 16, Whole),
            ("bytes 0-1", 16, Whole),
            ("", 16, Whole),
        ];
        for (value, len, want) in cases {
            assert_eq!(parse_range(value, len), want, "{value:?} of {len}");
        }
    }

    #[test]
    fn if_range_matches_only_the_current_version() {
        let etag = "\"0123456789abcdef\"";
        let at = 1_767_323_045; // Fri, 02 Jan 2026 03:04:05 GMT
        let date = "Fri, 02 Jan 2026 03:04:05 GMT";
        let cases = [
            (etag, at, true),
            (" \"0123456789abcdef\" ", at, true),
            ("\"fedcba9876543210\"", at, false),
            // Weak tags never match: a range needs byte-for-byte the same file.
            ("W/\"0123456789abcdef\"", at, false),
            (date, at, true),
            (date, at + 1, false),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0, false),
            ("yesterday", at, false),
        ];
        for (cond, modified, want) in cases {
            assert_eq!(if_range_holds(cond, etag, modified), want, "{cond:?}");
        }
    }

    #[test]
    fn log_text_cannot_end_a_field_or_a_line() {
        let cases = [
            ("/posts/hello/?q=1", "/posts/hello/?q=1"),
            ("/x\nnib: forged", "/x\\x0anib: forged"),
            ("/x\r\n1.2.3.4 - -", "/x\\x0d\\x0a1.2.3.4 - -"),
            ("a\"b\\c", "a\\\"b\\\\c"),
            ("\x1b[2J\t", "\\x1b[2J\\x09"),
            ("caf\u{e9}", "caf\\xc3\\xa9"),
            ("\u{2028}\u{85}", "\\xe2\\x80\\xa8\\xc2\\x85"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(LogSafe(input).to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        let cases = [
            ("/a%20b", Some("/a b")),
            ("/caf%C3%A9", Some("/café")),
            ("/%2e%2e/x", Some("/../x")),
            ("/bad%zz", None),
            ("/trunc%2", None),
            ("/sign%+A", None),
            ("/nul%00", None),
            ("/%ff", None),
        ];
        for (input, want) in cases {
            assert_eq!(percent_decode(input).as_deref(), want, "{input}");
        }
    }

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

    #[test]
    fn content_types_have_charsets_where_textual() {
        for (name, want) in [
            ("a.css", "text/css; charset=utf-8"),
            ("A.PNG", "image/png"),
            ("x.svg", "image/svg+xml"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), want);
        }
    }
}
