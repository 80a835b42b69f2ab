//! The handlers, one module per part of the site, and [`route`], which sends a parsed
//! route to its handler (and a path no route answered through its fallbacks).

pub(crate) mod api;
pub(crate) mod errors;
pub(crate) mod feeds;
pub(crate) mod files;
pub(crate) mod links;
pub(crate) mod owner;
pub(crate) mod site;

use tiny_http::{Method, Request};

use crate::app::App;
use crate::error::Error;
use crate::reply::Reply;
use crate::request::Target;
use crate::routes::{Owner as RouteOwner, Route};
use feeds::{Format, feed, robots, sitemap, tag_feed};
use files::static_file;
use site::{index, post as post_page, tag_page, tags};

/// Answers one request by its route (see `routes`). Only reads `app`; the loop has
/// refreshed the index already. The method is checked first, so a POST to a page never
/// renders it (or, on the API, counts a failed login) only to answer 405.
pub(crate) fn route(app: &App, req: &mut Request, t: &Target) -> Result<Reply, Error> {
    let route = Route::parse(&t.path);
    if route == Route::NotFound {
        return match t.method {
            Method::Get | Method::Head => unclaimed(app, req, t),
            _ => Err(Error::NotFound),
        };
    }
    if !route.methods().accepts(&t.method) {
        return Err(Error::MethodNotAllowed);
    }
    let post = t.method == Method::Post;
    match route {
        Route::Home(n) => index(app, req, n),
        Route::Moved(to) => Ok(Reply::redirect(301, &to)),
        // A missing post or short link may be a migrated blog's old URL.
        Route::Post(slug) => or_old_url(app, t, post_page(app, req, slug)),
        Route::Tags => tags(app, req),
        Route::Tag(tag, n) => tag_page(app, req, tag, n),
        Route::Atom => feed(app, req, Format::Atom),
        Route::Rss => feed(app, req, Format::Rss),
        Route::JsonFeed => feed(app, req, Format::Json),
        Route::TagFeed(tag) => tag_feed(app, req, tag),
        Route::Sitemap => sitemap(app, req),
        Route::Robots => robots(app, req),
        Route::Healthz => Ok(match app.db.ping() {
            Ok(()) => Reply::text(200, "ok"),
            Err(e) => {
                eprintln!("nib: healthz: {e}");
                Reply::text(503, "database unavailable")
            }
        }
        .header("Cache-Control", "no-store")),
        Route::File(rel) => static_file(app, req, rel),
        // A file no bundle has may be in `static/posts/…`, which Hugo serves at the same
        // path (and nib did, before bundles).
        Route::PostFile(slug, rel) => match files::bundle_file(app, req, slug, rel) {
            Err(Error::NotFound) => static_file(app, req, &t.path[1..]),
            answered => answered,
        },
        Route::Owner(page) => match page {
            RouteOwner::Home => owner::dashboard(app, req, t),
            RouteOwner::Login if post => owner::login(app, req),
            RouteOwner::Login => owner::login_page(app, t),
            RouteOwner::Logout => owner::logout(app, req),
            RouteOwner::Share if post => owner::share_post(app, req),
            RouteOwner::Share => owner::share_page(app, req, t),
            RouteOwner::Create => owner::create_form(app, req),
            RouteOwner::Delete(code) if post => owner::delete_form(app, req, code),
            RouteOwner::Delete(code) => owner::delete_page(app, req, t, code),
            RouteOwner::Edit(code) if post => owner::edit_form(app, req, code),
            RouteOwner::Edit(code) => owner::edit_page(app, req, t, code),
            RouteOwner::NoForm => Err(Error::MethodNotAllowed),
        },
        Route::Manifest => owner::manifest(app),
        Route::ApiLinks if post => api::api_create(app, req),
        Route::ApiLinks => api::api_list(app, req, t),
        Route::ApiLink(code) if t.method == Method::Delete => api::api_delete(app, req, code),
        Route::ApiLink(code) if t.method == Method::Patch => api::api_edit(app, req, code),
        Route::ApiLink(code) => api::api_get(app, req, code),
        // A short link wins; else the path is as unclaimed as any other.
        Route::Short(code) => match links::redirect(app, req, t, code) {
            Err(Error::NotFound) => unclaimed(app, req, t),
            answered => answered,
        },
        Route::Page(slug) => or_old_url(app, t, site::standalone(app, req, slug)),
        Route::Preview(code) => links::preview(app, req, t, code),
        Route::NotFound => Err(Error::NotFound),
    }
}

/// A path no route (or short link) answered, in this order: a file of `static/` at the
/// site root, as Hugo, Zola and Jekyll serve theirs (`/img/x.png` from `static/img/x.png`,
/// `/CNAME`), through the same checks as `/static/…`; a standalone page asked for without
/// its slash (`/about` → 301 `/about/`); a migrated blog's old URL (301); else 404.
fn unclaimed(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    match static_file(app, req, &t.path[1..]) {
        Err(Error::NotFound) => {}
        answered => return answered,
    }
    let segment = &t.path[1..];
    if !segment.is_empty() && !segment.contains('/') && app.db.has_page(segment)? {
        return Ok(Reply::redirect(
            301,
            &format!("/{}/", crate::routes::encode_component(segment)),
        ));
    }
    site::old_url(app, &t.path)
}

/// `answer`, or when it is a 404, the 301 of an old URL (`site::old_url`) if the path is
/// one: the order is route, file of `static/` at the root, old URL, 404.
fn or_old_url(app: &App, t: &Target, answer: Result<Reply, Error>) -> Result<Reply, Error> {
    match answer {
        Err(Error::NotFound) => site::old_url(app, &t.path),
        other => other,
    }
}
