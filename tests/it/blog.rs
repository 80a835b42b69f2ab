//! The blog half of the public contract (docs/contract.md), end to end: every route of the real binary over a socket.

use std::time::Duration;

use crate::common::*;

fn example_site() -> Site {
    let site = Site::new();
    site.post(
        "2026-01-02-hello.md",
        "---\ntitle: Hello <World>\ntags: [Rust, web]\n---\nFirst para with **bold**.\n\n<!-- more -->\n\n## Section\n\nMore text.\n",
    )
    .post("2026-02-03-second.md", "# Second post\n\nBody of the second post.\n")
    .post("2026-03-04-toml.md", "+++\ntitle = \"Toml post\"\ntags = [\"rust\"]\nupdated = 2026-03-05\n+++\nToml body.\n")
    .post("secret.md", "---\ntitle: Secret draft\ntags: [hidden]\ndraft: true\n---\nsecret words\n")
    .post("broken.md", "---\ntitle: [unclosed\n---\nbroken\n")
    .post(".#lock.md", "leftover")
    .post("notes.md~", "leftover")
    .write("static/style.css", "body { color: black }\n")
    .write("static/img/a.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    site
}

#[test]
fn every_blog_route_answers() {
    let site = example_site();
    let s = TestServer::start(&site);
    // (path, status, content type prefix, a string the body contains)
    let cases: &[(&str, u16, &str, &str)] = &[
        (
            "/",
            200,
            "text/html; charset=utf-8",
            "Hello &#60;World&#62;",
        ),
        (
            "/posts/hello/",
            200,
            "text/html; charset=utf-8",
            "<h2 id=\"section\">Section</h2>",
        ),
        (
            "/posts/second/",
            200,
            "text/html; charset=utf-8",
            "Second post",
        ),
        ("/tags/", 200, "text/html; charset=utf-8", "/tags/rust/"),
        ("/tags/rust/", 200, "text/html; charset=utf-8", "Toml post"),
        ("/feed.xml", 200, "application/atom+xml", "<feed"),
        ("/rss.xml", 200, "application/rss+xml", "<rss"),
        (
            "/sitemap.xml",
            200,
            "application/xml",
            "/posts/hello/</loc>",
        ),
        ("/robots.txt", 200, "text/plain", "Sitemap: http://"),
        ("/static/style.css", 200, "text/css", "color: black"),
        ("/static/img/a.svg", 200, "image/svg+xml", "<svg"),
        ("/healthz", 200, "text/plain", "ok"),
        ("/nope/", 404, "text/html; charset=utf-8", "Not found"),
        ("/page/9/", 404, "text/html", "Not found"),
        ("/tags/nope/", 404, "text/html", "Not found"),
        ("/static/../nib.db", 404, "text/html", "Not found"),
        ("/static/%2e%2e/nib.db", 404, "text/html", "Not found"),
        ("/static/.hidden", 404, "text/html", "Not found"),
    ];
    for (path, status, ctype, needle) in cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}");
        assert!(
            r.header("content-type").unwrap_or("").starts_with(ctype),
            "{path}: {:?}",
            r.header("content-type")
        );
        assert!(
            r.text().contains(needle),
            "{path} lacks {needle:?}:\n{}",
            r.text()
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let r = s.get("/posts/hello");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/posts/hello/"))
    );
    let r = s.get("/page/1/");
    assert_eq!((r.status, r.header("location")), (301, Some("/")));
}

#[test]
fn drafts_and_broken_posts_never_leak() {
    let site = example_site();
    let s = TestServer::start(&site);
    for path in [
        "/",
        "/tags/",
        "/feed.xml",
        "/rss.xml",
        "/sitemap.xml",
        "/tags/rust/",
    ] {
        let body = s.get(path).text();
        for secret in ["Secret draft", "secret words", "hidden", "broken"] {
            assert!(!body.contains(secret), "{path} leaks {secret:?}");
        }
    }
    assert_eq!(s.get("/posts/secret/").status, 404);
    assert_eq!(s.get("/tags/hidden/").status, 404);
    assert_eq!(s.get("/posts/broken/").status, 404);
    // One line naming the broken file and the problem; leftovers are not even looked at.
    assert_one_log_line(&s, "broken.md", "YAML");
    let log = s.stderr_text();
    assert!(
        !log.contains("lock.md") && !log.contains("notes.md~"),
        "{log}"
    );
}

#[test]
fn posts_added_edited_and_removed_show_within_two_seconds() {
    let site = example_site();
    let s = TestServer::start(&site);
    let within = Duration::from_millis(2500);
    site.post("2026-05-01-fresh.md", "# Fresh\n\nJust written.\n");
    assert!(
        eventually(within, || s.get("/posts/fresh/").status == 200),
        "added post not served"
    );
    assert!(s.get("/").text().contains("Fresh"));
    site.post("2026-05-01-fresh.md", "# Fresh, edited\n\nRewritten.\n");
    assert!(
        eventually(within, || s
            .get("/posts/fresh/")
            .text()
            .contains("Rewritten")),
        "edit not served"
    );
    site.remove("posts/2026-05-01-fresh.md");
    assert!(
        eventually(within, || s.get("/posts/fresh/").status == 404),
        "removed post still served"
    );
    assert!(!s.get("/").text().contains("Fresh"));
    // A broken edit takes the post down and logs; fixing it brings it back.
    site.post("2026-02-03-second.md", "---\ntitle: [oops\n---\n");
    assert!(eventually(within, || s.get("/posts/second/").status == 404));
    site.post("2026-02-03-second.md", "# Second post\n\nFixed.\n");
    assert!(eventually(within, || s
        .get("/posts/second/")
        .text()
        .contains("Fixed")));
}

#[test]
fn conditional_requests_and_head() {
    let site = example_site();
    let s = TestServer::start(&site);
    for path in [
        "/",
        "/posts/hello/",
        "/tags/",
        "/tags/rust/",
        "/feed.xml",
        "/rss.xml",
        "/sitemap.xml",
        "/static/style.css",
        "/robots.txt",
    ] {
        let r = s.get(path);
        let etag = r
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no etag"))
            .to_string();
        assert!(etag.starts_with('"'), "{path}: strong etag {etag}");
        let lm = r
            .header("last-modified")
            .expect("last-modified")
            .to_string();
        assert!(r.header("cache-control").is_some(), "{path}");
        let inm = get_with(s.addr, path, &[&format!("If-None-Match: {etag}")]);
        assert_eq!(inm.status, 304, "{path} If-None-Match");
        assert!(inm.body.is_empty());
        assert_eq!(inm.header("etag"), Some(etag.as_str()));
        let ims = get_with(s.addr, path, &[&format!("If-Modified-Since: {lm}")]);
        assert_eq!(ims.status, 304, "{path} If-Modified-Since");
        let stale = get_with(s.addr, path, &["If-None-Match: \"other\""]);
        assert_eq!(stale.status, 200, "{path} stale etag");
        let head = raw(
            s.addr,
            &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(head.status, 200, "{path} HEAD");
        assert_eq!(head.header("etag"), Some(etag.as_str()), "{path} HEAD etag");
    }
    // A change to the site moves list pages' validators.
    let before = s.get("/").header("etag").unwrap().to_string();
    site.post("2026-06-01-newer.md", "# Newer\n\nx\n");
    assert!(eventually(Duration::from_millis(2500), || s
        .get("/")
        .header("etag")
        != Some(before.as_str())));
}

#[test]
fn wrong_methods_are_refused() {
    let site = example_site();
    let s = TestServer::start(&site);
    let r = raw(
        s.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
}

#[test]
fn feeds_parse_and_carry_full_content() {
    let site = example_site();
    let s = TestServer::start_with(&site, &[], &[("NIB_BASE_URL", "https://blog.example/")]);
    let atom = feed_rs::parser::parse(&s.get("/feed.xml").body[..]).expect("atom parses");
    assert_eq!(atom.entries.len(), 3);
    let first = &atom.entries[0];
    assert_eq!(first.title.as_ref().unwrap().content, "Toml post");
    assert_eq!(first.links[0].href, "https://blog.example/posts/toml/");
    assert!(
        first
            .content
            .as_ref()
            .unwrap()
            .body
            .as_ref()
            .unwrap()
            .contains("Toml body")
    );
    let hello = atom
        .entries
        .iter()
        .find(|e| e.links[0].href.ends_with("/hello/"))
        .unwrap();
    // Full content, not only the summary.
    assert!(
        hello
            .content
            .as_ref()
            .unwrap()
            .body
            .as_ref()
            .unwrap()
            .contains("More text")
    );
    let rss = feed_rs::parser::parse(&s.get("/rss.xml").body[..]).expect("rss parses");
    assert_eq!(rss.entries.len(), 3);
    assert_eq!(
        rss.entries[0].links[0].href,
        "https://blog.example/posts/toml/"
    );
    // Autodiscovery links on pages.
    let page = s.get("/").text();
    assert!(page.contains("rel=\"alternate\" type=\"application/atom+xml\""));
    assert!(page.contains("href=\"https://blog.example/feed.xml\""));
}

#[test]
fn tag_feeds_and_the_json_feed_carry_full_posts_and_are_advertised() {
    let site = example_site();
    let s = TestServer::start_with(&site, &[], &[("NIB_BASE_URL", "https://blog.example/")]);
    let r = s.get("/feed.json");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/feed+json")
    );
    let json = feed_rs::parser::parse(&r.body[..]).expect("JSON Feed parses");
    assert_eq!(json.entries.len(), 3);
    assert_eq!(json.entries[0].id, "https://blog.example/posts/toml/");
    let text = r.text();
    assert!(
        text.contains(r#""version":"https://jsonfeed.org/version/1.1""#),
        "{text}"
    );
    assert!(text.contains("More text"), "full content: {text}");
    // A tag's feed holds that tag's posts only, in Atom, and points at the tag's page.
    let r = s.get("/tags/rust/feed.xml");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/atom+xml")
    );
    let atom = feed_rs::parser::parse(&r.body[..]).expect("tag feed parses");
    let mut links: Vec<_> = atom
        .entries
        .iter()
        .map(|e| e.links[0].href.clone())
        .collect();
    links.sort();
    assert_eq!(
        links,
        [
            "https://blog.example/posts/hello/",
            "https://blog.example/posts/toml/"
        ]
    );
    let title = atom.title.unwrap().content;
    assert!(title.to_lowercase().ends_with(" · #rust"), "{title}");
    assert!(
        r.text()
            .contains(r#"href="https://blog.example/tags/rust/feed.xml""#)
    );
    assert_eq!(
        s.get("/tags/hidden/feed.xml").status,
        404,
        "a draft's tag has no feed"
    );
    assert_eq!(s.get("/tags/nothing/feed.xml").status, 404);
    // Every page advertises the site's feeds; a tag page also its own.
    let home = s.get("/").text();
    assert!(home.contains(r#"type="application/feed+json""#), "{home}");
    assert!(!home.contains("/tags/rust/feed.xml"));
    let tag = s.get("/tags/rust/").text();
    assert!(tag.contains(r#"<link rel="alternate" type="application/atom+xml" title="#));
    assert!(
        tag.contains(r#"href="https://blog.example/tags/rust/feed.xml">"#),
        "{tag}"
    );
}

#[test]
fn feed_updated_only_moves_when_content_changes() {
    let site = example_site();
    let s = TestServer::start(&site);
    let updated = |s: &TestServer| {
        let t = s.get("/feed.xml").text();
        t.split("<updated>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_string()
    };
    let before = updated(&s);
    // Touching a file (same content) does not move it.
    std::thread::sleep(Duration::from_millis(20));
    site.post(
        "2026-01-02-hello.md",
        &std::fs::read_to_string(site.path().join("posts/2026-01-02-hello.md")).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(updated(&s), before);
}

#[test]
fn static_robots_txt_wins() {
    let site = example_site();
    site.write("static/robots.txt", "User-agent: *\nDisallow: /\n");
    let s = TestServer::start(&site);
    assert_eq!(s.get("/robots.txt").text(), "User-agent: *\nDisallow: /\n");
}

#[test]
fn pagination_links_older_and_newer() {
    let site = Site::new();
    for i in 1..=12 {
        site.post(
            &format!("2026-01-{i:02}-p{i}.md"),
            &format!("# Post {i}\n\nbody {i}\n"),
        );
    }
    site.write("nib.toml", "per_page = 5\n");
    let s = TestServer::start(&site);
    let first = s.get("/").text();
    assert!(
        first.contains("Post 12") && !first.contains("Post 7<"),
        "{first}"
    );
    assert!(first.contains("href=\"/page/2/\""));
    let second = s.get("/page/2/").text();
    assert!(
        second.contains("Post 7")
            && second.contains("href=\"/\"")
            && second.contains("href=\"/page/3/\"")
    );
    assert_eq!(s.get("/page/3/").status, 200);
    assert_eq!(s.get("/page/4/").status, 404);
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let site = example_site();
    site.post("dup.md", "---\nslug: hello\n---\nsame slug as hello\n");
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken.md") && out.contains("YAML"), "{out}");
    // A duplicate slug is no problem now: both are published, and both files are named.
    assert!(
        out.lines()
            .any(|l| l.contains("dup.md: published as /posts/")
                && l.contains("-hello/")
                && l.contains("also used by 2026-01-02-hello.md")),
        "{out}"
    );
    assert!(out.contains("secret.md: not published: a draft"), "{out}");
    let clean = Site::new();
    clean.post("a.md", "# A\n\nfine\n");
    let (code, out, _) = nib(&clean, &["check"], &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn bad_config_stops_start_up_naming_the_key() {
    let site = example_site();
    site.write("nib.toml", "title = 'x'\nper_paeg = 3\n");
    let (code, _, err) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("per_paeg"), "{err}");
    let (code, _, err) = nib(&site, &["serve", "--listen", "127.0.0.1:0"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("per_paeg"), "{err}");
}

#[test]
fn new_creates_a_dated_post() {
    let site = Site::new();
    let (code, out, err) = nib(&site, &["new", "Hello, New World"], &[]);
    assert_eq!(code, 0, "{err}");
    let path = out.trim();
    assert!(path.ends_with("-hello-new-world.md"), "{path}");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("title: \"Hello, New World\""), "{text}");
    // Twice is an error, not an overwrite.
    let (code, _, _) = nib(&site, &["new", "Hello, New World"], &[]);
    assert_ne!(code, 0);
}

#[test]
fn odd_paths_answer_404_not_500() {
    // Regression: `/static` without a slash sliced past the path's end, and a huge page
    // number overflowed the offset.
    let site = example_site();
    let s = TestServer::start(&site);
    for path in [
        "/static",
        "/page/18446744073709551615/",
        "/tags/rust/page/9223372036854775807/",
        "/page/0/",
        "/sign%+A",
    ] {
        let r = s.get(path);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
    }
}

#[test]
fn a_get_with_an_unsent_body_does_not_stall_others() {
    // Regression: tiny_http drains an unread body after the answer, on the loop thread; a
    // client that declared 60 KB and sent nothing held every other request.
    let site = example_site();
    let s = TestServer::start(&site);
    let mut slow = std::net::TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(
        &mut slow,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    assert_eq!(s.get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(slow);
}

/// Regression: tiny_http drops a `Connection: close` header, so an answer to a client that
/// asked to close (or spoke HTTP/1.0) did not say so; wrk took every such connection for
/// a persistent one and counted a read error per request. nib now writes its answers and
/// says how each connection ends; the connection then ends that way.
#[test]
fn answers_say_how_the_connection_ends() {
    use std::io::{BufReader, Read, Write};
    let site = example_site();
    let s = TestServer::start(&site);
    // Sends `request` on a new connection, reads one answer, and tells whether the server
    // then closed the connection (end of file within 3 s).
    let exchange = |request: &str| {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut r = BufReader::new(c);
        let resp = read_response(&mut r, request.starts_with("HEAD "));
        let mut rest = Vec::new();
        let closed = r.read_to_end(&mut rest).is_ok() && rest.is_empty();
        (resp, closed, r)
    };
    let cases = [
        (
            "GET /posts/hello/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Some("close"),
            true,
        ),
        ("GET /posts/hello/ HTTP/1.0\r\n\r\n", Some("close"), true),
        (
            "HEAD /feed.xml HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Some("close"),
            true,
        ),
        (
            "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Some("close"),
            true,
        ),
        // HTTP/1.0 has no chunks: a streamed body ends when the connection does.
        ("GET /feed.xml HTTP/1.0\r\n\r\n", Some("close"), true),
        (
            "GET /feed.xml HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Some("close"),
            true,
        ),
    ];
    for (request, connection, closes) in cases {
        let (resp, closed, _) = exchange(request);
        assert!(
            resp.status == 200 || resp.status == 404,
            "{request:?}: {}",
            resp.status
        );
        assert_eq!(resp.header("connection"), connection, "{request:?}");
        assert_eq!(closed, closes, "{request:?}");
        if request.starts_with("GET /feed.xml") {
            assert!(resp.text().trim_end().ends_with("</feed>"), "{request:?}");
        }
    }

    // An HTTP/1.0 client that asks to keep the connection is told so and can send more.
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for path in ["/posts/hello/", "/tags/"] {
        write!(c, "GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("connection"), Some("keep-alive"), "{path}");
    }
    // HTTP/1.1 keeps the connection without a word, and streams in chunks.
    write!(c, "GET /feed.xml HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let resp = read_response(&mut r, false);
    assert_eq!(resp.header("connection"), None);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert!(resp.text().trim_end().ends_with("</feed>"));
}

/// The page cache must answer each page with its own bytes: pages asked for in turn come
/// back whole and each with its own content, the same bytes as when first rendered, and a
/// HEAD from the cache announces the same length.
#[test]
fn pages_from_the_cache_are_each_their_own() {
    let site = example_site();
    let s = TestServer::start(&site);
    let pages = [
        ("/posts/hello/", "Hello &#60;World&#62;"),
        ("/posts/second/", "Body of the second post"),
        ("/posts/toml/", "Toml body"),
        ("/", "Second post"),
        ("/tags/", "rust"),
        ("/tags/rust/", "Toml post"),
    ];
    let first: Vec<Vec<u8>> = pages.iter().map(|(p, _)| s.get(p).body).collect();
    for round in 0..3 {
        for ((path, own), rendered) in pages.iter().zip(&first) {
            let r = s.get(path);
            assert_eq!(r.status, 200, "{path} round {round}");
            assert!(r.text().contains(own), "{path} round {round}");
            assert!(&r.body == rendered, "{path} round {round}: bytes differ");
            let head = raw(
                s.addr,
                &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            );
            assert_eq!(
                head.header("content-length"),
                Some(rendered.len().to_string().as_str()),
                "{path} HEAD"
            );
        }
    }
    // A query string does not make another page.
    assert!(s.get("/posts/hello/?from=feed").body == first[0]);
}

#[test]
fn access_log_lines_are_combined_format_with_client_fields_escaped() {
    let site = example_site();
    let s = TestServer::start(&site);
    let r = get_with(
        s.addr,
        "/posts/hello/?q=1",
        &["Referer: http://x/\"quoted\"", "User-Agent: back\\slash"],
    );
    let want = format!(
        "\"GET /posts/hello/?q=1 HTTP/1.1\" 200 {} \"http://x/\\\"quoted\\\"\" \"back\\\\slash\"",
        r.body.len()
    );
    let logged = || {
        s.stdout
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("/posts/hello/?q=1"))
            .cloned()
    };
    // Lines are written in batches, the oldest within a quarter second or so.
    assert!(
        eventually(Duration::from_secs(2), || logged().is_some()),
        "no access log line"
    );
    let line = logged().unwrap();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains(" +0000] "), "{line}");
    assert!(line.ends_with(&want), "{line}\nwant the end: {want}");
}

/// `nib build` on the live database can index an edit before the server's own check does;
/// the server then finds every file up to date, and once kept the old page in its page
/// cache. The edit must show all the same.
#[test]
fn an_edit_indexed_first_by_another_nib_still_shows() {
    let site = example_site();
    let s = TestServer::start(&site);
    assert!(
        s.get("/posts/second/")
            .text()
            .contains("Body of the second post")
    );
    site.post(
        "2026-02-03-second.md",
        "# Second post\n\nIndexed by a build.\n",
    );
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = nib(
        &site,
        &["build", "--out", &out.path().display().to_string()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        eventually(Duration::from_millis(2500), || s
            .get("/posts/second/")
            .text()
            .contains("Indexed by a build")),
        "the old page is still served"
    );
}

/// Regression: `nib check` accepted a post dated `9999-12-31T20:00:00-05:00` (year 10000 in
/// UTC); `/` then answered 500 and `/feed.xml` panicked in httpdate and killed the server.
#[test]
fn a_post_dated_year_9999_does_not_crash_the_feed() {
    let site = example_site();
    site.post(
        "far.md",
        "---\ntitle: Far future\ndate: 9999-12-31T20:00:00-05:00\n---\nlater\n",
    );
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("far.md") && l.contains("outside the years 1 to 9998")),
        "{out}"
    );
    let mut s = TestServer::start(&site);
    for path in [
        "/",
        "/feed.xml",
        "/rss.xml",
        "/sitemap.xml",
        "/posts/hello/",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.text().contains("Far future"), "{path} shows the post");
    }
    assert_eq!(s.get("/posts/far/").status, 404);
    assert_eq!(s.wait_exit(Duration::from_millis(100)), None, "nib died");
    assert_one_log_line(&s, "far.md", "outside the years");
}

/// Regression: YAML front matter nested 100,000 deep (200 KB) held the loop for 58 s and
/// was accepted. It is refused before any parser sees it, with one log line.
#[test]
fn front_matter_nested_100k_deep_is_skipped_with_a_log_line() {
    let site = example_site();
    let deep = format!(
        "---\ntitle: Deep\nx: {}1{}\n---\ndeep body\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    site.post("deep.md", &deep);
    let s = TestServer::start(&site);
    assert_eq!(s.get("/posts/deep/").status, 404);
    assert_eq!(s.get("/posts/hello/").status, 200);
    assert_one_log_line(&s, "deep.md", "nests deeper than 64");
    // Written while serving, it is skipped as quickly (posts are checked before requests).
    site.post("deep2.md", &deep);
    assert!(
        eventually(Duration::from_millis(2500), || {
            s.get("/");
            s.stderr_text()
                .contains("deep2.md: front matter nests deeper than 64")
        }),
        "{}",
        s.stderr_text()
    );
    assert_eq!(s.get("/").status, 200);
}

/// Regression: a 1.3 MB post peaked at 48 times its size in memory while indexed, and
/// nothing stopped a larger one. A post over `max_post_kb` is skipped, unread, with one
/// log line naming it.
#[test]
fn a_post_over_max_post_kb_is_skipped_with_a_log_line() {
    let site = example_site();
    site.write("nib.toml", "max_post_kb = 8\n");
    site.post("big.md", &format!("# Big\n\n{}\n", "word ".repeat(2000)));
    site.post("fits.md", &format!("# Fits\n\n{}\n", "word ".repeat(1500)));
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("big.md: 10 KB is over max_post_kb = 8")),
        "{out}"
    );
    let s = TestServer::start(&site);
    assert_eq!(s.get("/posts/big/").status, 404);
    assert_eq!(s.get("/posts/fits/").status, 200);
    assert_one_log_line(&s, "big.md", "over max_post_kb = 8");
}

/// Regression: one paragraph of 480,000 one-letter lines (937 KB, under `max_post_kb`)
/// took 51 MB to index, since the parser builds its tree of a whole block before its first
/// event. Such a block is now measured before it is parsed: the post is skipped with one
/// log line, and indexing it costs less than three times its size.
#[test]
fn a_post_too_costly_to_parse_is_skipped_within_three_times_its_size() {
    let site = example_site();
    let body = "a\n".repeat(480_000);
    let (s, grew) = start_with_heavy_post(
        &site,
        "dense.md",
        &format!("---\ntitle: Dense\n---\n{body}"),
    );
    assert_eq!(s.get("/posts/dense/").status, 404);
    assert_eq!(s.get("/").status, 200);
    assert_one_log_line(&s, "dense.md", "parse as one piece");
    let kb = body.len() as u64 / 1024;
    assert!(grew < 3 * kb, "VmHWM grew {grew} KB for a post of {kb} KB");
    let (_, out, _) = nib(&site, &["check"], &[]);
    assert!(
        out.lines()
            .any(|l| l.contains("dense.md: 938 KB of it parse as one piece, taking about")),
        "{out}"
    );
}

/// Starts nib on `site` with one more post, `FILE` holding `text`, and returns
/// the server (once it answers) and how much more memory its start took (VmHWM, KB) than
/// a start without that post.
fn start_with_heavy_post(site: &Site, file: &str, text: &str) -> (TestServer, u64) {
    let before = TestServer::start(site);
    let baseline = vm_kb(before.pid(), "VmHWM");
    drop(before);
    site.post(file, text);
    let s = TestServer::start(site);
    let hwm = vm_kb(s.pid(), "VmHWM");
    (s, hwm.saturating_sub(baseline))
}

/// Regression: a post's page was held whole while it was rendered and stored, beside the
/// post's text, and SQLite copied it twice more: 880 KB of prose took 3.4 times its size
/// to index, and a post of highlighted code (whose page is three to four times its size)
/// more. A long page now goes to the database in parts as it is written. The post is
/// served whole, and indexing it costs less than three times its size.
#[test]
fn a_long_post_of_highlighted_code_is_indexed_within_three_times_its_size() {
    let block = format!(
        "```rust\n{}```\n\n",
        (0..100)
            .map(|i| format!("let x{i} = foo(bar, \"baz\"); // a comment here\n"))
            .collect::<String>()
    );
    let body: String = (0..180)
        .map(|i| format!("Step {i} of the tutorial.\n\n{block}"))
        .collect();
    let (s, grew) = start_with_heavy_post(
        &example_site(),
        "code.md",
        &format!("---\ntitle: Code\n---\n{body}"),
    );
    let page = s.get("/posts/code/");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("<p>Step 0 of the tutorial.</p>"));
    assert!(html.contains("<p>Step 179 of the tutorial.</p>"));
    assert_eq!(
        html.matches(r#"<span class="hl-c">// a comment here</span>"#)
            .count(),
        18_000
    );
    assert!(html.trim_end().ends_with("</html>"));
    // The front page shows its first paragraph, cut from the page's kept beginning.
    assert!(s.get("/").text().contains("Step 0 of the tutorial."));
    let kb = body.len() as u64 / 1024;
    assert!(grew < 3 * kb, "VmHWM grew {grew} KB for a post of {kb} KB");
}

/// Regression: a table is one block, which the parser takes whole: a post with a table
/// of 30,000 rows (480 KB) would have taken 11 MB to index, and was refused for it. A
/// long table is now cut between rows; the post is published, within three times its
/// size.
#[test]
fn a_post_with_a_table_of_30000_rows_is_published_within_three_times_its_size() {
    let rows: String = (0..30_000).map(|i| format!("| {i} | x | y |\n")).collect();
    let body = format!("Results.\n\n| n | a | b |\n|---|---|---|\n{rows}");
    let (s, grew) = start_with_heavy_post(
        &example_site(),
        "table.md",
        &format!("---\ntitle: Table\n---\n{body}"),
    );
    let html = s.get("/posts/table/").text();
    assert_eq!(html.matches("<table>").count(), 1);
    assert_eq!(html.matches("<tr>").count(), 30_001);
    assert!(html.contains("<tr><td>29999</td><td>x</td><td>y</td></tr>"));
    assert!(!s.stderr_text().contains("table.md"), "{}", s.stderr_text());
    let kb = body.len() as u64 / 1024;
    assert!(grew < 3 * kb, "VmHWM grew {grew} KB for a post of {kb} KB");
}

/// A post as Jekyll writes it, copied unchanged: `.markdown`, a date with an offset
/// without a colon, space-separated tags and categories; beside it a Zola section file and
/// an unpublished post, which are no posts.
#[test]
fn a_jekyll_post_shows_as_it_was_written() {
    let site = example_site();
    site.post(
        "2015-10-26-moving-in.markdown",
        "---\nlayout: post\ntitle: Moving in\ndate: 2015-10-26 15:37:30 -0700\ntags: jekyll release\ncategories: news\n---\nHello from Jekyll.\n",
    );
    site.post(
        "_index.md",
        "+++\ntitle = \"Blog\"\nsort_by = \"date\"\n+++\n",
    );
    site.post(
        "2015-10-27-hidden.md",
        "---\ntitle: Not yet\npublished: false\n---\nhidden\n",
    );
    // Only the example site's own broken post is a problem; the section file is no post,
    // and says so.
    let (_, out, _) = nib(&site, &["check"], &[]);
    assert!(out.contains("4 public posts, 1 with problems"), "{out}");
    assert!(!out.contains("moving-in"), "{out}");
    assert!(
        out.contains("_index.md: not published: a section file"),
        "{out}"
    );
    let s = TestServer::start(&site);
    let post = s.get("/posts/moving-in/");
    assert_eq!(post.status, 200);
    assert!(post.text().contains("Hello from Jekyll."));
    for tag in ["jekyll", "release", "news"] {
        let page = s.get(&format!("/tags/{tag}/"));
        assert_eq!(page.status, 200, "{tag}");
        assert!(page.text().contains("Moving in"), "{tag}");
    }
    assert_eq!(s.get("/posts/_index/").status, 404);
    assert_eq!(s.get("/posts/hidden/").status, 404);
    let index = s.get("/").text();
    assert!(
        !index.contains("Not yet") && !index.contains(">Blog<"),
        "{index}"
    );
}

/// The server logged exactly one line naming `file`, and it says `problem`.
fn assert_one_log_line(s: &TestServer, file: &str, problem: &str) {
    let log = s.stderr_text();
    let lines: Vec<_> = log.lines().filter(|l| l.contains(file)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(problem), "{log}");
}

#[test]
fn nav_and_footer_links_come_from_nib_toml() {
    let site = example_site();
    site.write(
        "nib.toml",
        "title = \"T\"\n[[nav]]\ntitle = \"Home\"\nurl = \"/\"\n[[nav]]\ntitle = \"About me\"\nurl = \"/about/\"\n[[footer]]\ntitle = \"Code\"\nurl = \"https://code.example/?a=1&b=2\"\n",
    );
    let s = TestServer::start(&site);
    for path in ["/", "/posts/hello/", "/tags/", "/no-such-page"] {
        let page = s.get(path).text();
        let nav = &page[page.find("<nav class=\"site-nav\"").expect(path)..];
        let nav = &nav[..nav.find("</nav>").unwrap()];
        assert!(
            nav.contains(r#"<a href="/about/">About me</a>"#),
            "{path}: {nav}"
        );
        assert!(
            !nav.contains("/tags/"),
            "the default links are replaced: {nav}"
        );
        assert!(
            page.contains(r#"<a href="https://code.example/?a=1&#38;b=2">Code</a>"#),
            "{path}: {page}"
        );
    }
    // A link that is neither a path nor a web address stops nib before it serves.
    site.write(
        "nib.toml",
        "[[nav]]\ntitle = \"x\"\nurl = \"javascript:alert(1)\"\n",
    );
    let (code, _, err) = nib(&site, &["check"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("nav: link 1: url"), "{err}");
}

/// The `<meta>` tags of a page's head, as (property or name, content).
fn head_meta(page: &str) -> Vec<(String, String)> {
    let head = &page[..page.find("</head>").expect("a head")];
    head.split("<meta ")
        .skip(1)
        .filter_map(|tag| {
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
                Some(tag[at..at + tag[at..].find('"')?].to_string())
            };
            Some((attr("property").or_else(|| attr("name"))?, attr("content")?))
        })
        .collect()
}

#[test]
fn link_previews_carry_the_site_name_an_absolute_image_and_a_card() {
    let site = Site::new();
    site.write(
        "nib.toml",
        "title = \"Lamp\"\nbase_url = \"https://blog.example\"\nimage = \"/static/card.png\"\n",
    )
    .post(
        "2026-01-02-pictured.md",
        "---\ntitle: Pictured\ncover:\n  image: dusk.jpg\n---\nText.\n",
    )
    .post(
        "2026-01-03-inline.md",
        "---\ntitle: Inline\n---\nSee ![the lamp](/img/lamp.png).\n",
    )
    .post(
        "2026-01-04-plain.md",
        "---\ntitle: Plain\ndescription: Words only.\n---\nText.\n",
    );
    let s = TestServer::start(&site);
    let card = |path: &str| {
        let meta = head_meta(&s.get(path).text());
        let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        (
            get("og:site_name"),
            get("og:image"),
            get("twitter:card"),
            get("og:url"),
        )
    };
    let (name, image, kind, url) = card("/posts/pictured/");
    assert_eq!(name.as_deref(), Some("Lamp"));
    assert_eq!(
        image.as_deref(),
        Some("https://blog.example/posts/pictured/dusk.jpg")
    );
    assert_eq!(kind.as_deref(), Some("summary_large_image"));
    assert_eq!(url.as_deref(), Some("https://blog.example/posts/pictured/"));
    let (_, image, _, _) = card("/posts/inline/");
    assert_eq!(
        image.as_deref(),
        Some("https://blog.example/img/lamp.png"),
        "the first picture"
    );
    // No picture of its own: the site's default, as on the other pages.
    for path in ["/posts/plain/", "/", "/tags/"] {
        let (name, image, kind, _) = card(path);
        assert_eq!(name.as_deref(), Some("Lamp"), "{path}");
        assert_eq!(
            image.as_deref(),
            Some("https://blog.example/static/card.png"),
            "{path}"
        );
        assert_eq!(kind.as_deref(), Some("summary_large_image"), "{path}");
    }
    // Without a default, a post without a picture is a small card.
    site.write(
        "nib.toml",
        "title = \"Lamp\"\nbase_url = \"https://blog.example\"\n",
    );
    let s2 = TestServer::start(&site);
    let meta = head_meta(&s2.get("/posts/plain/").text());
    assert!(
        meta.contains(&("twitter:card".into(), "summary".into())),
        "{meta:?}"
    );
    assert!(!meta.iter().any(|(n, _)| n == "og:image"), "{meta:?}");
}
