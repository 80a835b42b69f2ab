//! `posts/` as a tree, as Hugo and Zola blogs lay it out: posts in folders, bundles (a folder
//! whose `index.md` is the post and whose other files are served beside it), the watch on
//! folders, duplicate slugs and what `nib check` says about all of it. The site is
//! `tests/fixtures/tree-blog`, copied into a scratch folder.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// A scratch site holding a copy of `tests/fixtures/tree-blog`.
fn tree_site() -> Site {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dst = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &dst);
            } else {
                std::fs::copy(entry.path(), dst).unwrap();
            }
        }
    }
    let site = Site::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tree-blog/posts");
    copy(&fixture, &site.path().join("posts"));
    site
}

const PNG: &str = "posts/trip-to-the-coast/harbour.png";

#[test]
fn a_bundle_serves_its_files_as_static_does() {
    let site = tree_site();
    let png = std::fs::read(site.path().join(PNG)).unwrap();
    std::os::unix::fs::symlink(
        site.path().join("posts/hello.md"),
        site.path().join("posts/trip-to-the-coast/link-out.txt"),
    )
    .unwrap();
    site.write("posts/trip-to-the-coast/inside.txt", "inside\n");
    std::os::unix::fs::symlink(
        "inside.txt",
        site.path().join("posts/trip-to-the-coast/link-in.txt"),
    )
    .unwrap();
    site.write("static/posts/hello/legacy.png", "from static/");
    let mut s = TestServer::start(&site);
    let whole = s.get("/posts/trip-to-the-coast/harbour.png");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("image/png"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body, png);
    let etag = whole.header("etag").expect("an ETag").to_string();
    let again = get_with(
        s.addr,
        "/posts/trip-to-the-coast/harbour.png",
        &[&format!("If-None-Match: {etag}")],
    );
    assert_eq!(again.status, 304);
    let part = get_with(
        s.addr,
        "/posts/trip-to-the-coast/harbour.png",
        &["Range: bytes=1-3"],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"PNG");
    assert_eq!(
        part.header("content-range"),
        Some(&*format!("bytes 1-3/{}", png.len()))
    );
    let past = get_with(
        s.addr,
        "/posts/trip-to-the-coast/harbour.png",
        &["Range: bytes=9999-"],
    );
    assert_eq!(past.status, 416);
    let head = request(
        s.addr,
        "HEAD",
        "/posts/trip-to-the-coast/harbour.png",
        &[],
        b"",
    );
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some(&*png.len().to_string()));
    // (path, status, content type)
    let cases: &[(&str, u16, Option<&str>)] = &[
        (
            "/posts/trip-to-the-coast/files/route.pdf",
            200,
            Some("application/pdf"),
        ),
        (
            "/posts/zola-colocated/diagram.svg",
            200,
            Some("image/svg+xml"),
        ),
        (
            "/posts/trip-to-the-coast/link-in.txt",
            200,
            Some("text/plain; charset=utf-8"),
        ),
        // What the server must not show: the post's source, a link out of the folder,
        // a folder, a draft's files, names that climb out, a name too long.
        ("/posts/trip-to-the-coast/index.md", 404, None),
        ("/posts/trip-to-the-coast/link-out.txt", 404, None),
        ("/posts/trip-to-the-coast/files/", 404, None),
        ("/posts/trip-to-the-coast/files", 404, None),
        ("/posts/draft-bundle/secret.png", 404, None),
        ("/posts/not-ready/secret.png", 404, None),
        ("/posts/trip-to-the-coast/%2e%2e/hello.md", 404, None),
        ("/posts/trip-to-the-coast/..%2f..%2fnib.db", 404, None),
        ("/posts/trip-to-the-coast/.hidden", 404, None),
        // A post that is no bundle has no files; `static/posts/…` still answers there.
        ("/posts/hello/harbour.png", 404, None),
        ("/posts/hello/legacy.png", 200, Some("image/png")),
        ("/posts/nothing/x.png", 404, None),
    ];
    for (path, status, ctype) in cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}");
        if ctype.is_some() {
            assert_eq!(r.header("content-type"), *ctype, "{path}");
        }
    }
    let long = format!("/posts/trip-to-the-coast/{}.png", "a".repeat(252));
    assert_eq!(s.get(&long).status, 404);
    let long = format!("/posts/trip-to-the-coast/{}.png", "a".repeat(251));
    assert_eq!(s.get(&long).status, 404, "255 bytes, and no such file");
    assert_eq!(s.wait_exit(Duration::from_millis(50)), None);
}

/// `![p](harbour.png)` in a bundle's `index.md` loads: the page is at `/posts/SLUG/`
/// (with its slash), so the relative URL names the bundle's file; the front page and the
/// feeds, at other URLs, show the summary with the URL made to start at the post.
#[test]
fn a_relative_image_in_a_bundle_loads_on_the_page_and_in_summaries() {
    let site = tree_site();
    let s = TestServer::start(&site);
    let moved = s.get("/posts/trip-to-the-coast");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/posts/trip-to-the-coast/"));
    let page = s.get("/posts/trip-to-the-coast/").text();
    let src = page
        .split("<img src=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an image");
    assert_eq!(src, "harbour.png", "{page}");
    // Resolved as a browser does, against the page's URL.
    assert_eq!(
        s.get(&format!("/posts/trip-to-the-coast/{src}")).status,
        200
    );
    assert!(page.contains("href=\"files/route.pdf\""), "{page}");
    let front = s.get("/").text();
    assert!(
        front.contains("src=\"/posts/trip-to-the-coast/harbour.png\""),
        "{front}"
    );
    assert!(front.contains("href=\"/posts/trip-to-the-coast/files/route.pdf\""));
    assert!(!front.contains("src=\"harbour.png\""), "{front}");
    let tag = s.get("/tags/travel/").text();
    assert!(tag.contains("src=\"/posts/trip-to-the-coast/harbour.png\""));
    let atom = s.get("/feed.xml").text();
    assert!(
        atom.contains("src=&quot;/posts/trip-to-the-coast/harbour.png&quot;")
            || atom.contains("src=&#34;/posts/trip-to-the-coast/harbour.png&#34;"),
        "{atom}"
    );
    // RSS and JSON Feed have no xml:base: their full posts carry absolute addresses.
    let base = format!("http://{}/posts/trip-to-the-coast/", s.addr);
    let json = s.get("/feed.json").text();
    assert!(
        json.contains(&format!("src=\\\"{base}harbour.png\\\"")),
        "{json}"
    );
    let rss = s.get("/rss.xml").text();
    assert!(
        rss.contains(&format!("src=&quot;{base}harbour.png&quot;"))
            || rss.contains(&format!("src=&#34;{base}harbour.png&#34;")),
        "{rss}"
    );
}

#[test]
fn posts_in_folders_are_found_by_title_in_the_sitemap() {
    let site = tree_site();
    let s = TestServer::start(&site);
    // (URL, title)
    let cases = [
        ("/posts/first-steps/", "First steps"),
        ("/posts/nested-walk/", "A walk two folders down"),
        ("/posts/trip-to-the-coast/", "A trip to the coast"),
        ("/posts/zola-colocated/", "Colocated assets"),
        ("/posts/hello/", "Hello, first of two"),
        ("/posts/2022-06-01-hello/", "Hello again, second of two"),
    ];
    let sitemap = s.get("/sitemap.xml").text();
    for (url, title) in cases {
        assert!(
            sitemap.contains(&format!("{url}</loc>")),
            "{url}: {sitemap}"
        );
        let page = s.get(url);
        assert_eq!(page.status, 200, "{url}");
        assert!(page.text().contains(title), "{url}");
    }
    // Sections, drafts and what is no post are not pages.
    for url in [
        "/posts/_index/",
        "/posts/2019/",
        "/posts/draft-bundle/",
        "/posts/not-ready/",
    ] {
        assert_eq!(s.get(url).status, 404, "{url}");
    }
    assert_eq!(sitemap.matches("/posts/").count(), cases.len(), "{sitemap}");
}

/// Two posts with one slug are both published, the later under its date, and each
/// keeps its URL whichever is found first.
#[test]
fn duplicate_slugs_are_both_served() {
    let site = tree_site();
    let s = TestServer::start(&site);
    assert!(s.get("/posts/hello/").text().contains("first of two"));
    assert!(
        s.get("/posts/2022-06-01-hello/")
            .text()
            .contains("second of two")
    );
    let log = s.stderr_text();
    assert!(
        log.lines().any(|l| l.contains("2022/hello.md")
            && l.contains("/posts/2022-06-01-hello/")
            && l.contains("hello.md")),
        "{log}"
    );
}

/// Hugo's bundles and year folders, made while nib runs: a post in a folder that did not
/// exist when it started, and one in a folder inside that, appear within 2 s.
#[test]
fn a_post_added_in_a_new_folder_while_running_appears_within_2_s() {
    let site = tree_site();
    let s = TestServer::start(&site);
    assert_eq!(s.get("/posts/late/").status, 404);
    let appears = |path: &str| {
        let started = Instant::now();
        let seen = eventually(Duration::from_millis(2000), || s.get(path).status == 200);
        (seen, started.elapsed())
    };
    site.write("posts/2023/late/index.md", "# Late\n\n![p](p.png)\n");
    site.write("posts/2023/late/p.png", "not really a png");
    let (seen, took) = appears("/posts/late/");
    assert!(seen, "not within 2 s: {}", s.stderr_text());
    assert_eq!(s.get("/posts/late/p.png").status, 200, "{took:?}");
    site.write("posts/2023/11/deeper.md", "# Deeper\n\nin a month folder\n");
    let (seen, _) = appears("/posts/deeper/");
    assert!(seen, "not within 2 s: {}", s.stderr_text());
    // An edit deep inside is seen as quickly, and a folder removed takes its posts.
    site.write("posts/2023/11/deeper.md", "# Deeper\n\nedited in place\n");
    assert!(eventually(Duration::from_millis(2000), || {
        s.get("/posts/deeper/").text().contains("edited in place")
    }));
    std::fs::remove_dir_all(site.path().join("posts/2023")).unwrap();
    assert!(eventually(Duration::from_millis(2000), || {
        s.get("/posts/late/").status == 404 && s.get("/posts/deeper/").status == 404
    }));
}

/// `nib check` names every file under `posts/` it does not publish, with why, one line
/// each and sorted; names both files of a duplicate slug; counts the front matter keys
/// it ignored; and exits 1 for the broken post only.
#[test]
fn check_lists_every_file_it_does_not_publish_and_the_keys_it_ignored() {
    let site = tree_site();
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}");
    let posts = site.path().join("posts");
    let want = [
        (
            "2019/_index.md",
            "not published: a section file (_index.md), never a post",
        ),
        ("2020/broken.md", "YAML front matter"),
        (
            "2022/hello.md",
            "published as /posts/2022-06-01-hello/: slug \"hello\" is also used by hello.md",
        ),
        (
            "_index.md",
            "not published: a section file (_index.md), never a post",
        ),
        ("draft-bundle/index.md", "not published: a draft"),
        (
            "draft-bundle/index.md",
            "warning: no date in front matter, path or file name",
        ),
        (
            "reading-list.txt",
            "not published: not a post (only .md and .markdown files are posts)",
        ),
    ];
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("6 public posts, 1 with problems"),
        "{out}"
    );
    let files: Vec<&str> = lines
        .iter()
        .take_while(|l| !l.starts_with("front matter"))
        .copied()
        .collect();
    assert_eq!(files.len(), want.len(), "{out}");
    for (line, (file, what)) in files.iter().zip(want) {
        let prefix = format!("{}: ", posts.join(file).display());
        assert!(
            line.starts_with(&prefix) && line.contains(what),
            "{line:?} for {file}: {out}"
        );
    }
    let keys: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("front matter"))
        .copied()
        .collect();
    assert_eq!(
        keys,
        [
            "front matter key \"extra\" is ignored: used by 1 post",
            "front matter key \"layout\" is ignored: used by 1 post",
        ],
        "aliases and images are read: {out}"
    );
    // A clean tree exits 0, and its notes (a dated slug, a section file) are no problem.
    site.remove("posts/2020/broken.md");
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 0, "{out}");
}

/// `nib build` puts a bundle's files beside its page, so the exported page's relative
/// URLs work on a static host; a draft's files stay out.
#[test]
fn build_copies_bundle_files_beside_their_page() {
    let site = tree_site();
    let out = site.path().join("out");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let bundle = out.join("posts/trip-to-the-coast");
    assert_eq!(
        std::fs::read(bundle.join("harbour.png")).unwrap(),
        std::fs::read(site.path().join(PNG)).unwrap()
    );
    assert!(bundle.join("files/route.pdf").is_file());
    assert!(!bundle.join("index.md").exists());
    assert!(
        std::fs::read_to_string(bundle.join("index.html"))
            .unwrap()
            .contains("A trip to the coast")
    );
    assert!(out.join("posts/zola-colocated/diagram.svg").is_file());
    assert!(!out.join("posts/draft-bundle").exists());
    assert!(!out.join("posts/not-ready").exists());
}

/// A bundle's folder swapped for a link to another folder, between two scans, serves
/// nothing from the link's target: a file is served only from the folder the index found,
/// where its path says.
#[test]
fn a_bundle_folder_swapped_for_a_link_serves_nothing_from_its_target() {
    let site = tree_site();
    site.write("posts/swapped/index.md", "# Swapped\n\n![p](pic.txt)\n")
        .write("posts/swapped/pic.txt", "the bundle's own file\n")
        .write("elsewhere/index.md", "# Elsewhere\n")
        .write("elsewhere/pic.txt", "a file outside posts/\n");
    let s = TestServer::start(&site);
    let r = s.get("/posts/swapped/pic.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "the bundle's own file\n")
    );
    // Checks come at most every 1.5 s: the next request is answered from the index as
    // it was before the swap.
    let posts = site.path().join("posts");
    std::fs::rename(posts.join("swapped"), site.path().join("aside")).unwrap();
    std::os::unix::fs::symlink(site.path().join("elsewhere"), posts.join("swapped")).unwrap();
    let r = s.get("/posts/swapped/pic.txt");
    assert_eq!(r.status, 404, "{}", r.text());
    // Once scanned, the link is no post at all.
    assert!(eventually(Duration::from_millis(2000), || {
        s.get("/posts/swapped/").status == 404
    }));
}
