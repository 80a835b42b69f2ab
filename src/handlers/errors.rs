//! Errors as answers: the HTML 404 page, JSON errors on the API, an owner's error page on
//! `/admin/`, a short text elsewhere; a 405 names the methods its route allows.

use askama::Template;

use crate::access_log::LogSafe;
use crate::app::App;
use crate::error::Error;
use crate::handlers::owner;
use crate::render;
use crate::reply::{HTML, Reply};
use crate::request::Target;
use crate::routes::Route;

/// The HTML 404 page (or a short text for non-HTML clients of the API).
pub(crate) fn not_found_page(app: &App, path: &str) -> Reply {
    let site = app.site_view();
    match (render::NotFoundPage { site: &site, path }).render() {
        Ok(html) => Reply::new(404, HTML, html),
        Err(e) => {
            eprintln!("nib: rendering 404 page: {e}");
            Reply::text(404, "not found")
        }
    }
}

/// Turns an error into its answer. A 500 (or 503) logs the error with its chain of causes;
/// the client sees a generic text.
pub(crate) fn error_reply(app: &App, t: Option<&Target>, e: Error) -> Reply {
    let status = e.status();
    if status >= 500 {
        eprintln!(
            "nib: {} {}: {}",
            LogSafe(t.map(|t| t.method.as_str()).unwrap_or("-")),
            LogSafe(t.map(|t| t.path.as_str()).unwrap_or("-")),
            crate::error::chain(&e)
        );
    }
    let path = t.map(|t| t.path.as_str()).unwrap_or("");
    let mut reply = if path.starts_with("/api/") {
        // The API answers in JSON, errors included.
        let r =
            crate::handlers::api::json(status, &serde_json::json!({ "error": e.public_message() }));
        if status == 401 {
            r.header("WWW-Authenticate", "Bearer")
        } else {
            r
        }
    } else if path == "/admin" || path.starts_with("/admin/") {
        admin_error_page(app, &e)
    } else {
        match (&e, t) {
            (Error::NotFound, Some(t)) => not_found_page(app, &t.path),
            _ => Reply::text(status, &e.public_message()),
        }
    };
    if status == 405 {
        reply = reply.header("Allow", Route::parse(path).methods().allow());
    }
    reply
}

/// An error on an owner's page, as an HTML page with the admin headers.
pub(crate) fn admin_error_page(app: &App, e: &Error) -> Reply {
    let message = e.public_message();
    let title = match e.status() {
        400 => "That did not work",
        401 => "Log in first",
        403 => "Refused",
        404 => "Not found",
        409 => "Already taken",
        429 => "Too many attempts",
        _ => "Something went wrong",
    };
    let site = app.site_view();
    let page = owner::MessagePage {
        site: &site,
        title,
        message: &message,
        refresh: None,
    };
    let mut r = match page.render() {
        Ok(html) => Reply::html(html),
        Err(err) => {
            eprintln!("nib: rendering error page: {err}");
            Reply::text(200, &message)
        }
    };
    r.status = e.status();
    owner::admin_headers(r)
}
