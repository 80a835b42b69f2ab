//! The handlers, one module per part of the site, and [`answer`], which sends a parsed
//! route to its handler.

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
use feeds::{feed, robots, sitemap};
use files::static_file;
use site::{index, post, tag_page, tags};

/// Routes one request. Only reads `app`; the loop has refreshed the index already.
pub(crate) fn route(app: &App, req: &mut Request, t: &Target) -> Result<Reply, Error> {
    let path = t.path.as_str();
    let segs: Vec<&str> = path[1..].split('/').collect();
    // The method is checked before the handler runs: a POST to a page must not render it
    // (or, on the API, count a failed login) only to answer 405.
    macro_rules! read_only {
        ($reply:expr) => {
            if t.is_read() {
                $reply
            } else {
                Err(Error::MethodNotAllowed)
            }
        };
    }
    match segs.as_slice() {
        [""] => read_only!(index(app, req, 1)),
        ["page", n, ""] => match n.parse::<u64>() {
            Ok(1) => read_only!(Ok(Reply::redirect(301, "/"))),
            Ok(n) if n > 1 => read_only!(index(app, req, n)),
            _ => Err(Error::NotFound),
        },
        ["posts", slug, ""] => read_only!(post(app, req, slug)),
        ["posts", slug] if !slug.is_empty() => read_only!(Ok(Reply::redirect(
            301,
            &format!("/posts/{}/", crate::links::encode_component(slug)),
        ))),
        ["tags", ""] => read_only!(tags(app, req)),
        ["tags"] => read_only!(Ok(Reply::redirect(301, "/tags/"))),
        ["tags", tag, ""] => read_only!(tag_page(app, req, tag, 1)),
        ["tags", tag] if !tag.is_empty() => read_only!(Ok(Reply::redirect(
            301,
            &format!("/tags/{}/", crate::links::encode_component(tag)),
        ))),
        ["tags", tag, "page", n, ""] => match n.parse::<u64>() {
            Ok(1) => read_only!(Ok(Reply::redirect(
                301,
                &format!("/tags/{}/", crate::links::encode_component(tag)),
            ))),
            Ok(n) if n > 1 => read_only!(tag_page(app, req, tag, n)),
            _ => Err(Error::NotFound),
        },
        ["feed.xml"] => read_only!(feed(app, req, true)),
        ["rss.xml"] => read_only!(feed(app, req, false)),
        ["sitemap.xml"] => read_only!(sitemap(app, req)),
        ["robots.txt"] => read_only!(robots(app, req)),
        ["healthz"] => read_only!(Ok(match app.db.ping() {
            Ok(()) => Reply::text(200, "ok"),
            Err(e) => {
                eprintln!("nib: healthz: {e}");
                Reply::text(503, "database unavailable")
            }
        }
        .header("Cache-Control", "no-store"))),
        // `/static` alone has no file name: the strip fails and it is a 404.
        ["static", ..] => match path.strip_prefix("/static/") {
            Some(rel) => read_only!(static_file(app, req, rel)),
            None => Err(Error::NotFound),
        },
        ["favicon.ico"] => read_only!(static_file(app, req, "favicon.ico")),
        // The owner's pages. Every change is a POST; GETs only read.
        ["admin"] => read_only!(Ok(Reply::redirect(301, "/admin/"))),
        ["admin", ""] => read_only!(owner::dashboard(app, req, t)),
        ["admin", "login"] => match t.method {
            Method::Post => owner::login(app, req),
            _ => read_only!(owner::login_page(app, t)),
        },
        ["admin", "logout"] if t.method == Method::Post => owner::logout(app, req),
        ["admin", "share"] => match t.method {
            Method::Post => owner::share_post(app, req),
            _ => read_only!(owner::share_page(app, req, t)),
        },
        ["admin", "links"] if t.method == Method::Post => owner::create_form(app, req),
        ["admin", "links", code, "delete"] if t.method == Method::Post => {
            owner::delete_form(app, req, code)
        }
        ["admin", "logout" | "links", ..] => Err(Error::MethodNotAllowed),
        // The JSON API.
        ["api", "links"] => match t.method {
            Method::Post => api::api_create(app, req),
            _ => read_only!(api::api_list(app, req, t)),
        },
        ["api", "links", code] => match t.method {
            Method::Delete => api::api_delete(app, req, code),
            _ => read_only!(api::api_get(app, req, code)),
        },
        // Short links: whatever single segment nothing above claimed.
        [code] if crate::links::is_code_like(code) => {
            read_only!(links::redirect(app, req, t, code))
        }
        [code]
            if code
                .strip_suffix('+')
                .is_some_and(crate::links::is_code_like) =>
        {
            read_only!(links::preview(app, req, t, &code[..code.len() - 1]))
        }
        _ => Err(Error::NotFound),
    }
}

/// The methods a path answers, for the `Allow` header of a 405.
pub(crate) fn allowed(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "links"] | ["admin", "login"] | ["admin", "share"] => "GET, HEAD, POST",
        ["api", "links", _] => "GET, HEAD, DELETE",
        ["admin", "logout"] | ["admin", "links", ..] => "POST",
        _ => "GET, HEAD",
    }
}
