//! Files: `static/` and the folders of post bundles (only regular files that really lie
//! inside them, single byte ranges), and the assets built into the binary that stand in
//! when the site has none.

use std::fs::File;
use std::io;
use std::path::Path;

use tiny_http::Request;

use crate::app::App;
use crate::dates;
use crate::error::Error;
use crate::hash::{Fnv, strong_etag};
use crate::reply::{Body, CACHE_STATIC, HTML, Reply, TEXT, XML, cached};
use crate::request::{header, safe_join};

/// The Content-Type for a file name, by extension.
pub(crate) fn content_type(name: &str) -> &'static str {
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
pub(crate) enum Missing {
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
pub(crate) fn open_static(dir: &Path, rel: &str) -> Result<(File, std::fs::Metadata), Missing> {
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
pub(crate) fn missing(e: io::Error) -> Missing {
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

pub(crate) fn static_file(app: &App, req: &Request, rel: &str) -> Result<Reply, Error> {
    match open_static(&app.cfg.static_dir, rel) {
        Ok((file, meta)) => file_reply(req, rel, file, &meta),
        Err(Missing::Absent) => match embedded_asset(rel) {
            Some((ctype, bytes)) => embedded(req, rel, ctype, bytes),
            None => Err(Error::NotFound),
        },
        Err(Missing::Refused) => Err(Error::NotFound),
        Err(Missing::Failed(e)) => Err(e.into()),
    }
}

/// A file of a post bundle (`posts/SLUG/index.md` and the files beside it), at
/// `/posts/SLUG/NAME`: answered as a file of `static/` is, from the public post's folder
/// and never from outside it. The folder's markdown (the post's own source among it) is
/// not served, nor is anything of a draft or of a post that is no bundle.
pub(crate) fn bundle_file(app: &App, req: &Request, slug: &str, rel: &str) -> Result<Reply, Error> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if crate::posts::post_stem(name).is_some() {
        return Err(Error::NotFound);
    }
    let Some(post) = app.db.public_post_path(slug)? else {
        return Err(Error::NotFound);
    };
    let Some(folder) = crate::posts::bundle_folder(&post) else {
        return Err(Error::NotFound);
    };
    // The folder's path comes from the index, which holds only what a walk of `posts/`
    // found; it is joined as plain segments all the same. A walk follows no link to a
    // folder, but one may have replaced the folder since: the folder must still be where
    // its path says, inside `posts/`, or `open_static` would stay inside the link's target.
    let Some(dir) = safe_join(&app.cfg.posts_dir, folder) else {
        return Err(Error::NotFound);
    };
    let root = std::fs::canonicalize(&app.cfg.posts_dir).map_err(|_| Error::NotFound)?;
    if std::fs::canonicalize(&dir).ok() != Some(root.join(folder)) {
        return Err(Error::NotFound);
    }
    match open_static(&dir, rel) {
        Ok((file, meta)) => file_reply(req, &format!("{slug}/{rel}"), file, &meta),
        Err(Missing::Absent | Missing::Refused) => Err(Error::NotFound),
        Err(Missing::Failed(e)) => Err(e.into()),
    }
}

/// Answers an opened file; `key` (its path as asked) goes into the ETag with its mtime
/// and size.
fn file_reply(
    req: &Request,
    key: &str,
    mut file: File,
    meta: &std::fs::Metadata,
) -> Result<Reply, Error> {
    let mtime = crate::dates::mtime(meta).as_secs() as i64;
    let len = meta.len();
    let mut h = Fnv::new();
    h.write(key.as_bytes());
    h.write(&mtime.to_le_bytes());
    h.write(&len.to_le_bytes());
    let etag = strong_etag(h.finish());
    static_reply(req, etag, mtime, content_type(key), len, |start, n| {
        // `send` writes `n` bytes from where the file stands.
        if start > 0 {
            io::Seek::seek(&mut file, io::SeekFrom::Start(start))?;
        }
        Ok(Body::File(file, n))
    })
}

/// A file built into the binary, answered like one from `static/`.
pub(crate) fn embedded(
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
pub(crate) fn static_reply(
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
pub(crate) fn wanted_range(req: &Request, etag: &str, modified: i64, len: u64) -> Ranged {
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
pub(crate) fn if_range_holds(cond: &str, etag: &str, modified: i64) -> bool {
    let cond = cond.trim();
    if cond.starts_with('"') || cond.starts_with("W/") {
        return cond == etag;
    }
    modified > 0 && dates::parse_http(cond) == Some(modified)
}

/// A `Range` header's meaning for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
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
pub(crate) fn parse_range(value: &str, len: u64) -> Ranged {
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

/// The default look: the reading and admin styles, the admin script, the icons (and the
/// PNG icons of the owner's web app, which Android's installed apps need), built
/// into the binary so a site folder holding only `posts/` looks like the example site. A
/// file of the same name in the site's `static/` folder wins, so an owner restyles the
/// site by dropping a `style.css` there.
pub(crate) const EMBEDDED: &[(&str, &[u8])] = &[
    ("style.css", include_bytes!("../../static/style.css")),
    ("admin.css", include_bytes!("../../static/admin.css")),
    ("admin.js", include_bytes!("../../static/admin.js")),
    ("favicon.svg", include_bytes!("../../static/favicon.svg")),
    ("favicon.ico", include_bytes!("../../static/favicon.ico")),
    (
        "apple-touch-icon.png",
        include_bytes!("../../static/apple-touch-icon.png"),
    ),
    (
        "nib-icon-192.png",
        include_bytes!("../../static/nib-icon-192.png"),
    ),
    (
        "nib-icon-512.png",
        include_bytes!("../../static/nib-icon-512.png"),
    ),
];

/// The built-in file of that name, with its Content-Type.
pub(crate) fn embedded_asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(n, bytes)| (content_type(n), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

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
