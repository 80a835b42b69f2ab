//! Files under `/static/` from the real binary: the built-in look when `static/` lacks a
//! file, `nib init`; only regular files inside `static/` are
//! served (a FIFO, a link out of the folder or an impossible name is a 404, and none stops
//! the loop), single byte ranges with `If-Range`, and request text that cannot forge a log
//! line.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use crate::common::*;

/// Sixteen bytes, each its own offset in hex, so a range shows which bytes it got.
const HEX: &str = "0123456789abcdef";

fn site() -> Site {
    let site = Site::new();
    site.post("2026-01-02-hello.md", "# Hello\n\nText.\n")
        .write("static/hex.txt", HEX)
        .write("static/style.css", "body { color: black }\n")
        .write(
            "static/img/a.svg",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .write("outside.txt", "secret outside static\n");
    site
}

fn head(s: &TestServer, path: &str, headers: &[&str]) -> Resp {
    request(s.addr, "HEAD", path, headers, b"")
}

#[test]
fn a_fifo_in_static_does_not_hang_the_server() {
    let site = site();
    let fifo = CString::new(site.path().join("static/fifo.txt").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    let s = TestServer::start(&site);
    assert_eq!(s.get("/static/hex.txt").status, 200);
    let fds = fd_count(s.pid());
    for method in ["GET", "HEAD"] {
        let began = Instant::now();
        let r = request(s.addr, method, "/static/fifo.txt", &[], b"");
        assert_eq!(r.status, 404, "{method}");
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{method} took {:?}",
            began.elapsed()
        );
    }
    // The loop is free: the next request is answered.
    assert_eq!(s.get("/").status, 200);
    assert_eq!(s.get("/static/hex.txt").text(), HEX);
    // The FIFO was opened to learn what it is, and closed again.
    assert!(
        eventually(Duration::from_secs(2), || fd_count(s.pid()) <= fds),
        "{} fds, {fds} before",
        fd_count(s.pid())
    );
}

#[test]
fn sockets_link_loops_and_dangling_links_in_static_are_not_found() {
    let site = site();
    let dir = site.path().join("static");
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    symlink("loop", dir.join("loop")).unwrap();
    symlink("nowhere.txt", dir.join("dangling.txt")).unwrap();
    let s = TestServer::start(&site);
    for path in [
        "/static/sock",
        "/static/loop",
        "/static/loop/x",
        "/static/dangling.txt",
    ] {
        assert_eq!(s.get(path).status, 404, "{path}");
    }
    assert!(!s.stderr_text().contains("io:"), "{}", s.stderr_text());
    assert_eq!(s.get("/static/hex.txt").status, 200);
}

#[test]
fn a_directory_in_static_is_not_found() {
    let site = site();
    let s = TestServer::start(&site);
    assert_eq!(s.get("/static/img").status, 404);
    assert_eq!(s.get("/static/img/a.svg").status, 200);
}

#[test]
fn a_symlink_out_of_static_is_refused() {
    let site = site();
    let dir = site.path();
    symlink(dir.join("outside.txt"), dir.join("static/out.txt")).unwrap();
    symlink("../outside.txt", dir.join("static/relative.txt")).unwrap();
    symlink("/etc", dir.join("static/etc")).unwrap();
    symlink(dir, dir.join("static/site")).unwrap();
    let s = TestServer::start(&site);
    for path in [
        "/static/out.txt",
        "/static/relative.txt",
        "/static/etc/passwd",
        "/static/site/outside.txt",
        "/static/site/nib.db",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("secret outside"), "{path}");
        assert!(!r.text().contains("root:"), "{path}");
    }
}

#[test]
fn symlinks_inside_static_still_work() {
    let site = site();
    let dir = site.path();
    symlink("style.css", dir.join("static/alias.css")).unwrap();
    symlink("img", dir.join("static/pictures")).unwrap();
    symlink(dir.join("static/hex.txt"), dir.join("static/img/hex.txt")).unwrap();
    let s = TestServer::start(&site);
    let r = s.get("/static/alias.css");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "body { color: black }\n");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    let r = s.get("/static/pictures/a.svg");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("<svg"));
    assert_eq!(s.get("/static/img/hex.txt").text(), HEX);
}

/// A static `static/` folder that is itself a link (a deploy that swaps releases) serves
/// its files: containment is checked against where the folder really is.
#[test]
fn a_static_folder_that_is_a_symlink_still_serves() {
    let site = site();
    let dir = site.path();
    std::fs::rename(dir.join("static"), dir.join("release-1")).unwrap();
    symlink("release-1", dir.join("static")).unwrap();
    let s = TestServer::start(&site);
    assert_eq!(s.get("/static/hex.txt").text(), HEX);
    assert_eq!(s.get("/static/img/a.svg").status, 200);
}

#[test]
fn a_path_segment_over_255_bytes_is_404_not_500() {
    let site = site();
    let s = TestServer::start(&site);
    let long = "a".repeat(256);
    for path in [
        format!("/static/{long}"),
        format!("/static/{long}.css"),
        format!("/static/img/{long}/a.svg"),
        // 129 two-byte characters, escaped: 258 bytes once decoded.
        format!("/static/{}", "%C3%A9".repeat(129)),
        // A whole path over PATH_MAX, every segment short.
        format!("/static/{}x", "abcdefghij/".repeat(400)),
    ] {
        assert_eq!(s.get(&path).status, 404, "{}...", &path[..40]);
    }
    assert!(!s.stderr_text().contains("io:"), "{}", s.stderr_text());
    assert_eq!(s.get("/static/hex.txt").status, 200);
}

#[test]
fn a_newline_in_a_url_cannot_forge_a_log_line() {
    let site = site();
    let s = TestServer::start(&site);
    // A decoded newline, a raw one (tiny_http ends a request line only at CRLF), and one
    // in the method, which tiny_http takes as any ASCII word.
    let requests: [&[u8]; 4] = [
        b"GET /static/x%0aFORGED-1%0d%0a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /static/x\nFORGED-2\r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET\nFORGED-3 /static/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /static/z HTTP/1.1\r\nHost: x\r\nUser-Agent: a\nFORGED-4\r\nConnection: close\r\n\r\n",
    ];
    for req in requests {
        let r = raw_bytes(s.addr, req, false);
        assert!(r.status >= 400, "{}", String::from_utf8_lossy(req));
    }
    // The one problem line that names a request: a body refused by its length.
    let r = raw(
        s.addr,
        "POST /api/x\nFORGED-5 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    let logged = |lines: &std::sync::Mutex<Vec<String>>, want: &str| {
        lines.lock().unwrap().iter().any(|l| l.contains(want))
    };
    assert!(
        eventually(Duration::from_secs(3), || logged(&s.stdout, "FORGED-4")
            && logged(&s.stderr, "FORGED-5")),
        "stdout: {:?}\nstderr: {:?}",
        s.stdout.lock().unwrap(),
        s.stderr.lock().unwrap()
    );
    for (log, lines) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
        for line in lines.lock().unwrap().iter() {
            assert!(
                !line.starts_with("FORGED") && !line.contains('\r'),
                "{log} has a forged line: {line:?}"
            );
        }
    }
    let stdout = s.stdout.lock().unwrap().join("\n");
    for want in [
        "\"GET /static/x%0aFORGED-1%0d%0a HTTP/1.1\" 404",
        "\"GET /static/x\\x0aFORGED-2\\x0d HTTP/1.1\" 404",
        "\"GET\\x0aFORGED-3 /static/y HTTP/1.1\"",
        "\"a\\x0aFORGED-4\"",
    ] {
        assert!(stdout.contains(want), "{want} not in {stdout}");
    }
    assert!(
        s.stderr_text().contains("POST /api/x\\x0aFORGED-5 from"),
        "{}",
        s.stderr_text()
    );
}

/// Asks for `range` of `/static/hex.txt` by GET and by HEAD and checks the answer: the
/// status, `Content-Range` and body given, a `Content-Length` that frames that body, the
/// file's validators on a success, `no-store` on a 416, and a HEAD that says what GET did.
fn check_range(
    s: &TestServer,
    etag: &str,
    range: &str,
    status: u16,
    content_range: Option<&str>,
    body: &str,
) {
    let header = format!("Range: {range}");
    let r = get_with(s.addr, "/static/hex.txt", &[&header]);
    assert_eq!(r.status, status, "{range}");
    assert_eq!(r.header("content-range"), content_range, "{range}");
    assert_eq!(r.text(), body, "{range}");
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str()),
        "{range}"
    );
    if status != 416 {
        assert_eq!(r.header("etag"), Some(etag), "{range}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{range}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{range}"
        );
    } else {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{range}");
    }
    // HEAD says what GET would: the same status and framing, no body.
    let h = head(s, "/static/hex.txt", &[&header]);
    assert_eq!(h.status, status, "HEAD {range}");
    assert_eq!(h.header("content-range"), content_range, "HEAD {range}");
    assert_eq!(
        h.header("content-length"),
        r.header("content-length"),
        "HEAD {range}"
    );
    assert!(h.body.is_empty());
}

#[test]
fn static_files_answer_one_byte_range() {
    let site = site();
    let s = TestServer::start(&site);
    let whole = s.get("/static/hex.txt");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-range"), None);
    let etag = whole.header("etag").unwrap().to_string();
    // (Range, status, Content-Range, body)
    let cases = [
        ("bytes=0-3", 206, Some("bytes 0-3/16"), "0123"),
        ("bytes=10-", 206, Some("bytes 10-15/16"), "abcdef"),
        ("bytes=-4", 206, Some("bytes 12-15/16"), "cdef"),
        ("bytes=5-5", 206, Some("bytes 5-5/16"), "5"),
        ("bytes=5-100", 206, Some("bytes 5-15/16"), "56789abcdef"),
        ("bytes=-100", 206, Some("bytes 0-15/16"), HEX),
        // Several ranges: the whole file, as nginx sends when it cannot do multipart.
        ("bytes=0-1,4-5", 200, None, HEX),
        ("bytes=5-2", 200, None, HEX),
        ("items=0-3", 200, None, HEX),
        (
            "bytes=16-",
            416,
            Some("bytes */16"),
            "range not satisfiable\n",
        ),
        (
            "bytes=20-30",
            416,
            Some("bytes */16"),
            "range not satisfiable\n",
        ),
        (
            "bytes=-0",
            416,
            Some("bytes */16"),
            "range not satisfiable\n",
        ),
    ];
    for (range, status, content_range, body) in cases {
        check_range(&s, &etag, range, status, content_range, body);
    }
    // A range on a larger file is read from its offset, not from the start.
    let big: String = (0..20_000).map(|i| format!("{i:05}\n")).collect();
    site.write("static/big.txt", &big);
    let r = get_with(s.addr, "/static/big.txt", &["Range: bytes=60000-60011"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "10000\n10001\n");
    // The connection stays usable after a 206: two answers on one socket.
    let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /static/hex.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-3\r\n\r\nGET /static/hex.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(conn);
    assert_eq!(read_response(&mut reader, false).text(), "23");
    assert_eq!(read_response(&mut reader, false).text(), HEX);
}

#[test]
fn if_range_honours_the_range_only_for_the_current_file() {
    let site = site();
    let s = TestServer::start(&site);
    let whole = s.get("/static/hex.txt");
    let etag = whole.header("etag").unwrap().to_string();
    let modified = whole.header("last-modified").unwrap().to_string();
    // (If-Range, status)
    let cases = [
        (etag.clone(), 206),
        (modified.clone(), 206),
        ("\"0000000000000000\"".to_string(), 200),
        (format!("W/{etag}"), 200),
        ("Thu, 01 Jan 2004 00:00:00 GMT".to_string(), 200),
        ("not a validator".to_string(), 200),
    ];
    for (cond, status) in cases {
        let if_range = format!("If-Range: {cond}");
        let r = get_with(s.addr, "/static/hex.txt", &["Range: bytes=1-2", &if_range]);
        assert_eq!(r.status, status, "{cond}");
        assert_eq!(r.text(), if status == 206 { "12" } else { HEX }, "{cond}");
        let h = head(&s, "/static/hex.txt", &["Range: bytes=1-2", &if_range]);
        assert_eq!(h.status, status, "HEAD {cond}");
    }
    // A current copy still gets a 304 first, range or not.
    let inm = format!("If-None-Match: {etag}");
    let r = get_with(s.addr, "/static/hex.txt", &["Range: bytes=1-2", &inm]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    // Once the file changes, the old ETag no longer wins a range.
    std::thread::sleep(Duration::from_millis(1100));
    site.write("static/hex.txt", "FEDCBA9876543210");
    let if_range = format!("If-Range: {etag}");
    let r = get_with(s.addr, "/static/hex.txt", &["Range: bytes=1-2", &if_range]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "FEDCBA9876543210");
}

/// `static/` is also served at the site root for paths no route claims, as Hugo, Zola and
/// Jekyll serve theirs (`/img/x.png` from `static/img/x.png`),
/// with the same refusals as under `/static/`.
#[test]
fn static_files_are_served_at_the_root_where_no_route_claims_the_path() {
    let site = Site::new();
    site.write(
        "static/img/x.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .write("static/.secret/k.txt", "no");
    let s = TestServer::start(&site);
    let r = s.get("/img/x.svg");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert_eq!(s.get("/static/img/x.svg").status, 200);
    for missing in [
        "/img/none.png",
        "/img/",
        "/.secret/k.txt",
        "/img/../../etc/passwd",
    ] {
        assert_eq!(s.get(missing).status, 404, "{missing}");
    }
    let r = request(s.addr, "POST", "/img/x.svg", &[], b"");
    assert_eq!(r.status, 404);
}

/// Regression: a root file whose name has a short link's shape (`/CNAME`, `/keybase`)
/// was taken for a short link and never looked for in `static/`.
#[test]
fn a_root_file_named_like_a_short_link_is_served_from_static() {
    let site = Site::new();
    site.write("static/CNAME", "blog.example\n");
    let s = TestServer::start(&site);
    let r = s.get("/CNAME");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "blog.example\n");
    assert_eq!(s.get("/NOTHERE").status, 404);
}

#[test]
fn a_site_with_only_posts_looks_like_the_example_site() {
    let site = Site::new();
    site.post("2024-01-05-hi.md", "---\ntitle: Hi\n---\nHello.\n");
    let s = TestServer::start(&site);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    for (path, file, ctype) in [
        ("/static/style.css", "style.css", "text/css"),
        ("/static/favicon.svg", "favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "favicon.ico", "image/x-icon"),
        ("/static/favicon.ico", "favicon.ico", "image/x-icon"),
        ("/apple-touch-icon.png", "apple-touch-icon.png", "image/png"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(ctype),
            "{path}"
        );
        assert_eq!(r.body, std::fs::read(repo.join(file)).unwrap(), "{path}");
    }
    // Every page names itself in one <h1>, and a keyboard user can skip the header.
    let home = s.get("/").text();
    assert_eq!(home.matches("<h1").count(), 1, "{home}");
    assert!(home.contains(r##"<a class="skip-link" href="#content">"##));
    assert!(home.contains(r#"<link rel="apple-touch-icon" href="/apple-touch-icon.png">"#));
    // A file in the site's own static/ wins over the built-in one.
    site.write("static/style.css", "body { color: red }");
    assert_eq!(s.get("/static/style.css").text(), "body { color: red }");
}

#[test]
fn nib_init_starts_a_site_that_checks_clean_and_refuses_to_overwrite() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("blog");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run(&["init".as_ref(), dir.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("next:"), "{text}");
    assert!(dir.join("static").is_dir() && dir.join("nib.toml").is_file());
    let db = scratch.path().join("nib.db");
    let (code, text) = run(&[
        "--root".as_ref(),
        dir.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
        "check".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 public posts"), "{text}");
    let (code, text) = run(&["init".as_ref(), dir.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not empty"), "{text}");
}
