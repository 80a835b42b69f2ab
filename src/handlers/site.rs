//! The blog's pages: the front page and its older pages, a post, a standalone page, the
//! tag list and a tag's pages, and the 301 of a migrated blog's old URL. Each page is
//! built from its own rows, answered under a strong ETag and kept in the
//! page cache.

use std::sync::Arc;

use askama::Template;
use tiny_http::Request;

use crate::app::App;
use crate::error::Error;
use crate::render::{self, Pager, PostView};
use crate::reply::{Body, CACHE_PAGE, HTML, Reply, cached};

/// The listing pages past the first of the front page and of every tag (`/page/N/`,
/// `/tags/TAG/`, `/tags/TAG/page/N/`): what the sitemap lists and `nib build` exports
/// besides the fixed pages and the posts.
pub(crate) fn listing_pages(app: &App) -> Result<Vec<String>, Error> {
    let per = app.cfg.per_page as u64;
    let mut out: Vec<String> = (2..=(app.db.count_public()? as u64).div_ceil(per))
        .map(|n| format!("/page/{n}/"))
        .collect();
    for (slug, _, count) in app.db.tags()? {
        out.push(format!("/tags/{slug}/"));
        out.extend((2..=(count as u64).div_ceil(per)).map(|n| format!("/tags/{slug}/page/{n}/")));
    }
    Ok(out)
}

/// Where page `page` of a listing starts; a page past the end (or a number so large the
/// offset overflows) is a 404, page 1 always exists.
pub(crate) fn page_offset(page: u64, per: u32, total: u64) -> Result<u64, Error> {
    let offset = page
        .checked_sub(1)
        .and_then(|p| p.checked_mul(per as u64))
        .ok_or(Error::NotFound)?;
    if page > 1 && offset >= total {
        return Err(Error::NotFound);
    }
    Ok(offset)
}

/// The answer for a page kept in the page cache under its current ETag, if it is kept.
pub(crate) fn from_cache(app: &App, req: &Request, path: &str) -> Option<Result<Reply, Error>> {
    let etag = app.page_etag(path);
    let body = app.pages.borrow_mut().get(path, &etag)?;
    Some(cached(req, etag, app.site.changed_at, CACHE_PAGE, || {
        Ok(Reply {
            status: 200,
            headers: vec![("Content-Type", HTML.to_string())],
            body: Body::Shared(body),
        })
    }))
}

/// An HTML page that depends on the whole site (see [`App::page_etag`]), built by `build`,
/// answered and kept in the page cache. Each page's handler looks in the cache first
/// ([`from_cache`]), before the queries it needs to know the page exists.
pub(crate) fn page(
    app: &App,
    req: &Request,
    path: &str,
    build: impl FnOnce() -> Result<Reply, Error>,
) -> Result<Reply, Error> {
    let etag = app.page_etag(path);
    cached(req, etag.clone(), app.site.changed_at, CACHE_PAGE, || {
        let mut reply = build()?;
        if reply.status == 200
            && matches!(&reply.body, Body::Bytes(b) if b.len() <= crate::cache::MAX_PAGE)
            && let Body::Bytes(mut b) = std::mem::replace(&mut reply.body, Body::Empty)
        {
            // Trimmed in place (glibc shrinks the block without copying): a rendered page
            // can hold up to twice its length, and the spare bytes would be kept too.
            b.shrink_to_fit();
            let body = Arc::new(b);
            app.pages.borrow_mut().put(path, &etag, Arc::clone(&body));
            reply.body = Body::Shared(body);
        }
        Ok(reply)
    })
}

pub(crate) fn index(app: &App, req: &Request, page: u64) -> Result<Reply, Error> {
    let path = if page == 1 {
        "/".to_string()
    } else {
        format!("/page/{page}/")
    };
    if let Some(reply) = from_cache(app, req, &path) {
        return reply;
    }
    let total = app.db.count_public()? as u64;
    let per = app.cfg.per_page;
    let offset = page_offset(page, per, total)?;
    self::page(app, req, &path, || {
        let posts = app.db.list_posts(None, per, offset)?;
        let site = app.site_view();
        let page = render::IndexPage {
            site: &site,
            path: &path,
            posts: posts.into_iter().map(PostView::new).collect(),
            pager: Pager::new("/", page, total, per),
        };
        Ok(Reply::html(page.render()?))
    })
}

pub(crate) fn post(app: &App, req: &Request, slug: &str) -> Result<Reply, Error> {
    // A kept page is looked for first, by the route as asked: only a post's own page is
    // kept under its route, so a hit needs no query at all.
    if let Some(reply) = from_cache(app, req, &format!("/posts/{slug}/")) {
        return reply;
    }
    let Some(row) = app.db.post_by_slug(slug)? else {
        return Err(Error::NotFound);
    };
    let path = format!("/posts/{}/", row.slug);
    page(app, req, &path, || {
        let (older, newer) = app.db.neighbours(row.date, &row.slug)?;
        let site = app.site_view();
        let page = render::PostPage {
            site: &site,
            path: &path,
            post: PostView::new(row),
            older,
            newer,
        };
        Ok(Reply::html(page.render()?))
    })
}

/// A standalone page (`pages/SLUG.md`) at `/SLUG/`: its title and body, no date, tags or
/// neighbours, with the cards of a post.
pub(crate) fn standalone(app: &App, req: &Request, slug: &str) -> Result<Reply, Error> {
    let path = format!("/{slug}/");
    if let Some(reply) = from_cache(app, req, &path) {
        return reply;
    }
    let Some(mut row) = app.db.page_by_slug(slug)? else {
        return Err(Error::NotFound);
    };
    // A page has no folder of its own: a relative image would name nothing.
    row.image = row
        .image
        .filter(|i| i.starts_with('/') || i.starts_with("https://") || i.starts_with("http://"));
    page(app, req, &path, || {
        let site = app.site_view();
        let page = render::StandalonePage {
            site: &site,
            path: &path,
            page: PostView::new(row),
        };
        Ok(Reply::html(page.render()?))
    })
}

pub(crate) fn tags(app: &App, req: &Request) -> Result<Reply, Error> {
    if let Some(reply) = from_cache(app, req, "/tags/") {
        return reply;
    }
    page(app, req, "/tags/", || {
        let site = app.site_view();
        let page = render::TagsPage {
            site: &site,
            path: "/tags/",
            tags: app.db.tags()?,
        };
        Ok(Reply::html(page.render()?))
    })
}

pub(crate) fn tag_page(app: &App, req: &Request, tag: &str, page: u64) -> Result<Reply, Error> {
    // Tags compare by their key: `/tags/Rust/` and `/tags/C++/` are `/tags/rust/` and
    // `/tags/c-plus-plus/`, where their page is.
    let key = crate::routes::tag_key(tag);
    if key != tag && !key.is_empty() {
        let mut to = format!("/tags/{}/", crate::routes::encode_component(&key));
        if page > 1 {
            to.push_str(&format!("page/{page}/"));
        }
        return Ok(Reply::redirect(301, &to));
    }
    let prefix = format!("/tags/{tag}/");
    let path = if page == 1 {
        prefix.clone()
    } else {
        format!("{prefix}page/{page}/")
    };
    if let Some(reply) = from_cache(app, req, &path) {
        return reply;
    }
    let Some((name, count)) = app.db.tag(tag)? else {
        return Err(Error::NotFound);
    };
    let per = app.cfg.per_page;
    let offset = page_offset(page, per, count as u64)?;
    self::page(app, req, &path, || {
        let posts = app.db.list_posts(Some(tag), per, offset)?;
        let site = app.site_view();
        let page = render::TagPage {
            site: &site,
            path: &path,
            tag,
            name,
            count,
            posts: posts.into_iter().map(PostView::new).collect(),
            pager: Pager::new(&prefix, page, count as u64, per),
        };
        Ok(Reply::html(page.render()?))
    })
}

/// A migrated blog's old URL: a path no route claims (nor a file of `static/`, a short
/// link or a post) that a post declared in `aliases`, `redirect_from` or Zola's `path`, or
/// that the site's `old_permalinks` pattern names, answered with a 301 to the post. Asked
/// only after everything else said 404, so no route, file or link can be shadowed.
pub(crate) fn old_url(app: &App, path: &str) -> Result<Reply, Error> {
    let key = crate::oldurls::alias_key(path).ok_or(Error::NotFound)?;
    let slug = match app.db.alias_target(&key)? {
        Some(slug) => slug,
        None => permalink_target(app, path)?.ok_or(Error::NotFound)?,
    };
    let to = format!("/posts/{}/", crate::routes::encode_component(&slug));
    // Cached for a while, not for ever: the post may be renamed again or expire.
    Ok(Reply::redirect(301, &to).header("Cache-Control", "public, max-age=3600"))
}

/// The post an `old_permalinks` path names: by its slug (as written, or slugified, as a
/// Jekyll `:title` may differ in case), on the day the path says, if it says one.
fn permalink_target(app: &App, path: &str) -> Result<Option<String>, Error> {
    let Some(m) = app
        .cfg
        .old_permalinks
        .as_ref()
        .and_then(|p| p.matches(path))
    else {
        return Ok(None);
    };
    let mut candidates = vec![m.slug.clone()];
    let slugified = crate::routes::slugify(&m.slug);
    if slugified != m.slug {
        candidates.push(slugified);
    }
    for slug in candidates {
        let Some((date, offset)) = app.db.post_date(&slug)? else {
            continue;
        };
        let (y, mo, d) = crate::dates::civil_at(date, offset);
        let same_day = m.year.is_none_or(|v| v == y)
            && m.month.is_none_or(|v| v == mo)
            && m.day.is_none_or(|v| v == d);
        if same_day {
            return Ok(Some(slug));
        }
    }
    Ok(None)
}
