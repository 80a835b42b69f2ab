//! A blog moved in from Jekyll, Hugo or Zola as it is, end to
//! end against the real binary: the day shown is the day written, scheduled posts appear
//! and expire on their own, old URLs answer 301, `C++` and `c` are two tags, and
//! `nib check` names what it could not carry over. The site is `tests/fixtures/migrate/`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// A scratch copy of `tests/fixtures/migrate` (its `nib.toml` and `posts/`).
fn migrated_site() -> Site {
    let site = Site::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate");
    site.write(
        "nib.toml",
        &std::fs::read_to_string(fixtures.join("nib.toml")).unwrap(),
    );
    for entry in std::fs::read_dir(fixtures.join("posts")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        site.post(&name, &std::fs::read_to_string(entry.path()).unwrap());
    }
    site
}

/// `ts` (Unix seconds) as `2026-12-02T04:30:00Z`.
fn rfc3339(ts: i64) -> String {
    // Howard Hinnant's civil_from_days, as nib's dates.rs has it.
    let z = ts.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    let s = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Regression: `2013-09-06 22:02:41 -0400` showed "7 September 2013", the UTC day.
#[test]
fn the_day_shown_is_the_day_written() {
    let site = migrated_site();
    let s = TestServer::start(&site);
    // (post, day shown, <time datetime>)
    let cases = [
        (
            "/posts/late-night/",
            "6 September 2013",
            "2013-09-06T22:02:41-04:00",
        ),
        // No offset written: the site's timezone (+09:00), still 4 January in UTC.
        (
            "/posts/tokyo/",
            "5 January 2024",
            "2024-01-05T07:30:00+09:00",
        ),
        // Only Zola's path carries the date.
        (
            "/posts/zola-news/",
            "7 April 2022",
            "2022-04-07T00:00:00+09:00",
        ),
    ];
    for (path, day, iso) in cases {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        let page = r.text();
        assert!(
            page.contains(&format!("<time datetime=\"{iso}\">{day}</time>")),
            "{path}: {page}"
        );
    }
    let front = s.get("/").text();
    assert!(front.contains("6 September 2013"), "{front}");
    // The feed keeps the instant, written as the author wrote it.
    let feed = s.get("/feed.xml").text();
    assert!(
        feed.contains("<published>2013-09-06T22:02:41-04:00</published>"),
        "{feed}"
    );
    let rss = s.get("/rss.xml").text();
    assert!(rss.contains("Sat, 07 Sep 2013 02:02:41 GMT"), "{rss}");
}

/// A changed `timezone` moves the dates written without an offset, though no post changed.
#[test]
fn a_new_timezone_rereads_the_posts() {
    let site = migrated_site();
    let iso = |s: &TestServer| {
        let page = s.get("/posts/tokyo/").text();
        let at = page.find("<time datetime=\"").expect("a time element") + 16;
        page[at..at + 25].split('"').next().unwrap().to_string()
    };
    {
        let s = TestServer::start(&site);
        assert_eq!(iso(&s), "2024-01-05T07:30:00+09:00");
    }
    {
        site.write("nib.toml", "timezone = \"-05:00\"\n");
        let s = TestServer::start(&site);
        assert_eq!(iso(&s), "2024-01-05T07:30:00-05:00");
    }
    // A zone name, when the system has the tz database: Berlin is +01:00 in January.
    if Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file() {
        site.write("nib.toml", "timezone = \"Europe/Berlin\"\n");
        let s = TestServer::start(&site);
        assert_eq!(iso(&s), "2024-01-05T07:30:00+01:00");
    }
}

#[test]
fn an_unknown_timezone_stops_start_up_naming_the_key() {
    let site = Site::new();
    site.write("nib.toml", "timezone = \"Mars/Olympus_Mons\"\n");
    let (code, _, err) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("timezone"), "{err}");
    site.write("nib.toml", "old_permalinks = \"/:year/:month/\"\n");
    let (code, _, err) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("old_permalinks"), "{err}");
}

/// A post dated a few seconds ahead is nowhere until its time, then everywhere, with no
/// file change and no restart; a post with an `expiryDate` a few seconds ahead goes.
#[test]
fn a_future_post_appears_and_an_expiring_one_goes_on_their_own() {
    let site = Site::new();
    let at = now() + 5;
    site.post(
        "future.md",
        &format!(
            "---\ntitle: From the future\ndate: {}\ntags: [soon]\n---\nNot yet.\n",
            rfc3339(at)
        ),
    )
    .post(
        "later.md",
        &format!(
            "+++\ntitle = \"Published later\"\ndate = 2020-01-01\npublishDate = {}\n+++\nNot yet either.\n",
            rfc3339(at)
        ),
    )
    .post(
        "going.md",
        &format!(
            "---\ntitle: Going away\ndate: 2020-01-01\nexpiryDate: {}\n---\nFor now.\n",
            rfc3339(at)
        ),
    );
    let s = TestServer::start(&site);
    assert!(now() < at - 1, "nib took over 4 s to start");
    let hidden = [
        "/posts/future/",
        "/posts/later/",
        "/tags/soon/",
        "/tags/soon/feed.xml",
    ];
    for path in hidden {
        assert_eq!(s.get(path).status, 404, "{path}");
    }
    let front = s.get("/");
    let etag = front.header("ETag").unwrap().to_string();
    for (path, text) in [
        ("/", front.text()),
        ("/feed.xml", s.get("/feed.xml").text()),
        ("/sitemap.xml", s.get("/sitemap.xml").text()),
        ("/tags/", s.get("/tags/").text()),
        ("/feed.json", s.get("/feed.json").text()),
    ] {
        assert!(!text.contains("From the future"), "{path}: {text}");
        assert!(!text.contains("/posts/future/"), "{path}: {text}");
        assert!(!text.contains("/posts/later/"), "{path}: {text}");
    }
    assert!(front.text().contains("Going away"));
    assert_eq!(s.get("/posts/going/").status, 200);
    // Its time comes: within 2 s of it, with no file change.
    assert!(
        eventually(Duration::from_secs(9), || s.get("/posts/future/").status
            == 200),
        "the future post never appeared"
    );
    let shown_at = now();
    assert!(shown_at <= at + 2, "appeared at {shown_at}, due at {at}");
    assert_eq!(s.get("/posts/later/").status, 200);
    assert_eq!(s.get("/posts/going/").status, 404);
    assert_eq!(s.get("/tags/soon/").status, 200);
    assert!(
        s.get("/tags/soon/feed.xml")
            .text()
            .contains("/posts/future/")
    );
    let front = s.get("/");
    assert_ne!(
        front.header("ETag").unwrap(),
        etag,
        "the site version moved"
    );
    let text = front.text();
    assert!(
        text.contains("From the future") && !text.contains("Going away"),
        "{text}"
    );
    assert!(s.get("/feed.xml").text().contains("/posts/later/"));
    assert!(s.get("/sitemap.xml").text().contains("/posts/future/"));
}

/// `nib build` exports what is public when it runs: not a post waiting for its date.
#[test]
fn the_export_leaves_out_a_post_not_yet_due() {
    let site = Site::new();
    site.post(
        "future.md",
        &format!(
            "---\ntitle: Far ahead\ndate: {}\n---\nLater.\n",
            rfc3339(now() + 86_400)
        ),
    )
    .post(
        "past.md",
        "---\ntitle: Done\ndate: 2020-01-01\n---\nDone.\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("site");
    let (code, _, err) = nib(&site, &["build", "--out", dir.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("posts/past/index.html").is_file());
    assert!(!dir.join("posts/future").exists());
    let sitemap = std::fs::read_to_string(dir.join("sitemap.xml")).unwrap();
    assert!(!sitemap.contains("/posts/future/"), "{sitemap}");
}

#[test]
fn old_urls_answer_301_to_the_post() {
    let site = migrated_site();
    let s = TestServer::start(&site);
    // (old URL, new URL)
    let cases = [
        // Jekyll's redirect_from, in every form.
        ("/2013/09/06/late-night.html", "/posts/late-night/"),
        ("/2013/09/06/late-night", "/posts/late-night/"),
        ("/2013/09/06/late-night/", "/posts/late-night/"),
        ("/archive/late-night/", "/posts/late-night/"),
        ("/archive/late-night", "/posts/late-night/"),
        ("/archive/late-night/index.html", "/posts/late-night/"),
        // Hugo's aliases: under /posts/, a .html page, one segment (a short link's shape).
        ("/posts/renamed-old/", "/posts/renamed/"),
        ("/old/hugo-post.html", "/posts/renamed/"),
        ("/old/hugo-post/", "/posts/renamed/"),
        ("/short-old", "/posts/renamed/"),
        ("/short-old/", "/posts/renamed/"),
        // Zola's path.
        ("/2022/04/07/zola-news/", "/posts/zola-news/"),
        // old_permalinks = "/:year/:month/:day/:slug/", on the day written.
        ("/2015/10/26/my-post/", "/posts/my-post/"),
        ("/2015/10/26/my-post", "/posts/my-post/"),
        ("/2015/10/26/my-post.html", "/posts/my-post/"),
        ("/2013/09/06/late-night/", "/posts/late-night/"),
    ];
    for (old, new) in cases {
        let r = s.get(old);
        assert_eq!(r.status, 301, "{old}");
        assert_eq!(r.header("Location"), Some(new), "{old}");
    }
    for missing in [
        "/2015/10/27/my-post/",
        "/2015/10/26/no-such-post/",
        "/archive/other/",
        "/posts/never-was/",
    ] {
        assert_eq!(s.get(missing).status, 404, "{missing}");
    }
    // Routes answer first: the alias /tags/ is still the tag list.
    let tags = s.get("/tags/");
    assert_eq!(tags.status, 200);
}

/// Regression: a post tagged `C++` and `c` kept only `C++`.
#[test]
fn cpp_and_c_are_two_tags_and_rust_is_one() {
    let site = migrated_site();
    let s = TestServer::start(&site);
    let cpp = s.get("/tags/c-plus-plus/");
    assert_eq!(cpp.status, 200);
    let cpp = cpp.text();
    assert!(cpp.contains("A renamed Hugo post"), "{cpp}");
    assert!(!cpp.contains("News from a Zola site"), "{cpp}");
    let c = s.get("/tags/c/").text();
    assert!(c.contains("News from a Zola site"), "{c}");
    assert!(!c.contains("A renamed Hugo post"), "{c}");
    // `Rust` (Hugo) and `rust` (Zola taxonomies) are one tag.
    let rust = s.get("/tags/rust/").text();
    assert!(
        rust.contains("A renamed Hugo post") && rust.contains("News from a Zola site"),
        "{rust}"
    );
    // Zola's and Jekyll's categories are tags.
    assert_eq!(s.get("/tags/releases/").status, 200);
    assert_eq!(s.get("/tags/notes/").status, 200);
    // A tag asked for as written is sent to its key.
    for (asked, key) in [
        ("/tags/C++/", "/tags/c-plus-plus/"),
        ("/tags/Rust/", "/tags/rust/"),
    ] {
        let r = s.get(asked);
        assert_eq!(
            (r.status, r.header("Location")),
            (301, Some(key)),
            "{asked}"
        );
    }
    let post = s.get("/posts/renamed/").text();
    assert!(
        post.contains("href=\"/tags/c-plus-plus/\">#C++</a>"),
        "{post}"
    );
}

#[test]
fn check_names_mtime_dates_and_old_urls_that_routes_answer() {
    let site = migrated_site();
    // The old site's page, copied into static/ as it was.
    site.write("static/old/hugo-post.html", "<p>the old page</p>\n");
    let (code, out, err) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let has_line = |out: &str, needle: &str, file: &str| {
        assert!(
            out.lines().any(|l| l.contains(needle) && l.contains(file)),
            "no line with {needle:?} for {file}: {out}"
        );
    };
    has_line(&out, "warning: no date", "undated.md");
    has_line(&out, "modification time", "undated.md");
    has_line(
        &out,
        "old URL /tags/ is nib's route /tags/",
        "claims-a-route.md",
    );
    has_line(
        &out,
        "old URL /feed.xml is nib's route /feed.xml",
        "claims-a-route.md",
    );
    has_line(
        &out,
        "old URL /archive/late-night is also declared by 2013-09-06-late-night.markdown",
        "wants-an-old-url.md",
    );
    has_line(
        &out,
        "old URL /old/hugo-post.html is the file static/old/hugo-post.html",
        "hugo-bundle-style.md",
    );
    // Only those: every other post carried over.
    assert_eq!(
        out.lines().filter(|l| l.contains("posts/")).count(),
        5,
        "{out}"
    );
    // A short link made with the alias's name answers it: both are named.
    let (code, _, err) = nib(
        &site,
        &["shorten", "https://example.com/", "--slug", "short-old"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = nib(&site, &["check"], &[]);
    has_line(
        &out,
        "old URL /short-old is the short link /short-old",
        "hugo-bundle-style.md",
    );
    let s = TestServer::start(&site);
    let r = s.get("/short-old");
    assert_eq!(r.header("Location"), Some("https://example.com/"));
}

#[test]
fn the_export_redirects_old_urls_to_their_posts() {
    let site = migrated_site();
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let netlify = std::fs::read_to_string(out.join("_redirects")).unwrap();
    let nginx = std::fs::read_to_string(out.join("nginx-redirects.conf")).unwrap();
    for (old, new) in [
        ("/archive/late-night", "/posts/late-night/"),
        ("/2022/04/07/zola-news", "/posts/zola-news/"),
        ("/old/hugo-post", "/posts/renamed/"),
    ] {
        for form in [old.to_string(), format!("{old}/"), format!("{old}.html")] {
            assert!(
                netlify.contains(&format!("{form}  {new}  301\n")),
                "{form}: {netlify}"
            );
            assert!(
                nginx.contains(&format!("\"{form}\" \"{new}\";")),
                "{form}: {nginx}"
            );
        }
        // A static host with no redirects gets a page that sends the reader on.
        let page = std::fs::read_to_string(out.join(&old[1..]).join("index.html")).unwrap();
        assert!(page.contains(&format!("url={new}\"")), "{page}");
    }
    assert!(err.contains("old URLs"), "{err}");
}

#[test]
fn check_says_why_a_scheduled_or_expired_post_is_not_published() {
    let site = Site::new();
    site.post("future.md", "---\ntitle: Later\ndate: 2999-01-02\n---\nx\n")
        .post(
            "gone.md",
            "---\ntitle: Gone\ndate: 2001-01-01\nexpiryDate: 2002-01-01\n---\nx\n",
        )
        .post(
            "later.md",
            "---\ntitle: Later too\ndate: 2001-01-01\npublishDate: 2998-05-06T07:08:09Z\n---\nx\n",
        )
        .post(
            "draft.md",
            "---\ntitle: D\ndate: 2001-01-01\ndraft: true\n---\nx\n",
        )
        .post("now.md", "---\ntitle: Now\ndate: 2001-01-01\n---\nx\n");
    let (code, out, err) = nib(&site, &["check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 public posts"), "{out}");
    let line = |file: &str| {
        out.lines()
            .find(|l| l.contains(&format!("posts/{file}: ")))
            .unwrap_or_else(|| panic!("no line for {file}: {out}"))
            .to_string()
    };
    assert!(
        line("future.md").ends_with("not published: scheduled for 2999-01-02T00:00:00Z"),
        "{out}"
    );
    assert!(
        line("later.md").ends_with("not published: scheduled for 2998-05-06T07:08:09Z"),
        "{out}"
    );
    assert!(
        line("gone.md").ends_with("not published: past its expiryDate"),
        "{out}"
    );
    assert!(
        line("draft.md").ends_with("not published: a draft"),
        "{out}"
    );
    assert!(!out.contains("posts/now.md"), "{out}");
}
