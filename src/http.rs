//! The request loop and routing. One thread takes requests from tiny_http, routes them in
//! [`route`], and answers; a panic in a handler becomes a 500 for that request alone. Pages
//! are built from their own database rows, with strong ETags and `Last-Modified` so
//! revalidation is a 304 without rendering; the last few are kept whole in the page cache
//! (`cache.rs`) under those ETags. Every path derived from a URL goes through [`safe_join`].

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
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
    /// (a quarter second): deferred writes that must not wait for the next request.
    pub fn tick(&mut self) {
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
pub struct Reply<'a> {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
}

type Parts = (u16, Vec<(&'static str, String)>, Vec<u8>);

impl Body<'_> {
    /// The body's bytes, when it is held in memory.
    fn in_memory(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(b) => Some(b),
            Body::Shared(b) => Some(b),
            Body::Empty | Body::File(..) | Body::Stream(_) => None,
        }
    }
}

pub enum Body<'a> {
    Empty,
    Bytes(Vec<u8>),
    /// A page from the page cache.
    Shared(Rc<Vec<u8>>),
    /// A file and its length, streamed from disk.
    File(File, u64),
    /// Produced while it is sent, so large listings (the sitemap) never sit in memory.
    Stream(Box<dyn Read + 'a>),
}

impl<'a> Reply<'a> {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply<'a> {
        Reply {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body.into()),
        }
    }

    pub fn html(body: String) -> Reply<'a> {
        Reply::new(200, HTML, body)
    }

    pub fn text(status: u16, body: &str) -> Reply<'a> {
        Reply::new(status, TEXT, format!("{body}\n"))
    }

    pub fn redirect(status: u16, location: &str) -> Reply<'a> {
        let mut r = Reply::text(status, &format!("see {location}"));
        r.headers.push(("Location", location.to_string()));
        r
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply<'a> {
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

/// The one way a URL path becomes a file path: `rel` is split on `/` and every segment must
/// be a plain name (no `..`, `.`, empty, hidden or backslash segments), so the result always
/// lies inside `base`.
pub fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let mut any = false;
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains('\\') || seg.contains('\0') {
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
fn cached<'a>(
    req: &Request,
    etag: String,
    modified: i64,
    cache: &str,
    build: impl FnOnce() -> Result<Reply<'a>, Error>,
) -> Result<Reply<'a>, Error> {
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
pub fn route<'a>(app: &'a App, req: &mut Request, t: &Target) -> Result<Reply<'a>, Error> {
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
fn from_cache<'a>(app: &'a App, req: &Request, path: &str) -> Option<Result<Reply<'a>, Error>> {
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
fn page<'a>(
    app: &'a App,
    req: &Request,
    path: &str,
    build: impl FnOnce() -> Result<Reply<'a>, Error>,
) -> Result<Reply<'a>, Error> {
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
            let body = Rc::new(b);
            app.pages.borrow_mut().put(path, &etag, Rc::clone(&body));
            reply.body = Body::Shared(body);
        }
        Ok(reply)
    })
}

fn index<'a>(app: &'a App, req: &Request, page: u64) -> Result<Reply<'a>, Error> {
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

fn post<'a>(app: &'a App, req: &Request, slug: &str) -> Result<Reply<'a>, Error> {
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

fn tags<'a>(app: &'a App, req: &Request) -> Result<Reply<'a>, Error> {
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

fn tag_page<'a>(app: &'a App, req: &Request, tag: &str, page: u64) -> Result<Reply<'a>, Error> {
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

/// A body produced a piece at a time while it is written: `fill` appends the next piece
/// and returns false when there is no more. The sitemap (a line per post) and the feeds
/// (twenty full posts, the largest answers nib gives) never sit in memory whole: measured,
/// a feed built in one string raised peak RSS by 330 KB.
struct Chunks<F> {
    fill: F,
    buf: Vec<u8>,
    pos: usize,
}

impl<F: FnMut(&mut Vec<u8>) -> Result<bool, Error>> Read for Chunks<F> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if !(self.fill)(&mut self.buf).map_err(|e| io::Error::other(e.to_string()))? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn chunked<'a>(
    content_type: &str,
    fill: impl FnMut(&mut Vec<u8>) -> Result<bool, Error> + 'a,
) -> Reply<'a> {
    Reply {
        status: 200,
        headers: vec![("Content-Type", content_type.into())],
        body: Body::Stream(Box::new(Chunks {
            fill,
            buf: Vec::new(),
            pos: 0,
        })),
    }
}

/// The Atom (`atom`) or RSS feed: the head, then one entry at a time, then the tail.
fn feed_reply(app: &App, atom: bool) -> Result<Reply<'_>, Error> {
    let entries = app.db.post_slugs_after(None, render::FEED_ENTRIES)?;
    let updated = render::feed_updated(entries.iter().map(|(d, _, u)| (*d, *u)));
    let ctype = if atom {
        "application/atom+xml; charset=utf-8"
    } else {
        "application/rss+xml; charset=utf-8"
    };
    let mut next = 0;
    Ok(chunked(ctype, move |buf| {
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

fn feed<'a>(app: &'a App, req: &Request, atom: bool) -> Result<Reply<'a>, Error> {
    let path = if atom { "/feed.xml" } else { "/rss.xml" };
    cached(req, app.page_etag(path), app.site.0, CACHE_PAGE, || {
        feed_reply(app, atom)
    })
}

/// The sitemap: the listing pages first, then the posts a page of 200 at a time.
fn sitemap_reply(app: &App) -> Result<Reply<'_>, Error> {
    let base = app.cfg.base();
    // Listing pages change with their newest post; using its date keeps the sitemap the
    // same from run to run (and between `serve` and `build`).
    let at = Some(app.db.newest_post()?).filter(|t| *t > 0);
    let per = app.cfg.per_page as u64;
    let mut started = false;
    let mut cursor: Option<(i64, String)> = None;
    let mut done = false;
    Ok(chunked(XML, move |buf| {
        if done {
            return Ok(false);
        }
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

fn sitemap<'a>(app: &'a App, req: &Request) -> Result<Reply<'a>, Error> {
    cached(
        req,
        app.page_etag("/sitemap.xml"),
        app.site.0,
        CACHE_PAGE,
        || sitemap_reply(app),
    )
}

fn robots<'a>(app: &'a App, req: &Request) -> Result<Reply<'a>, Error> {
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

fn static_file<'a>(app: &'a App, req: &Request, rel: &str) -> Result<Reply<'a>, Error> {
    let path = safe_join(&app.cfg.static_dir, rel).ok_or(Error::NotFound)?;
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match admin::embedded_asset(rel) {
                Some((ctype, bytes)) => embedded(req, rel, ctype, bytes),
                None => Err(Error::NotFound),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(Error::NotFound),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(Error::NotFound),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::NotFound);
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut h = Fnv::new();
    h.write(rel.as_bytes());
    h.write(&mtime.to_le_bytes());
    h.write(&meta.len().to_le_bytes());
    let etag = strong_etag(h.finish());
    let ctype = content_type(rel);
    cached(req, etag, mtime, CACHE_STATIC, || {
        Ok(Reply {
            status: 200,
            headers: vec![("Content-Type", ctype.into())],
            body: Body::File(file, meta.len()),
        })
    })
}

/// A file built into the binary, answered like one from `static/`.
fn embedded<'a>(
    req: &Request,
    name: &str,
    ctype: &'static str,
    bytes: &'static [u8],
) -> Result<Reply<'a>, Error> {
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    h.write(bytes);
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    let etag = strong_etag(h.finish());
    // The binary's build time is unknown here; the ETag carries the validation.
    cached(req, etag, 0, CACHE_STATIC, || {
        Ok(Reply::new(200, ctype, bytes))
    })
}

/// The HTML 404 page (or a short text for non-HTML clients of the API).
pub fn not_found_page<'a>(app: &'a App, path: &str) -> Reply<'a> {
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
pub fn error_reply<'a>(app: &'a App, t: Option<&Target>, e: Error) -> Reply<'a> {
    let status = e.status();
    if status >= 500 {
        eprintln!(
            "nib: {} {}: {e}",
            t.map(|t| t.method.as_str()).unwrap_or("-"),
            t.map(|t| t.path.as_str()).unwrap_or("-")
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
fn admin_error_page<'a>(app: &'a App, path: &str, e: &Error) -> Reply<'a> {
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

/// Answers one request completely: route, catch panics, write, log.
pub fn handle(app: &App, req: Request) {
    // A read-only request runs in one read transaction, through its streamed body: SQLite
    // then takes and checks its locks once per request instead of once per query (six
    // fcntl calls and three fstat calls fewer for a post page), and every query of the
    // page sees the same snapshot. GETs never write (clicks are written by the loop).
    //
    // A page kept in the page cache needs no query, so it is answered without one: the
    // transaction's locking alone cost more than the rest of the answer's own work.
    let read_tx = matches!(*req.method(), Method::Get | Method::Head)
        && !app.kept(req.url())
        && app.db.begin_read().is_ok();
    answer(app, req);
    if read_tx && let Err(e) = app.db.commit() {
        eprintln!("nib: ending a read transaction: {e}");
    }
}

fn answer(app: &App, mut req: Request) {
    let target = Target::of(&req);
    let reply = match &target {
        Err(_) => None,
        Ok(t) => {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(app, &mut req, t)));
            Some(match r {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => error_reply(app, Some(t), e),
                Err(_) => {
                    // The panic hook has printed the message and location already.
                    error_reply(app, Some(t), Error::Internal("handler panicked".into()))
                }
            })
        }
    };
    let (reply, target) = match (reply, target) {
        (Some(r), Ok(t)) => (r, Some(t)),
        (_, Err(e)) => (error_reply(app, None, e), None),
        (None, Ok(_)) => unreachable!("a parsed target always gets a reply"),
    };
    // tiny_http reads whatever is left of a request body when the request is dropped. A
    // body nobody read (a refused one, or one sent with a GET) would keep the one request
    // loop busy for as long as the client keeps sending, so such answers are written from
    // a short-lived thread of their own, with [`respond`]. A
    // file or streamed answer cannot leave the loop (it borrows the database), so a
    // request carrying a body to such a route is refused instead.
    let unread_body = may_hold_body(&req);
    if !unread_body {
        return send(req, reply, &mut app.log.borrow_mut());
    }
    let reply = match reply.body {
        Body::Empty | Body::Bytes(_) | Body::Shared(_) => reply,
        Body::File(..) | Body::Stream(_) => error_reply(
            app,
            target.as_ref(),
            Error::BadRequest("this request takes no body".into()),
        ),
    };
    let Some(parts) = reply.into_parts() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("nib-refuse".into())
        .spawn(move || respond(req, parts));
    if let Err(e) = spawned {
        eprintln!("nib: starting a thread to answer a request with a body: {e}");
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
    let log = access_line(&req, status, Some(body.len() as u64));
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
    println!("{log}");
}

/// A header value nib will send: visible ASCII, spaces and tabs, nothing that could end
/// the line or confuse a client.
fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Copies a body of unknown length in chunked encoding, one chunk per read.
fn copy_chunked(mut from: impl Read, to: &mut dyn io::Write) -> io::Result<()> {
    let mut buf = vec![0; 8 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write!(to, "{n:x}\r\n")?;
        to.write_all(&buf[..n])?;
        to.write_all(b"\r\n")?;
    }
    to.write_all(b"0\r\n\r\n")
}

/// Whether part of the request's body may still be on the socket when the answer is
/// written. tiny_http reads a body of up to 1 KiB before handing the request over, unless
/// the client sent `Expect: 100-continue` (then it reads nothing until asked); whatever is
/// left is read, to the end, when the request is dropped.
fn may_hold_body(req: &Request) -> bool {
    header(req, "Transfer-Encoding").is_some()
        || header(req, "Expect").is_some()
        || req.body_length().is_some_and(|n| n > 1024)
}

/// Writes a reply to a request whose body tiny_http has read (see [`answer`]), with the
/// headers every response carries, and logs the request.
///
/// The answer is written by nib, through `Request::into_writer`, rather than by tiny_http's
/// `respond`: tiny_http silently drops `Connection: close`, so a client that sent it (or
/// spoke HTTP/1.0) was told nothing, took the connection for a persistent one and sent its
/// next request into a socket being closed (wrk counted a read error for every request).
/// Writing the head and an in-memory body as one buffer also sends a page in one segment,
/// where `respond` sent the head and the body apart.
fn send(req: Request, reply: Reply<'_>, log: &mut AccessLog) {
    let status = reply.status;
    log.add(&req, status, reply.len());
    let http10 = *req.http_version() == (1, 0);
    let persist = persistence(http10, header(&req, "Connection"));
    let no_body = *req.method() == Method::Head;
    let framing = match &reply.body {
        _ if status < 200 || status == 204 || status == 304 => Framing::None,
        Body::Stream(_) if http10 => Framing::UntilClose,
        Body::Stream(_) => Framing::Chunked,
        Body::Empty | Body::Bytes(_) | Body::Shared(_) | Body::File(..) => {
            Framing::Length(reply.len().unwrap_or(0))
        }
    };
    let mut out = head(status, &reply.headers, framing, persist);
    if let (false, Some(b)) = (no_body, reply.body.in_memory()) {
        // The page goes into the same buffer, reserved once.
        out.reserve_exact(b.len());
    }
    let peer = req.remote_addr().copied();
    // An HTTP/1.0 client that asked to keep the connection, sent a body that ends with it:
    // tiny_http would keep it open, so nib closes it (rare: feeds and the sitemap only).
    let mut must_cut = framing == Framing::UntilClose && persist != Persist::Close;
    // Dropping the writer tells tiny_http the answer is complete: it then reads the next
    // request, or closes the connection.
    let mut w = req.into_writer();
    let result = (|| {
        if no_body || framing == Framing::None {
            return w.write_all(&out);
        }
        match reply.body {
            Body::Empty => w.write_all(&out),
            Body::Bytes(b) => {
                out.extend_from_slice(&b);
                drop(b);
                w.write_all(&out)
            }
            Body::Shared(b) => {
                out.extend_from_slice(&b);
                w.write_all(&out)
            }
            Body::File(f, n) => {
                w.write_all(&out)?;
                // A file that shrank since it was measured would leave the client waiting
                // for bytes that never come.
                match io::copy(&mut f.take(n), &mut w)? {
                    sent if sent == n => Ok(()),
                    sent => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ended after {sent} of {n} bytes"),
                    )),
                }
            }
            Body::Stream(r) if framing == Framing::Chunked => {
                w.write_all(&out)?;
                copy_chunked(r, &mut w)
            }
            Body::Stream(mut r) => {
                w.write_all(&out)?;
                io::copy(&mut r, &mut w).map(drop)
            }
        }
    })()
    .and_then(|()| w.flush());
    // An answer that broke off after its head cannot be finished: closing the connection
    // is the only way left to tell the client it is incomplete.
    must_cut |= result.is_err();
    if must_cut && let Some((fd, ino)) = peer.and_then(crate::guard::find_by_peer) {
        crate::guard::cut(fd, ino, libc::SHUT_RDWR);
    }
    drop(w);
    if let Err(e) = result
        && !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
        )
    {
        eprintln!("nib: writing response: {e}");
    }
}

/// One Combined Log Format line.
pub fn access_line(req: &Request, status: u16, len: Option<u64>) -> String {
    let mut line = String::new();
    write_access_line(&mut line, req, status, len);
    line.pop();
    line
}

/// Appends one Combined Log Format line, with its newline, to `out`. Written in place,
/// without a string per field: it runs for every request.
fn write_access_line(out: &mut String, req: &Request, status: u16, len: Option<u64>) {
    use std::fmt::Write;
    // Quoted fields come from the client: a quote, a backslash or a control character in
    // them could forge a field or a line, so they are escaped.
    let quote = |out: &mut String, s: Option<&str>| {
        let Some(s) = s else {
            out.push('-');
            return;
        };
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if c.is_control() => out.push('?'),
                c => out.push(c),
            }
        }
    };
    match req.remote_addr() {
        Some(a) => drop(write!(out, "{}", a.ip())),
        None => out.push('-'),
    }
    let _ = write!(
        out,
        " - - [{}] \"{} ",
        dates::clf(dates::now()),
        req.method()
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
        ];
        for (rel, want) in cases {
            assert_eq!(safe_join(base, rel), want.map(PathBuf::from), "{rel}");
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
