//! Turning content into bytes: markdown into HTML (once per file change, never per
//! request), the askama page templates, the Atom and RSS feeds and the sitemap. Everything
//! here is a pure function of its arguments, so `nib serve` and `nib build` produce the
//! same bytes for the same content.

use askama::Template;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

use crate::dates;
use crate::db::PostRow;

/// 64-bit FNV-1a: a small, stable hash for ETags and change detection (not for secrets).
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
    pub fn hash_str(s: &str) -> u64 {
        let mut h = Fnv::new();
        h.write(s.as_bytes());
        h.finish()
    }
}

/// Escapes text for HTML and XML bodies and attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The output of rendering one post body.
pub(crate) struct Rendered {
    pub html: String,
    /// The HTML of what stands before `<!-- more -->`, when the marker is there.
    pub summary: Option<String>,
    /// The HTML of the first paragraph (empty when there is none).
    pub first_paragraph: String,
}

const MORE: &str = "<!-- more -->";

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_SMART_PUNCTUATION
        | Options::ENABLE_HEADING_ATTRIBUTES
}

/// Gives every heading without an explicit `{#id}` an id made from its text (`## Why
/// SQLite?` → `why-sqlite`), made unique within the page, so sections can be linked.
fn with_heading_ids(events: Vec<Event<'_>>) -> Vec<Event<'_>> {
    let mut used = std::collections::HashSet::new();
    for e in &events {
        if let Event::Start(Tag::Heading { id: Some(id), .. }) = e {
            used.insert(id.to_string());
        }
    }
    let mut out = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading {
            level,
            id: None,
            classes,
            attrs,
        }) = &events[i]
        {
            let mut text = String::new();
            for e in &events[i + 1..] {
                match e {
                    Event::End(TagEnd::Heading(_)) => break,
                    Event::Text(t) | Event::Code(t) => text.push_str(t),
                    _ => {}
                }
            }
            let base = match crate::posts::slugify(&text) {
                s if s.is_empty() => "section".to_string(),
                s => s,
            };
            let mut id = base.clone();
            let mut n = 1;
            while !used.insert(id.clone()) {
                id = format!("{base}-{n}");
                n += 1;
            }
            out.push(Event::Start(Tag::Heading {
                level: *level,
                id: Some(CowStr::from(id)),
                classes: classes.clone(),
                attrs: attrs.clone(),
            }));
        } else {
            out.push(events[i].clone());
        }
        i += 1;
    }
    out
}

fn to_html(events: &[Event<'_>]) -> String {
    let mut s = String::new();
    html::push_html(&mut s, events.iter().cloned());
    s
}

/// Prefixes footnote labels, so a footnote called `intro` cannot take the id of a heading
/// `# Intro`. (Listing pages show summaries, which rarely carry footnotes; two posts'
/// `[^1]` on one listing page would still share an id.)
fn with_footnote_prefix(events: &mut [Event<'_>]) {
    for e in events.iter_mut() {
        match e {
            Event::FootnoteReference(name) => *name = CowStr::from(format!("fn-{name}")),
            Event::Start(Tag::FootnoteDefinition(name)) => {
                *name = CowStr::from(format!("fn-{name}"))
            }
            _ => {}
        }
    }
}

/// Renders a post body: CommonMark plus tables, footnotes, strikethrough, task lists,
/// heading ids and smart punctuation. Raw HTML is the author's and is kept.
pub(crate) fn markdown(body: &str) -> Rendered {
    let mut events = with_heading_ids(Parser::new_ext(body, options()).collect());
    with_footnote_prefix(&mut events);
    let html = to_html(&events);
    let first_paragraph = match events
        .iter()
        .position(|e| matches!(e, Event::Start(Tag::Paragraph)))
    {
        Some(start) => {
            let end = events[start..]
                .iter()
                .position(|e| matches!(e, Event::End(TagEnd::Paragraph)))
                .map(|p| start + p + 1)
                .unwrap_or(events.len());
            to_html(&events[start..end])
        }
        None => String::new(),
    };
    // The marker counts only as an HTML block of its own (a line by itself, outside code),
    // as Zola and Hugo read it; the parser already knows what is code.
    let summary = events
        .iter()
        .position(|e| matches!(e, Event::Html(t) if t.trim() == MORE))
        .map(|at| {
            let start = if at > 0 && matches!(events[at - 1], Event::Start(Tag::HtmlBlock)) {
                at - 1
            } else {
                at
            };
            to_html(&events[..start])
        })
        .filter(|s| !s.trim().is_empty());
    Rendered {
        html,
        summary,
        first_paragraph,
    }
}

/// Site-wide values every page shows.
pub(crate) struct Site<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub author: &'a str,
    /// Absolute, without a trailing slash.
    pub base: &'a str,
}

/// A post as templates see it.
pub(crate) struct PostView {
    pub slug: String,
    pub title: String,
    pub date_iso: String,
    pub date_human: String,
    pub date_rfc822: String,
    pub updated_iso: Option<String>,
    pub updated_human: Option<String>,
    /// (url slug, display name)
    pub tags: Vec<(String, String)>,
    pub summary: String,
    pub html: String,
    pub description: String,
}

impl PostView {
    pub fn new(p: PostRow) -> PostView {
        let description = p
            .description
            .clone()
            .unwrap_or_else(|| plain_text(&p.summary, 200));
        PostView {
            date_iso: dates::rfc3339(p.date),
            date_human: dates::human(p.date),
            date_rfc822: dates::http(p.date),
            updated_iso: p.updated.map(dates::rfc3339),
            updated_human: p
                .updated
                .filter(|u| dates::ymd(*u) != dates::ymd(p.date))
                .map(dates::human),
            tags: p
                .tags
                .iter()
                .map(|t| (crate::posts::slugify(t), t.clone()))
                .collect(),
            slug: p.slug,
            title: p.title,
            summary: p.summary,
            html: p.html,
            description,
        }
    }
}

/// Text content of an HTML fragment, cut at a word boundary, for meta descriptions.
///
/// One pass that stops as soon as the text is known to be cut: it runs on every view of a
/// post without a description, and reading a whole long post took 7% of the request.
pub(crate) fn plain_text(html: &str, max: usize) -> String {
    const ENTITIES: [(&str, char); 6] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&#x27;", '\''),
    ];
    let mut out = String::with_capacity(max + 8);
    let mut chars = 0;
    let mut in_tag = false;
    let mut rest = html;
    // Two characters past `max` settle it: the text is cut even if one is a trailing space.
    while chars <= max + 1 {
        let Some(c) = rest.chars().next() else { break };
        let mut step = c.len_utf8();
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                    chars += 1;
                }
            }
            // Decoded in the same pass, each entity once: `&amp;lt;` stays `&lt;`.
            '&' => {
                let (e, d) = ENTITIES
                    .into_iter()
                    .find(|(e, _)| rest.starts_with(e))
                    .unwrap_or(("&", '&'));
                out.push(d);
                step = e.len();
                chars += 1;
            }
            c => {
                out.push(c);
                chars += 1;
            }
        }
        rest = &rest[step..];
    }
    let out = out.trim_end();
    if out.chars().count() <= max {
        return out.to_string();
    }
    let cut: String = out.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map(|(a, _)| a).unwrap_or(&cut);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// Links between pages of a listing.
pub(crate) struct Pager {
    pub newer: Option<String>,
    pub older: Option<String>,
    pub page: u64,
    pub pages: u64,
}

impl Pager {
    /// `prefix` is the listing's first page (`/` or `/tags/rust/`); page N lives at
    /// `prefix + "page/N/"`.
    pub fn new(prefix: &str, page: u64, total: u64, per_page: u32) -> Pager {
        let pages = total.div_ceil(per_page as u64).max(1);
        let link = |n: u64| {
            if n == 1 {
                prefix.to_string()
            } else {
                format!("{prefix}page/{n}/")
            }
        };
        Pager {
            newer: (page > 1).then(|| link(page - 1)),
            older: (page < pages).then(|| link(page + 1)),
            page,
            pages,
        }
    }
}

#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub posts: Vec<PostView>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "post.html")]
pub(crate) struct PostPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub post: PostView,
    /// (slug, title)
    pub older: Option<(String, String)>,
    pub newer: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "tags.html")]
pub(crate) struct TagsPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    /// (slug, name, count)
    pub tags: Vec<(String, String, i64)>,
}

#[derive(Template)]
#[template(path = "tag.html")]
pub(crate) struct TagPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub name: String,
    pub count: i64,
    pub posts: Vec<PostView>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "404.html")]
pub(crate) struct NotFoundPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
}

/// The Atom feed up to its first entry; the entries follow one at a time.
#[derive(Template)]
#[template(path = "atom_head.xml")]
pub(crate) struct AtomHead<'a> {
    pub site: &'a Site<'a>,
    pub updated: String,
    pub author: &'a str,
}

#[derive(Template)]
#[template(path = "atom_entry.xml")]
pub(crate) struct AtomEntry<'a> {
    pub site: &'a Site<'a>,
    pub post: PostView,
}

pub(crate) const ATOM_TAIL: &str = "</feed>\n";

/// The RSS feed up to its first item; the items follow one at a time.
#[derive(Template)]
#[template(path = "rss_head.xml")]
pub(crate) struct RssHead<'a> {
    pub site: &'a Site<'a>,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "rss_entry.xml")]
pub(crate) struct RssEntry<'a> {
    pub site: &'a Site<'a>,
    pub author: &'a str,
    pub post: PostView,
}

pub(crate) const RSS_TAIL: &str = "</channel>\n</rss>\n";

/// How many entries the feeds carry.
pub(crate) const FEED_ENTRIES: u32 = 20;

/// The feed's own `updated`: the newest entry's date, so it moves only with content.
/// `entries` are (date, updated) pairs.
pub(crate) fn feed_updated(entries: impl Iterator<Item = (i64, Option<i64>)>) -> i64 {
    entries
        .map(|(date, updated)| updated.unwrap_or(date).max(date))
        .max()
        .unwrap_or(0)
}

pub(crate) const SITEMAP_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n";
pub(crate) const SITEMAP_TAIL: &str = "</urlset>\n";

/// One `<url>` entry of the sitemap.
pub(crate) fn sitemap_url(out: &mut Vec<u8>, base: &str, path: &str, lastmod: Option<i64>) {
    out.extend_from_slice(b"  <url><loc>");
    // The sitemap protocol wants URLs escaped: slugs may hold letters like `é`.
    let path: Vec<String> = path
        .split('/')
        .map(crate::links::encode_component)
        .collect();
    out.extend_from_slice(escape(&format!("{base}{}", path.join("/"))).as_bytes());
    out.extend_from_slice(b"</loc>");
    if let Some(t) = lastmod {
        out.extend_from_slice(format!("<lastmod>{}</lastmod>", dates::ymd(t)).as_bytes());
    }
    out.extend_from_slice(b"</url>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_extensions() {
        let cases = [
            ("| a | b |\n|---|---|\n| 1 | 2 |", "<table>"),
            ("x[^1]\n\n[^1]: note", "footnote-definition"),
            ("~~gone~~", "<del>gone</del>"),
            ("- [x] done", "type=\"checkbox\""),
            ("## Why SQLite?", "<h2 id=\"why-sqlite\">"),
            ("## Custom {#mine}", "<h2 id=\"mine\">"),
            ("\"quoted\" -- dash...", "“quoted” – dash…"),
            (
                "<div class=\"raw\">kept</div>",
                "<div class=\"raw\">kept</div>",
            ),
        ];
        for (md, want) in cases {
            let html = markdown(md).html;
            assert!(html.contains(want), "{md:?} → {html}");
        }
    }

    #[test]
    fn heading_ids_are_unique() {
        let html = markdown("## Notes\n\n## Notes\n\n## Notes").html;
        for id in ["notes", "notes-1", "notes-2"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{html}");
        }
    }

    #[test]
    fn more_marker_only_on_its_own_line() {
        assert_eq!(
            markdown("a\n\n<!-- more -->\n\nb").summary.as_deref(),
            Some("<p>a</p>\n")
        );
        assert!(markdown("a <!-- more --> b").summary.is_none());
        // Regression: a marker shown inside a code block cut the summary mid-`<pre>`.
        assert!(
            markdown("a\n\n```\n<!-- more -->\n```\n\nb")
                .summary
                .is_none()
        );
    }

    #[test]
    fn footnote_ids_do_not_clash_with_headings() {
        let html = markdown("# Intro\n\ntext[^intro]\n\n[^intro]: note").html;
        assert!(
            html.contains("id=\"intro\"") && html.contains("id=\"fn-intro\""),
            "{html}"
        );
        assert!(html.contains("href=\"#fn-intro\""), "{html}");
    }

    #[test]
    fn pager_links() {
        let p = Pager::new("/", 1, 25, 10);
        assert_eq!(
            (p.newer, p.older.as_deref(), p.pages),
            (None, Some("/page/2/"), 3)
        );
        let p = Pager::new("/tags/x/", 2, 25, 10);
        assert_eq!(
            (p.newer.as_deref(), p.older.as_deref()),
            (Some("/tags/x/"), Some("/tags/x/page/3/"))
        );
        let p = Pager::new("/", 1, 0, 10);
        assert_eq!((p.newer, p.older, p.pages), (None, None, 1));
    }

    #[test]
    fn plain_text_cuts_at_words() {
        assert_eq!(
            plain_text("<p>Hello <b>big</b> world &amp; more</p>", 100),
            "Hello big world & more"
        );
        assert_eq!(plain_text("<p>one two three four</p>", 9), "one two…");
        // A long text is cut the same whether or not it was read to the end.
        let long = format!("<p>{}</p>", "word &amp; ".repeat(2000));
        assert_eq!(plain_text(&long, 20), "word & word & word…");
        let entities = format!("<p>{}</p>", "&quot;".repeat(500));
        assert_eq!(plain_text(&entities, 10), format!("{}…", "\"".repeat(10)));
        assert_eq!(
            plain_text("<p>&amp;lt;tag&amp;gt; &amp; &quot;q&quot;</p>", 100),
            "&lt;tag&gt; & \"q\""
        );
    }
}
