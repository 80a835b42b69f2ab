//! Standalone pages (`pages/*.md`): served at `/SLUG/`, never in lists, feeds or tag
//! pages, in the sitemap, refused when their slug is one of nib's own names, followed
//! while serving, and exported by `nib build` as `SLUG/index.html`, byte for byte.

use std::time::Duration;

use crate::common::*;

fn site() -> Site {
    let site = Site::new();
    site.post(
        "2026-01-05-hello.md",
        "---\ntitle: Hello post\ntags: [misc]\n---\nA post.\n",
    )
    .write(
        "pages/about.md",
        "---\ntitle: About this blog\ntags: [misc]\ndescription: Who writes here\n---\nI write *here*.\n",
    )
    .post(
        "2026-01-06-moved.md",
        "---\ntitle: Moved\naliases: [/about/, /gone/]\n---\nAn old URL that a page answers.\n",
    )
    .write("pages/later.md", "---\ntitle: Later\ndraft: true\n---\nNot yet.\n")
    .write(
        "pages/links.md",
        "---\ntitle: Links\n---\nSee {{< nosuchcode >}} here.\n",
    )
    .write("pages/tags.md", "---\ntitle: Not the tags\n---\nNo.\n")
    .write("pages/admin.md", "---\ntitle: Not the admin\n---\nNo.\n")
    .write("nib.toml", "base_url = \"https://blog.example\"\n");
    site
}

#[test]
fn an_about_page_is_served_at_its_slug_and_nowhere_else() {
    let site = site();
    let s = TestServer::start(&site);
    let r = s.get("/about/");
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(
        page.contains("<h1 class=\"post-title\">About this blog</h1>"),
        "{page}"
    );
    assert!(page.contains("<em>here</em>"), "{page}");
    assert!(page.contains("<meta property=\"og:title\" content=\"About this blog\">"));
    assert!(page.contains("<meta property=\"og:description\" content=\"Who writes here\">"));
    assert!(page.contains("og:site_name"));
    // No date, no tags on a page.
    assert!(!page.contains("<time"), "{page}");
    assert!(!page.contains("/tags/misc/"), "{page}");
    for path in [
        "/",
        "/feed.xml",
        "/rss.xml",
        "/feed.json",
        "/tags/misc/",
        "/tags/",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        let text = r.text();
        assert!(
            !text.contains("About this blog"),
            "{path} lists the page:\n{text}"
        );
        assert!(!text.contains("/about/"), "{path} links the page:\n{text}");
    }
    // The tag has its one post, not the page.
    assert!(s.get("/tags/misc/").text().contains("Hello post"));
    let sitemap = s.get("/sitemap.xml").text();
    assert!(
        sitemap.contains("<loc>https://blog.example/about/</loc>"),
        "{sitemap}"
    );
    assert!(!sitemap.contains("/later/"), "{sitemap}");
    // A post may have the page's slug: /posts/about/ and /about/ are two URLs.
    assert_eq!(s.get("/posts/about/").status, 404);
}

#[test]
fn a_page_path_without_its_slash_is_a_301_unless_a_short_link_has_it() {
    let site = site();
    let s = TestServer::start(&site);
    let r = s.get("/about");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/about/"));
    assert_eq!(s.get("/nothing").status, 404);
    assert_eq!(s.get("/nothing/").status, 404);
    drop(s);
    // A slug no short link could have (not ASCII) is redirected all the same, and the
    // sitemap names it once encoded.
    site.write("pages/café.md", "# Café\n\nOpen late.\n");
    let s = TestServer::start(&site);
    let r = s.get("/caf%C3%A9");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/caf%C3%A9/"));
    assert_eq!(s.get("/caf%C3%A9/").status, 200);
    let sitemap = s.get("/sitemap.xml").text();
    assert!(sitemap.contains("/caf%C3%A9/</loc>"), "{sitemap}");
    drop(s);
    // A short link with a page's slug keeps its redirect; the page stays at /SLUG/.
    site.write("pages/now.md", "# Now\n\nThis month.\n");
    let (code, _, err) = nib(
        &site,
        &["shorten", "https://example.com/elsewhere", "--slug", "now"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let s = TestServer::start(&site);
    let r = s.get("/now");
    assert_eq!(r.header("Location"), Some("https://example.com/elsewhere"));
    assert_eq!(s.get("/now/").status, 200);
}

#[test]
fn a_draft_page_and_a_page_named_after_a_route_are_not_served() {
    let site = site();
    let s = TestServer::start(&site);
    assert_eq!(s.get("/later/").status, 404);
    assert_eq!(s.get("/later").status, 404);
    // The routes stay the site's own.
    assert_eq!(s.get("/tags/").status, 200);
    assert!(!s.get("/tags/").text().contains("Not the tags"));
    assert!(!s.get("/admin/").text().contains("Not the admin"));
    drop(s);
    let (code, out, _) = nib(&site, &["check"], &[]);
    assert_eq!(code, 1, "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!("pages/{name}")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    assert!(line("tags.md").contains("nib's own paths"), "{out}");
    assert!(line("admin.md").contains("nib's own paths"), "{out}");
    assert!(line("later.md").contains("a draft"), "{out}");
    assert!(!out.contains("pages/about.md"), "{out}");
    // A page's shortcode shown as text is named with its line, as a post's is.
    assert!(
        out.lines()
            .any(|l| l.contains("pages/links.md:4:")
                && l.contains("unknown shortcode \"nosuchcode\"")),
        "{out}"
    );
    // An old URL of a post that a page answers is named; one no page has is not.
    assert!(
        out.lines()
            .any(|l| l.contains("moved.md") && l.contains("old URL /about/ is the page /about/")),
        "{out}"
    );
    assert!(!out.contains("/gone/"), "{out}");
}

#[test]
fn a_page_edited_while_serving_changes_within_3_s() {
    let site = site();
    let s = TestServer::start(&site);
    assert!(s.get("/about/").text().contains("About this blog"));
    site.write(
        "pages/about.md",
        "---\ntitle: About, rewritten\n---\nNew words.\n",
    );
    assert!(
        eventually(Duration::from_secs(3), || s
            .get("/about/")
            .text()
            .contains("About, rewritten")),
        "the edit did not show"
    );
    // A new page shows as quickly; a removed one goes.
    site.write("pages/now.md", "# Now\n\nWhat I do now.\n");
    assert!(eventually(Duration::from_secs(3), || s.get("/now/").status == 200));
    site.remove("pages/about.md");
    // Without the page, the old URL a post declares answers the path.
    assert!(eventually(Duration::from_secs(3), || s
        .get("/about/")
        .status
        == 301));
    assert_eq!(s.get("/about/").header("Location"), Some("/posts/moved/"));
}

#[test]
fn a_site_with_no_pages_folder_gains_one_while_serving() {
    let site = Site::new();
    site.post("2026-01-05-hello.md", "Hello\n");
    let s = TestServer::start(&site);
    assert_eq!(s.get("/colophon/").status, 404);
    site.write(
        "pages/colophon.md",
        "---\ntitle: Colophon\n---\nSet in type.\n",
    );
    assert!(eventually(Duration::from_secs(3), || s
        .get("/colophon/")
        .status
        == 200));
}

#[test]
fn nib_build_writes_a_page_as_slug_index_html_identical_to_the_served_page() {
    let site = site();
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read(out.join("about/index.html")).expect("about/index.html");
    assert!(!out.join("later").exists());
    assert!(
        !out.join("tags/index.html").exists() || {
            let tags = std::fs::read_to_string(out.join("tags/index.html")).unwrap();
            !tags.contains("Not the tags")
        }
    );
    let s = TestServer::start(&site);
    let served = s.get("/about/");
    assert_eq!(served.status, 200);
    assert!(
        served.body == exported,
        "about/index.html differs from /about/"
    );
}
