//! The machine-read answers: the Atom and RSS feeds and the sitemap, produced a piece at a
//! time as they are sent, and `robots.txt`.

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

/// The Atom (`atom`) or RSS feed: the head, then one entry at a time, then the tail.
pub(crate) fn feed_reply(app: &App, atom: bool) -> Result<Reply, Error> {
    let entries = app.db.post_slugs_after(None, render::FEED_ENTRIES)?;
    let updated = render::feed_updated(entries.iter().map(|k| (k.date, k.updated)));
    let ctype = if atom {
        "application/atom+xml; charset=utf-8"
    } else {
        "application/rss+xml; charset=utf-8"
    };
    let mut next = 0;
    Ok(chunked(ctype, move |app, buf| {
        let site = app.site_view();
        let author = if app.cfg.author.is_empty() {
            &app.cfg.title
        } else {
            &app.cfg.author
        };
        match next {
            0 if atom => render::AtomHead {
                site: &site,
                updated: dates::rfc3339(updated),
                author,
            }
            .write_into(buf)?,
            0 => render::RssHead {
                site: &site,
                updated: dates::http(updated),
            }
            .write_into(buf)?,
            n if n <= entries.len() => {
                // A post deleted since the list was read is left out.
                if let Some(row) = app.db.post_by_slug(&entries[n - 1].slug)? {
                    let post = PostView::new(row);
                    if atom {
                        render::AtomEntry { site: &site, post }.write_into(buf)?
                    } else {
                        render::RssEntry {
                            site: &site,
                            author,
                            post,
                        }
                        .write_into(buf)?
                    }
                }
            }
            n if n == entries.len() + 1 => buf.extend_from_slice(
                if atom {
                    render::ATOM_TAIL
                } else {
                    render::RSS_TAIL
                }
                .as_bytes(),
            ),
            _ => return Ok(false),
        }
        next += 1;
        Ok(true)
    }))
}

pub(crate) fn feed(app: &App, req: &Request, atom: bool) -> Result<Reply, Error> {
    let path = if atom { "/feed.xml" } else { "/rss.xml" };
    cached(
        req,
        app.page_etag(path),
        app.site.changed_at,
        CACHE_PAGE,
        || feed_reply(app, atom),
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

    #[test]
    fn robots_keeps_crawlers_out_of_the_owners_folders() {
        assert_eq!(
            robots_txt("https://example.org"),
            "User-agent: *\nAllow: /\nDisallow: /admin/\nDisallow: /api/\n\nSitemap: https://example.org/sitemap.xml\n"
        );
    }
}
