//! The public pages in a real browser (headless Chromium, through the WebDriver client of
//! [`crate::e2e_bookmarklet`]): every page a reader meets (the front page and its page 2, a
//! post with long code in several highlighted languages, a wide table, footnotes, a long
//! address and an image, the markdown showcase, a post in a bundle with its wide picture,
//! the tags page, a tag page, the 404 page) is looked at 390 px wide, in the light and the
//! dark colour scheme. None may scroll sideways, each has exactly one `<h1>`, axe-core finds
//! nothing serious or critical, tap targets included (when it is installed, see `.ci/run`),
//! and every highlighted token of code keeps 4.5:1 contrast on the background it is drawn
//! on. With `NIB_SCREENSHOTS=DIR` the test also saves pictures of each kind of page at 390
//! and 1280 px in both schemes, for a person to look at. Without chromium and chromedriver
//! the test says so and passes (under `NIB_REQUIRE_TOOLS=1`, fails). A second test, without
//! a browser, reads the same pages' heads: one canonical address (none on the 404 page),
//! and feeds advertised that answer, a tag page's own first.

use std::path::Path;

use crate::common::*;
use crate::e2e_bookmarklet::{Driver, axe_script, browser_tools};
use serde_json::{Value, json};

/// The public pages, each a different template or a different shape of content.
const PAGES: [&str; 9] = [
    "/",
    "/page/2/",
    "/posts/hard-shapes/",
    "/posts/markdown-showcase/",
    "/posts/a-bundle-post/",
    "/tags/",
    "/tags/rust/",
    "/tags/markdown/",
    "/no/such/page/under/a/long/address/that/has/no/place/to/break/and_goes_on_and_on_and_on",
];

/// The example site's posts and image, the post of hard shapes, a bundle (a folder with
/// its `index.md` and a picture 1,600 px wide), three posts a page (so
/// there is a page 2) and links in the navigation and the footer. The look is the one built
/// into the binary, as a new site gets it.
fn public_site(site: &Site) -> TestServer {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let posts = std::fs::read_dir(repo.join("posts")).expect("example posts");
    for e in posts.flatten() {
        let text = std::fs::read_to_string(e.path()).expect("example post");
        site.post(&e.file_name().to_string_lossy(), &text);
    }
    let fixture = repo.join("tests/fixtures/e2e_public/2026-06-01-hard-shapes.md");
    let text = std::fs::read_to_string(fixture).expect("fixture post");
    site.post("2026-06-01-hard-shapes.md", &text);
    for f in ["index.md", "wide.svg"] {
        let text =
            std::fs::read_to_string(repo.join("tests/fixtures/e2e_public/a-bundle-post").join(f))
                .expect("bundle file");
        site.write(&format!("posts/a-bundle-post/{f}"), &text);
    }
    let svg = std::fs::read_to_string(repo.join("static/images/diagram.svg")).expect("image");
    site.write("static/images/diagram.svg", &svg);
    site.write(
        "nib.toml",
        "title = \"nib\"\ndescription = \"A small blog engine.\"\nauthor = \"The nib authors\"\nper_page = 3\n\n[[nav]]\ntitle = \"About\"\nurl = \"/posts/welcome-to-nib/\"\n\n[[footer]]\ntitle = \"Source\"\nurl = \"https://example.com/nib\"\n",
    );
    TestServer::start(site)
}

/// Makes the page see `prefers-color-scheme: dark` (or light), as a phone set to dark does.
fn color_scheme(d: &Driver, scheme: &str) {
    d.cmd(
        "POST",
        "/goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]
        }})),
    );
}

/// Every highlighted token (and the plain code around it) whose colour has less than 4.5:1
/// contrast on the background it is drawn on, one line each. axe-core does not judge text
/// that a code block's own scrolling hides, so this looks at all of it.
const CODE_CONTRAST: &str = r#"
function lum(c) {
  var m = c.match(/[\d.]+/g).map(Number);
  var a = m.slice(0, 3).map(function (v) {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
}
function bg(e) {
  for (; e; e = e.parentElement) {
    var b = getComputedStyle(e).backgroundColor, m = b.match(/[\d.]+/g);
    if (m && (m.length < 4 || +m[3] > 0)) return b;
  }
  return 'rgb(255, 255, 255)';
}
var bad = [];
document.querySelectorAll('pre code, pre code span').forEach(function (e) {
  var fg = getComputedStyle(e).color, back = bg(e);
  var f = lum(fg), b = lum(back);
  var r = (Math.max(f, b) + 0.05) / (Math.min(f, b) + 0.05);
  if (r < 4.5) bad.push((e.className || 'code') + ' ' + fg + ' on ' + back + ': ' + r.toFixed(2));
});
return bad;
"#;

/// The links standing on their own (tag pills, the header's links, the pagers, a
/// footnote's number) less than 24 px tall, WCAG 2.2's least tap target; axe-core's rule
/// passes any link in a line of text, which the pills are.
const SMALL_TARGETS: &str = r#"
var bad = [];
document.querySelectorAll('.tag, .site-title, .site-nav a, .pager a, .post-nav a, .footnote-definition-label a').forEach(function (e) {
  var r = e.getBoundingClientRect();
  if (r.height < 24) bad.push(e.className + ' ' + e.textContent.trim() + ': ' + r.height.toFixed(1) + ' px');
});
return bad;
"#;

/// The serious and critical axe-core findings on the current page, one line each, with
/// the tap target rule (WCAG 2.2's 24 px, which axe-core leaves off by default) turned on.
fn axe_findings(d: &Driver, axe: &str) -> Vec<String> {
    d.js(axe);
    let v = d.cmd(
        "POST",
        "/execute/async",
        Some(json!({"script": "var done = arguments[arguments.length - 1]; axe.run(document, {resultTypes: ['violations'], rules: {'target-size': {enabled: true}}}).then(function (r) { done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; }).map(function (v) { return v.id + ': ' + v.nodes.map(function (n) { return n.target.join(' '); }).join(', '); })); }, function (e) { done(['axe failed: ' + e]); });", "args": []})),
    );
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect()
}

/// What is wrong with one page at 390 px, one line each: a sideways scroll, other than one
/// `<h1>`, code hard to read, anything serious for axe-core.
fn page_problems(
    d: &Driver,
    base: &str,
    page: &str,
    scheme: &str,
    axe: Option<&str>,
) -> Vec<String> {
    d.go(&format!("{base}{page}"));
    d.wait_find("h1");
    let mut problems = Vec::new();
    let width = d.js("return document.documentElement.scrollWidth");
    if width.as_u64().is_none_or(|w| w > 390) {
        problems.push(format!("{page} ({scheme}) is {width} px wide at 390"));
    }
    let h1s = d.js("return document.querySelectorAll('h1').length");
    if h1s != 1 {
        problems.push(format!("{page} has {h1s} <h1>"));
    }
    let small = d.js(SMALL_TARGETS);
    for b in small.as_array().into_iter().flatten() {
        problems.push(format!("{page} tap target under 24 px: {b}"));
    }
    let bad = d.js(CODE_CONTRAST);
    for b in bad.as_array().into_iter().flatten() {
        problems.push(format!("{page} ({scheme}) code contrast: {b}"));
    }
    if let Some(axe) = axe {
        for f in axe_findings(d, axe) {
            problems.push(format!("{page} ({scheme}) axe-core: {f}"));
        }
    }
    problems
}

/// The post of hard shapes carries every kind of highlighted token the palette colours, so
/// the contrast check above sees each of them.
fn the_post_shows_every_token(d: &Driver, base: &str) {
    d.go(&format!("{base}/posts/hard-shapes/"));
    d.wait_find("h1");
    let classes = d.js("var s = {}; document.querySelectorAll('pre [class^=\"hl-\"]').forEach(function (e) { s[e.className] = 1; }); return Object.keys(s).sort();");
    let want = [
        "hl-b", "hl-c", "hl-del", "hl-f", "hl-ins", "hl-k", "hl-n", "hl-s", "hl-v",
    ];
    assert_eq!(classes, json!(want), "token kinds on the post");
}

/// The bundle's picture, served from beside its `index.md`, loads at its 1,600 px and is
/// drawn within the column.
fn the_bundle_picture_loads_and_fits(d: &Driver, base: &str) {
    d.go(&format!("{base}/posts/a-bundle-post/"));
    d.wait_find("h1");
    let img = d.js("var i = document.querySelector('.post-body img'); return i ? [i.complete, i.naturalWidth, i.getBoundingClientRect().width <= 350] : null;");
    assert_eq!(img, json!([true, 1600, true]), "the bundle's picture");
}

/// The front page names the site in an `<h1>`, the others in a link: both look the same,
/// the same size in the same place, with the header's rule at the same height.
fn the_site_title_looks_the_same_on_every_page(d: &Driver, base: &str) {
    let measure = "var t = document.querySelector('.site-title'), r = t.getBoundingClientRect(), h = document.querySelector('.site-header').getBoundingClientRect(), s = getComputedStyle(t); return [s.fontSize, s.fontWeight, s.color, r.left, Math.round(r.top), Math.round(h.bottom)];";
    d.go(&format!("{base}/"));
    d.wait_find("h1");
    let front = d.js(measure);
    for page in ["/tags/", "/posts/hard-shapes/"] {
        d.go(&format!("{base}{page}"));
        d.wait_find("h1");
        assert_eq!(
            d.js(measure),
            front,
            "the site title on {page} and on the front page"
        );
    }
}

/// Presses one key (a WebDriver key code such as Tab's `\u{E004}`) on the page.
fn press(d: &Driver, key: &str) {
    d.cmd(
        "POST",
        "/actions",
        Some(
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
            ]}]}),
        ),
    );
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// The first Tab on a page shows the skip link in view, with a focus ring; following it
/// puts the next Tab inside `<main>`, past the header's links.
fn the_skip_link_comes_first_and_skips(d: &Driver, base: &str, page: &str) {
    d.go(&format!("{base}{page}"));
    d.wait_find("h1");
    press(d, TAB);
    let focused = d.js("var a = document.activeElement, r = a.getBoundingClientRect(); return [a.className, r.top >= 0 && r.bottom <= innerHeight, getComputedStyle(a).outlineStyle];");
    assert_eq!(
        focused,
        json!(["skip-link", true, "solid"]),
        "first Tab on {page}"
    );
    press(d, ENTER);
    press(d, TAB);
    let inside = d.js("return document.querySelector('main').contains(document.activeElement)");
    assert_eq!(inside, true, "the Tab after the skip link on {page}");
}

/// Saves the page as PNG pictures under `dir`, the whole height in tiles of at most
/// 1,200 px (a long page in one picture is too small to read when shown).
fn screenshot(d: &Driver, dir: &Path, name: &str, width: u32) {
    let height = d.js("return document.documentElement.scrollHeight");
    let height = height.as_u64().unwrap_or(900);
    let mut y = 0;
    let mut tile = 0;
    while y < height {
        let h = (height - y).min(1200);
        let shot = d.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Page.captureScreenshot", "params": {
                "format": "png", "captureBeyondViewport": true,
                "clip": {"x": 0, "y": y, "width": width, "height": h, "scale": 1}
            }})),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        let png = decode_base64(data);
        std::fs::write(dir.join(format!("{name}-{tile}.png")), png).expect("write screenshot");
        y += h;
        tile += 1;
    }
}

/// Standard base64 (as DevTools sends a screenshot) to bytes.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &v)| n | (u32::from(v) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The pictures `NIB_SCREENSHOTS` asks for: each kind of page at 390 and 1280 px in
/// `scheme`, and the post with its skip link focused, then its first tag.
fn screenshots(d: &Driver, base: &str, scheme: &str) {
    let Some(dir) = std::env::var_os("NIB_SCREENSHOTS") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("screenshot dir");
    for width in [390, 1280] {
        d.viewport(width);
        for (name, page) in [
            ("page2", "/page/2/"),
            ("tags", "/tags/"),
            ("tag", "/tags/rust/"),
            ("404", "/no/such/page"),
            ("showcase", "/posts/markdown-showcase/"),
            ("bundle", "/posts/a-bundle-post/"),
            ("front", "/"),
            ("post", "/posts/hard-shapes/"),
        ] {
            d.go(&format!("{base}{page}"));
            d.wait_find("h1");
            screenshot(d, dir, &format!("{name}-{width}-{scheme}"), width);
        }
        press(d, TAB);
        screenshot(d, dir, &format!("post-{width}-{scheme}-skip-link"), width);
        // Past the site title and the one header link: the first tag pill.
        for _ in 0..3 {
            press(d, TAB);
        }
        screenshot(d, dir, &format!("post-{width}-{scheme}-focused-tag"), width);
    }
    d.viewport(390);
}

#[test]
fn public_pages_fit_a_phone_and_pass_axe_in_light_and_dark() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let axe = axe_script();
    let site = Site::new();
    let s = public_site(&site);
    let base = format!("http://127.0.0.1:{}", s.addr.port());

    let mut d = Driver::start(&driver);
    let profile = tempfile::tempdir().expect("profile dir");
    d.open_session(&chromium, profile.path());
    d.viewport(390);
    the_post_shows_every_token(&d, &base);
    the_site_title_looks_the_same_on_every_page(&d, &base);
    the_bundle_picture_loads_and_fits(&d, &base);
    for page in ["/", "/posts/hard-shapes/"] {
        the_skip_link_comes_first_and_skips(&d, &base, page);
    }
    let mut problems = Vec::new();
    for scheme in ["light", "dark"] {
        color_scheme(&d, scheme);
        let seen: Value = d.js("return matchMedia('(prefers-color-scheme: dark)').matches");
        assert_eq!(seen, json!(scheme == "dark"), "the emulated scheme");
        for page in PAGES {
            problems.extend(page_problems(&d, &base, page, scheme, axe.as_deref()));
        }
        screenshots(&d, &base, scheme);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The `<link>`s of a page's head with `rel="rel"`, as (type, href) in their order.
fn head_links(html: &str, rel: &str) -> Vec<(String, String)> {
    let head = html.split("</head>").next().unwrap_or("");
    let attr = |tag: &str, name: &str| {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    head.split("<link ")
        .skip(1)
        .map(|t| format!(" {}", t.split('>').next().unwrap_or("")))
        .filter(|t| attr(t, "rel") == rel)
        .map(|t| (attr(&t, "type"), attr(&t, "href")))
        .collect()
}

#[test]
fn reading_pages_advertise_feeds_that_answer_and_the_404_names_no_canonical() {
    let site = Site::new();
    let s = public_site(&site);
    let site_feeds = ["/feed.xml", "/rss.xml", "/feed.json"];
    for (page, own) in [
        ("/", None),
        ("/page/2/", None),
        ("/posts/hard-shapes/", None),
        ("/posts/a-bundle-post/", None),
        ("/tags/", None),
        ("/tags/rust/", Some("/tags/rust/feed.xml")),
    ] {
        let html = s.get(page).text();
        let canonical = head_links(&html, "canonical");
        assert_eq!(canonical.len(), 1, "{page}: {canonical:?}");
        assert!(canonical[0].1.ends_with(page), "{page}: {canonical:?}");
        let feeds = head_links(&html, "alternate");
        let paths: Vec<String> = feeds
            .iter()
            .map(|(_, href)| {
                let rest = href.split_once("://").map_or(href.as_str(), |(_, r)| r);
                rest[rest.find('/').unwrap_or(rest.len())..].to_string()
            })
            .collect();
        // A page's own feed first, for a reader that takes the first one offered.
        let want: Vec<&str> = own.into_iter().chain(site_feeds).collect();
        assert_eq!(paths, want, "{page}");
        for (path, (kind, _)) in paths.iter().zip(&feeds) {
            let r = s.get(path);
            assert_eq!(r.status, 200, "{page} advertises {path}");
            let served = r.header("content-type").unwrap_or("");
            assert!(
                served.starts_with(kind.as_str()),
                "{path}: {served} for {kind}"
            );
        }
    }
    let missing = s.get("/no/such/page");
    assert_eq!(missing.status, 404);
    assert_eq!(head_links(&missing.text(), "canonical"), vec![]);
}
