//! The machine-read answers: the feeds (Atom, RSS and JSON Feed for the site, Atom for
//! each tag) and the sitemap, produced a piece at a time as they are sent, and
//! `robots.txt`.

use askama::Template;
use tiny_http::Request;

use crate::app::App;
use crate::dates;
use crate::error::Error;
use crate::handlers::files::static_file;
use crate::handlers::site::listing_pages;
use crate::render::{self, PostView};
use crate::reply::{Body, CACHE_PAGE, Reply, TEXT, XML, cached};

/// A streamed answer: the sitemap (a line per post) and the feeds (twenty full posts, the
/// largest answers nib gives) never sit in memory whole: measured, a feed built in one
/// string raised peak RSS by 330 KB. `fill` is called for each piece (see [`Fill`]).
pub(crate) fn chunked(
    content_type: &str,
    fill: impl FnMut(&App, &mut Vec<u8>) -> Result<bool, Error> + 'static,
) -> Reply {
    Reply {
        status: 200,
        headers: vec![("Content-Type", content_type.into())],
        body: Body::Stream(Box::new(fill)),
    }
}

/// The three feed formats nib writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Atom,
    Rss,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }
}

/// A feed of the newest posts, of the whole site or of one tag (`tag`: its slug and
/// display name; tag feeds are Atom): the head, then one entry at a time, then the tail.
pub(crate) fn feed_reply(
    app: &App,
    format: Format,
    tag: Option<(String, String)>,
) -> Result<Reply, Error> {
    let entries = match &tag {
        None => app.db.post_slugs_after(None, render::FEED_ENTRIES)?,
        Some((slug, _)) => app.db.tag_post_keys(slug, render::FEED_ENTRIES)?,
    };
    let updated = render::feed_updated(entries.iter().map(|k| (k.date, k.updated)));
    let (title, feed_path, page_path) = match &tag {
        None => (app.cfg.title.clone(), "/feed.xml".into(), "/".into()),
        Some((slug, name)) => (
            format!("{} · #{name}", app.cfg.title),
            format!("/tags/{slug}/feed.xml"),
            format!("/tags/{slug}/"),
        ),
    };
    let mut next = 0;
    // Whether an item is out yet: JSON Feed items are separated by commas, and a post
    // deleted since the list was read leaves a gap where the first one was.
    let mut wrote_item = false;
    Ok(chunked(format.content_type(), move |app, buf| {
        let site = app.site_view();
        let author = if app.cfg.author.is_empty() {
            &app.cfg.title
        } else {
            &app.cfg.author
        };
        match next {
            0 => match format {
                Format::Atom => render::AtomHead {
                    site: &site,
                    title: &title,
                    feed_path: &feed_path,
                    page_path: &page_path,
                    updated: dates::rfc3339(updated),
                    author,
                }
                .write_into(buf)?,
                Format::Rss => render::RssHead {
                    site: &site,
                    updated: dates::http(updated),
                }
                .write_into(buf)?,
                Format::Json => render::json_feed_head(buf, &site, author),
            },
            n if n <= entries.len() => {
                // A post deleted since the list was read is left out.
                if let Some(row) = app.db.post_by_slug(&entries[n - 1].slug)? {
                    let mut post = PostView::new(row);
                    // RSS and JSON Feed have no `xml:base`: a post's relative links (a
                    // bundle's pictures) are made absolute, as they resolve on its page.
                    if format != Format::Atom {
                        let page = format!(
                            "{}/posts/{}/",
                            site.base,
                            crate::routes::encode_component(&post.slug)
                        );
                        if let Some(html) = crate::posts::rebase_relative_urls(&post.html, &page) {
                            post.html = html;
                        }
                    }
                    match format {
                        Format::Atom => render::AtomEntry { site: &site, post }.write_into(buf)?,
                        Format::Rss => render::RssEntry {
                            site: &site,
                            author,
                            post,
                        }
                        .write_into(buf)?,
                        Format::Json => {
                            render::json_feed_item(buf, &site, &post, !wrote_item);
                            wrote_item = true;
                        }
                    }
                }
            }
            n if n == entries.len() + 1 => buf.extend_from_slice(
                match format {
                    Format::Atom => render::ATOM_TAIL,
                    Format::Rss => render::RSS_TAIL,
                    Format::Json => render::JSON_FEED_TAIL,
                }
                .as_bytes(),
            ),
            _ => return Ok(false),
        }
        next += 1;
        Ok(true)
    }))
}

/// `/feed.xml`, `/rss.xml` and `/feed.json`.
pub(crate) fn feed(app: &App, req: &Request, format: Format) -> Result<Reply, Error> {
    let path = match format {
        Format::Atom => "/feed.xml",
        Format::Rss => "/rss.xml",
        Format::Json => "/feed.json",
    };
    cached(
        req,
        app.page_etag(path),
        app.site.changed_at,
        CACHE_PAGE,
        || feed_reply(app, format, None),
    )
}

/// `/tags/TAG/feed.xml`: the tag's newest posts as Atom; a 404 for a tag no public post has.
pub(crate) fn tag_feed(app: &App, req: &Request, tag: &str) -> Result<Reply, Error> {
    let Some((name, _)) = app.db.tag(tag)? else {
        return Err(Error::NotFound);
    };
    let tag = (tag.to_string(), name);
    cached(
        req,
        app.page_etag(&format!("/tags/{}/feed.xml", tag.0)),
        app.site.changed_at,
        CACHE_PAGE,
        || feed_reply(app, Format::Atom, Some(tag)),
    )
}

/// The sitemap: the listing pages first, then the posts a page of 200 at a time.
pub(crate) fn sitemap_reply(app: &App) -> Result<Reply, Error> {
    // Listing pages change with their newest post; using its date keeps the sitemap the
    // same from run to run (and between `serve` and `build`).
    let at = Some(app.db.newest_post()?).filter(|t| *t > 0);
    let mut started = false;
    let mut cursor: Option<crate::db::PostKey> = None;
    let mut done = false;
    Ok(chunked(XML, move |app, buf| {
        if done {
            return Ok(false);
        }
        let base = app.cfg.base();
        if !started {
            started = true;
            buf.extend_from_slice(render::SITEMAP_HEAD.as_bytes());
            for page in crate::routes::sitemap_pages() {
                render::sitemap_url(buf, base, page, at);
            }
            // Standalone pages, after the fixed ones; no `lastmod`: a page has no date.
            for slug in app.db.page_slugs()? {
                // `sitemap_url` encodes the path's segments itself.
                render::sitemap_url(buf, base, &format!("/{slug}/"), None);
            }
            for page in listing_pages(app)? {
                render::sitemap_url(buf, base, &page, at);
            }
            return Ok(true);
        }
        let rows = app.db.post_slugs_after(cursor.as_ref(), 200)?;
        for k in &rows {
            let lastmod = k.updated.unwrap_or(k.date).max(k.date);
            render::sitemap_url(buf, base, &format!("/posts/{}/", k.slug), Some(lastmod));
        }
        match rows.into_iter().last() {
            Some(last) => cursor = Some(last),
            None => {
                buf.extend_from_slice(render::SITEMAP_TAIL.as_bytes());
                done = true;
            }
        }
        Ok(true)
    }))
}

pub(crate) fn sitemap(app: &App, req: &Request) -> Result<Reply, Error> {
    cached(
        req,
        app.page_etag("/sitemap.xml"),
        app.site.changed_at,
        CACHE_PAGE,
        || sitemap_reply(app),
    )
}

pub(crate) fn robots(app: &App, req: &Request) -> Result<Reply, Error> {
    // The site's own robots.txt wins.
    if app.cfg.static_dir.join("robots.txt").is_file() {
        return static_file(app, req, "robots.txt");
    }
    cached(
        req,
        app.page_etag("/robots.txt"),
        app.site.changed_at,
        CACHE_PAGE,
        || Ok(Reply::new(200, TEXT, robots_txt(app.cfg.base()))),
    )
}

/// The generated `robots.txt`: everything may be crawled but the owner's folders (from the
/// route table), and the sitemap is named.
fn robots_txt(base: &str) -> String {
    let mut out = String::from("User-agent: *\nAllow: /\n");
    for name in crate::routes::disallowed() {
        out.push_str(&format!("Disallow: /{name}/\n"));
    }
    out.push_str(&format!("\nSitemap: {base}/sitemap.xml\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::PostRow;
    use crate::render::Site;

    #[test]
    fn robots_keeps_crawlers_out_of_the_owners_folders() {
        assert_eq!(
            robots_txt("https://example.org"),
            "User-agent: *\nAllow: /\nDisallow: /admin/\nDisallow: /api/\n\nSitemap: https://example.org/sitemap.xml\n"
        );
    }

    fn post(slug: &str, html: &str, tags: &[&str]) -> PostView {
        PostView::new(PostRow {
            slug: slug.into(),
            title: format!("Title \"{slug}\""),
            date: 1_700_000_000,
            updated: None,
            summary: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: Some("about it".into()),
            html: html.into(),
            offset: 0,
            image: None,
        })
    }

    #[test]
    fn the_json_feed_is_one_valid_document_whatever_the_number_of_items() {
        let site = Site {
            title: "A \"quoted\" site",
            description: "",
            author: "Me",
            base: "https://x.example",
            nav: &[],
            footer: &[],
            image: None,
        };
        let posts = [
            post("a", "<p>one</p>", &["C++", "c"]),
            post("b", "<p>two \\ \"three\"</p>", &[]),
        ];
        for n in 0..=posts.len() {
            let mut buf = Vec::new();
            render::json_feed_head(&mut buf, &site, site.author);
            for (i, p) in posts[..n].iter().enumerate() {
                render::json_feed_item(&mut buf, &site, p, i == 0);
            }
            buf.extend_from_slice(render::JSON_FEED_TAIL.as_bytes());
            let doc: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(doc["version"], "https://jsonfeed.org/version/1.1");
            assert_eq!(doc["title"], "A \"quoted\" site");
            assert_eq!(doc["feed_url"], "https://x.example/feed.json");
            let items = doc["items"].as_array().unwrap();
            assert_eq!(items.len(), n);
            if n > 1 {
                assert_eq!(items[0]["url"], "https://x.example/posts/a/");
                assert_eq!(items[0]["tags"], serde_json::json!(["C++", "c"]));
                assert_eq!(items[1]["content_html"], "<p>two \\ \"three\"</p>");
                assert_eq!(items[1]["date_modified"], items[1]["date_published"]);
            }
        }
    }
}
