//! Reading a request: its method, path and query decoded once ([`Target`]), its headers,
//! the client's address (the proxy's `X-Real-IP` only from loopback), the origin check of
//! the owner's forms, and its body as a form once a handler has passed its checks. Every
//! path derived from a URL goes through [`safe_join`].

use std::io::Read;
use std::path::{Path, PathBuf};

use tiny_http::{Method, Request};

use crate::app::App;
use crate::auth;
use crate::error::Error;

/// The request's method, path and query, decoded once.
pub(crate) struct Target {
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
}

/// Decodes `%XX` escapes; `None` for a bad escape, invalid UTF-8 or a NUL byte.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
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
pub(crate) const NAME_MAX: usize = 255;

/// The one way a URL path becomes a file path: `rel` is split on `/` and every segment must
/// be a plain name (no `..`, `.`, empty, hidden or backslash segments, none over
/// [`NAME_MAX`] bytes), so the result always lies inside `base` (symlinks aside: see
/// [`open_static`]).
pub(crate) fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
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

/// Looks up a request header (case-insensitive).
pub(crate) fn header<'r>(req: &'r Request, name: &'static str) -> Option<&'r str> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Whether part of the request's body may still be on the socket when the answer is
/// written. tiny_http reads a body of up to 1 KiB before handing the request over, unless
/// the client sent `Expect: 100-continue` (then it reads nothing until asked); whatever is
/// left is read, to the end, when the request is dropped.
pub(crate) fn may_hold_body(req: &Request) -> bool {
    header(req, "Transfer-Encoding").is_some()
        || header(req, "Expect").is_some()
        || req.body_length().is_some_and(|n| n > 1024)
}

/// The largest request body nib reads.
pub(crate) const MAX_BODY: usize = 64 * 1024;

pub(crate) enum Form {
    Json(serde_json::Value),
    Pairs(Vec<(String, String)>),
}

impl Form {
    /// A string field, from either encoding.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Form::Json(v) => v.get(name).and_then(|v| v.as_str()).map(str::to_string),
            Form::Pairs(p) => p.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        }
    }
}

/// Refuses a body over [`MAX_BODY`] by its `Content-Length` before reading anything
/// ([`read_body`] then reads at most one byte more than the limit, for chunked bodies).
pub(crate) fn check_length(req: &Request) -> Result<(), Error> {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(Error::PayloadTooLarge);
    }
    Ok(())
}

/// The request body as a form, once the handler has passed its checks. A body tiny_http
/// has not read already (over 1 KiB, chunked, or behind `Expect: 100-continue`) is never
/// read here, on the loop: the handler answers [`Error::NeedBody`], the loop reads the body
/// on a thread of its own with a deadline and runs the handler again with it.
pub(crate) fn read_body(app: &App, req: &mut Request, json_allowed: bool) -> Result<Form, Error> {
    check_length(req)?;
    let ctype = header(req, "Content-Type")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = match ctype.as_str() {
        "application/json" if json_allowed => true,
        "application/x-www-form-urlencoded" => false,
        _ => return Err(Error::UnsupportedMediaType),
    };
    let buf = match app.body.borrow_mut().take() {
        Some(b) => b,
        None if may_hold_body(req) => return Err(Error::NeedBody),
        None => {
            // tiny_http has this body in memory already: reading it cannot wait.
            let mut buf = Vec::new();
            req.as_reader()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|_| Error::BadRequest("could not read the request body".into()))?;
            buf
        }
    };
    if buf.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    if json {
        let v: serde_json::Value = serde_json::from_slice(&buf)
            .map_err(|e| Error::BadRequest(format!("body is not valid json: {e}")))?;
        if !v.is_object() {
            return Err(Error::BadRequest("body must be a json object".into()));
        }
        Ok(Form::Json(v))
    } else {
        Ok(Form::Pairs(parse_query(&buf)))
    }
}

pub(crate) fn parse_query(q: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q)
        .take(64)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn query_get<'q>(q: &'q [(String, String)], name: &str) -> Option<&'q str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

// ---- who is asking ----

/// The address failed attempts are counted against (see [`auth::client_key`]). Behind the
/// front end every peer is loopback, and the address is the `X-Real-IP` that nginx or
/// Caddy overwrites (`deploy/`); from any other peer that header is ignored.
///
/// Regression: the header was believed as the client sent it (the front end passed it
/// through), so 2,000 bad logins with 2,000 made-up addresses were never throttled, and 6
/// bad logins under the owner's address locked the owner out.
pub(crate) fn client(req: &Request) -> String {
    auth::client_key(req.remote_addr().map(|a| a.ip()), header(req, "X-Real-IP"))
}

pub(crate) fn check_origin(app: &App, req: &Request) -> Result<(), Error> {
    if auth::same_origin(
        header(req, "Origin"),
        header(req, "Referer"),
        app.cfg.base(),
        header(req, "Host"),
    ) {
        Ok(())
    } else {
        Err(Error::Forbidden("cross-site request refused".into()))
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
}
