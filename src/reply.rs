//! An answer before it is written: [`Reply`] (status, headers, [`Body`]), the content types
//! and cache policies nib uses, and conditional requests (strong ETags, `If-None-Match`,
//! `If-Modified-Since`): what every handler builds its answer with.

use std::fs::File;
use std::sync::Arc;

use tiny_http::Request;

use crate::app::App;
use crate::dates;
use crate::error::Error;
use crate::request::header;

/// A response before it is written: status, headers and a body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

pub(crate) type Parts = (u16, Vec<(&'static str, String)>, Vec<u8>);

pub(crate) enum Body {
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
pub(crate) type Fill = Box<dyn FnMut(&App, &mut Vec<u8>) -> Result<bool, Error>>;

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

    pub(crate) fn len(&self) -> Option<u64> {
        match &self.body {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Shared(b) => Some(b.len() as u64),
            Body::File(_, n) => Some(*n),
            Body::Stream(_) => None,
        }
    }
}

pub(crate) const HTML: &str = "text/html; charset=utf-8";

pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

pub(crate) const XML: &str = "application/xml; charset=utf-8";

/// Pages change whenever a post does, so caches must revalidate; a 304 is cheap.
pub(crate) const CACHE_PAGE: &str = "public, max-age=0, must-revalidate";

/// Files in static/ rarely change; an hour keeps repeat visits off the server.
pub(crate) const CACHE_STATIC: &str = "public, max-age=3600";

/// Whether the client's cached copy is current: `If-None-Match` (weak comparison, as RFC
/// 9110 asks for GET) wins over `If-Modified-Since`.
pub(crate) fn not_modified(req: &Request, etag: &str, last_modified: i64) -> bool {
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
pub(crate) fn cached(
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
