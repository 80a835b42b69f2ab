//! Shortcodes, Liquid tags and math in posts copied unchanged from Hugo, Jekyll and Zola
//! blogs (the fixture site `tests/fixtures/shortcodes/`): built-ins render to plain HTML,
//! the site's `shortcodes/` templates to theirs, unknown ones show as the text they were
//! and `nib check` names them with file and line.

use std::path::Path;
use std::time::Duration;

use crate::common::{Site, TestServer, eventually, nib};

/// The fixture site copied into a scratch site (posts and templates).
fn fixture_site() -> Site {
    let site = Site::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shortcodes");
    for folder in ["posts", "shortcodes"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let entry = entry.unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            site.write(
                &format!("{folder}/{}", entry.file_name().to_str().unwrap()),
                &text,
            );
        }
    }
    site
}

#[test]
fn hugo_jekyll_and_zola_shortcodes_render_as_html() {
    let site = fixture_site();
    let s = TestServer::start(&site);

    let hugo = s.get("/posts/lighthouse-notes/").text();
    for want in [
        // The site's figure template overrides Hugo's built-in.
        "<figure class=\"site-figure\">",
        "<img src=\"/img/lamp.jpg\" alt=\"The lamp room\">",
        "<p>The keeper showed us the log book.</p>",
        // Videos are links: the page asks nothing of YouTube.
        "<p class=\"embed\"><a href=\"https://www.youtube.com/watch?v=w7Ft2ymGmfc\">The lamp at dusk (video on YouTube)</a></p>",
        // Hugo's highlight is a fenced block, highlighted like any other.
        "<pre tabindex=\"0\"><code class=\"language-go\"><span class=\"hl-k\">func</span> <span class=\"hl-f\">beam</span>(angle <span class=\"hl-b\">float64</span>) <span class=\"hl-b\">string</span> {\n\t<span class=\"hl-k\">return</span> fmt.<span class=\"hl-f\">Sprintf</span>(<span class=\"hl-s\">&quot;%.1f°&quot;</span>, angle)\n}\n</code></pre>",
        "<a href=\"https://x.com/keeper/status/1735\">A post by @keeper on X</a>",
        "<a href=\"https://gist.github.com/keeper/5ab1e#file-log-txt\">log.txt (a gist)</a>",
        "<a href=\"/posts/harbour-day/\">the harbour post</a>",
        // In code, shortcodes are left as they are.
        "<code>{{&lt; figure src=\"x.png\" &gt;}}</code>",
        "<pre tabindex=\"0\"><code>{{&lt; youtube abc &gt;}}\n</code></pre>",
        // Hugo's escape shows the shortcode itself.
        "works too: {{&lt; vimeo 1234 &gt;}}.",
        // Unknown: the literal text, in a block of its own.
        "<p class=\"shortcode\">{{&lt; gallery dir=&quot;/img/lighthouse&quot; &gt;}}</p>",
    ] {
        assert!(hugo.contains(want), "missing {want:?} in\n{hugo}");
    }
    assert!(!hugo.contains("youtube.com/embed") && !hugo.contains("<script"));

    let jekyll = s.get("/posts/harbour-day/").text();
    for want in [
        "<pre tabindex=\"0\"><code class=\"language-ruby\">catch = boats.map { |b| b.fish }.sum\n</code></pre>",
        // Raw: the Liquid inside is shown as written (the prose around it is still prose).
        "The template said {{ page.title }} and {% if x %} – left alone.",
        "<a href=\"/posts/lighthouse-notes/\">the lighthouse</a>",
        "<a href=\"/posts/lighthouse-notes/\">the same</a>",
        "<img src=\"/img/boat.png\" alt=\"A boat\"",
        // A Jekyll include, ported as a site template unchanged.
        "<figure class=\"image\">\n  <img src=\"/img/nets.jpg\" alt=\"Nets drying on the quay\">\n  <figcaption>Nets drying on the quay</figcaption>\n</figure>",
        "<p class=\"shortcode\">{% include newsletter.html %}</p>",
    ] {
        assert!(jekyll.contains(want), "missing {want:?} in\n{jekyll}");
    }

    let zola = s.get("/posts/rust-math/").text();
    for want in [
        "<figure class=\"site-figure\">",
        "<img src=\"/img/sum.svg\" alt=\"\">",
        "<figcaption>The &quot;triangle&quot; of sums</figcaption>",
        "<aside class=\"note note-tip\">",
        "<p>Check <em>small</em> cases first.</p>",
        // Math is kept for a KaTeX script to find, backslashes and all.
        "<span class=\"math math-inline\">e^{i\\pi} + 1 = 0</span>",
        "<span class=\"math math-display\">\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}</span>",
        // Prices are prose; smart punctuation still works around them.
        "A ticket costs $5 and a map $10, “so” it’s cheap.",
        "<p class=\"shortcode\">{{ chart(data=&quot;x&quot;) }}</p>",
    ] {
        assert!(zola.contains(want), "missing {want:?} in\n{zola}");
    }
    for page in [&hugo, &jekyll, &zola] {
        assert!(!page.contains("{{&lt; figure src=\"/img") && !page.contains("{{ figure("));
    }

    // The front page's summary skips the unknown shortcode the post starts with.
    let index = s.get("/").text();
    assert!(
        index.contains("We climbed the 212 steps of the old lighthouse"),
        "{index}"
    );
    assert!(!index.contains("gallery"), "{index}");
}

#[test]
fn check_names_every_shortcode_shown_as_text() {
    let site = fixture_site();
    let (code, out, _) = nib(&site, &["check"], &[]);
    // Shown as text is a warning: every post is published.
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 public posts, 0 with problems"), "{out}");
    let lines: Vec<String> = out
        .lines()
        .filter(|l| l.contains("shown as text"))
        .map(|l| l.replace(&site.path().display().to_string(), ""))
        .collect();
    assert_eq!(
        lines,
        [
            "/posts/2016-07-26-harbour-day.markdown:23: unknown include \"newsletter.html\", shown as text",
            "/posts/lighthouse-notes.md:7: unknown shortcode \"gallery\", shown as text",
            "/posts/rust-math.md:18: unknown shortcode \"chart\", shown as text",
        ],
        "{out}"
    );
    // Without the site's templates, the Zola calls are unknown too.
    std::fs::remove_dir_all(site.path().join("shortcodes")).unwrap();
    let (_, out, _) = nib(&site, &["check"], &[]);
    assert!(
        out.contains("rust-math.md:12: unknown shortcode \"figure\"")
            && out.contains("rust-math.md:14: unknown shortcode \"note\""),
        "{out}"
    );
}

/// The site's templates are part of what the index was rendered with: a template added,
/// changed or removed while serving re-renders the posts within seconds, no restart.
#[test]
fn a_changed_template_re_renders_posts_while_serving() {
    let site = fixture_site();
    let s = TestServer::start(&site);
    let shows = |want: &str| {
        eventually(Duration::from_secs(5), || {
            s.get("/posts/rust-math/").text().contains(want)
        })
    };
    assert!(shows("<aside class=\"note note-tip\">"));
    site.write(
        "shortcodes/note.html",
        "<div class=\"callout {{ kind }}\">{{ body }}</div>\n",
    );
    assert!(shows("<div class=\"callout tip\">"), "a changed template");
    site.write(
        "shortcodes/chart.html",
        "<canvas data-src=\"{{ data }}\"></canvas>",
    );
    assert!(shows("<canvas data-src=\"x\"></canvas>"), "a new template");
    site.remove("shortcodes/note.html");
    assert!(
        shows("<p class=\"shortcode\">{% note(kind=&quot;tip&quot;) %}</p>"),
        "a removed template"
    );
    // A restart renders with the templates as they are now.
    drop(s);
    let s = TestServer::start(&site);
    let page = s.get("/posts/rust-math/").text();
    assert!(page.contains("<canvas data-src=\"x\"></canvas>"), "{page}");
}
