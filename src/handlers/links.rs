//! The public side of short links: the redirect (a click counted unless a preview bot asks)
//! and the preview page at `/CODE+`.

use askama::Template;
use tiny_http::Request;

use qrcode::QrCode;
use qrcode::render::svg;

use crate::app::App;
use crate::config::Config;
use crate::dates;
use crate::db::LinkRow;
use crate::error::Error;
use crate::links;
use crate::render::Site;
use crate::reply::Reply;
use crate::request::{Target, header};

/// `GET /CODE`: the redirect, counting a click unless it is a HEAD or a preview bot.
pub(crate) fn redirect(app: &App, req: &Request, t: &Target, code: &str) -> Result<Reply, Error> {
    let Some((id, url)) = app.db.link_target(code)? else {
        return Err(Error::NotFound);
    };
    let is_get = t.method == tiny_http::Method::Get;
    if is_get && !header(req, "User-Agent").is_some_and(links::is_bot) {
        app.clicks.borrow_mut().add(id);
    }
    Ok(
        Reply::redirect(app.cfg.redirect_status, &url)
            .header("Cache-Control", "private, max-age=0"),
    )
}

pub(crate) fn clicks_of(app: &App, l: &LinkRow) -> i64 {
    l.clicks + app.clicks.borrow().pending(l.id) as i64
}

pub(crate) fn short_url(cfg: &Config, code: &str) -> String {
    format!("{}/{code}", cfg.base())
}

#[derive(Template)]
#[template(path = "preview.html")]
pub(crate) struct PreviewPage<'a> {
    site: &'a Site<'a>,
    path: &'a str,
    link: &'a LinkRow,
    short_url: String,
    /// The short URL up to its code (`https://nib.example/`), shown apart from the code so
    /// the code is never broken across lines.
    short_host: String,
    /// The target's host, what the visitor came for: the heading when there is no title,
    /// and the "Continue to …" button.
    dest_host: String,
    created: String,
    created_iso: String,
    clicks: i64,
    qr: String,
}

/// The QR code of a short link as an SVG element (no script, no style attribute).
pub(crate) fn qr_svg(text: &str) -> Result<String, Error> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| Error::Internal(Box::new(e)))?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .build();
    // The renderer starts with an XML declaration, which is not allowed inside HTML.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

/// `GET /CODE+`: where a link goes, when it was made, its clicks, and its QR code.
pub(crate) fn preview(app: &App, req: &Request, t: &Target, code: &str) -> Result<Reply, Error> {
    // An old code of a renamed link shows the link under its current code.
    let Some(link) = app.db.link_by_any_code(code)? else {
        return Err(Error::NotFound);
    };
    let short = short_url(&app.cfg, &link.code);
    let site = app.site_view();
    let page = PreviewPage {
        site: &site,
        path: &t.path,
        short_host: short[..short.len() - link.code.len()].to_string(),
        dest_host: url::Url::parse(&link.url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.trim_start_matches("www.").to_string())
            })
            .unwrap_or_else(|| link.url.clone()),
        short_url: short.clone(),
        created: dates::human(link.created_at),
        created_iso: dates::rfc3339(link.created_at),
        clicks: clicks_of(app, &link),
        qr: qr_svg(&short)?,
        link: &link,
    };
    // The click count changes at any moment, so the validator is the page itself and the
    // last change is now: a client revalidates with If-None-Match and gets a 304 while the
    // count stands still.
    let body = page.render()?;
    let etag = crate::hash::strong_etag(crate::hash::Fnv::hash_str(&body));
    let now = dates::now();
    let reply = if crate::reply::not_modified(req, &etag, now) {
        Reply {
            status: 304,
            headers: Vec::new(),
            body: crate::reply::Body::Empty,
        }
    } else {
        Reply::html(body)
    };
    Ok(reply
        .header("ETag", etag)
        .header("Last-Modified", dates::http(now))
        .header("Cache-Control", "no-cache"))
}

// ---- request bodies ----
