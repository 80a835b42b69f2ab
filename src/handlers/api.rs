//! The owner's JSON API at `/api/links`: list, create, read, edit and delete short links, with
//! `Authorization: Bearer TOKEN`; a wrong token counts as a failed login.

use tiny_http::Request;

use crate::app::App;
use crate::auth;
use crate::dates;
use crate::db::LinkRow;
use crate::error::Error;
use crate::handlers::links::{clicks_of, short_url};
use crate::handlers::owner::{count_failure, throttled};
use crate::reply::Reply;
use crate::request::{Form, Target, client, header, parse_query, query_get, read_body};
use crate::shortener::{create_link, edit_link};

pub(crate) const API_DEFAULT_LIMIT: u32 = 50;

pub(crate) const API_MAX_LIMIT: u32 = 1000;

/// The API's check: `Authorization: Bearer TOKEN`. Wrong tokens count as failed logins.
pub(crate) fn api_owner(app: &App, req: &Request) -> Result<(), Error> {
    let given = header(req, "Authorization").and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Err(Error::Unauthorized("missing bearer token".into()));
    };
    let who = client(req);
    let now = dates::now();
    if throttled(app, &who, now)? {
        return Err(Error::TooManyRequests);
    }
    let stored = app
        .db
        .meta_get("admin_token_sha256")?
        .ok_or_else(|| Error::Unauthorized("no admin token is set".into()))?;
    if auth::token_matches(given, &stored) {
        Ok(())
    } else {
        count_failure(app, &who, now)?;
        Err(Error::Unauthorized("wrong token".into()))
    }
}

pub(crate) fn link_json(app: &App, l: &LinkRow) -> serde_json::Value {
    serde_json::json!({
        "code": l.code,
        "short_url": short_url(&app.cfg, &l.code),
        "url": l.url,
        "title": l.title,
        "created_at": dates::rfc3339(l.created_at),
        "clicks": clicks_of(app, l),
    })
}

pub(crate) fn json(status: u16, v: &serde_json::Value) -> Reply {
    Reply::new(status, "application/json", format!("{v}\n")).header("Cache-Control", "no-store")
}

/// `GET /api/links?limit=N&offset=M`.
pub(crate) fn api_list(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let q = parse_query(t.query.as_bytes());
    let limit = match query_get(&q, "limit") {
        None => API_DEFAULT_LIMIT,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=API_MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::BadRequest(format!("limit must be a number from 1 to {API_MAX_LIMIT}"))
            })?,
    };
    let offset = match query_get(&q, "offset") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| Error::BadRequest("offset must be a number".into()))?,
    };
    let rows = app.db.list_links(limit, offset)?;
    let list: Vec<_> = rows.iter().map(|l| link_json(app, l)).collect();
    Ok(json(200, &serde_json::json!({ "links": list })))
}

/// A string field of a JSON object or form body: absent and `null` are `None`.
fn field(form: &Form, name: &str) -> Result<Option<String>, Error> {
    match form {
        Form::Json(v) => match v.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::BadRequest(format!("{name} must be a string"))),
        },
        Form::Pairs(_) => Ok(form.get(name)),
    }
}

/// `POST /api/links`: 201 with a new link, 200 with the existing one.
pub(crate) fn api_create(app: &App, req: &mut Request) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let form = read_body(app, req, true)?;
    let url = field(&form, "url")?.ok_or_else(|| Error::BadRequest("url is required".into()))?;
    let slug = field(&form, "slug")?;
    let title = field(&form, "title")?;
    let (link, new) = create_link(&app.db, &app.cfg, &url, slug.as_deref(), title.as_deref())?;
    let status = if new { 201 } else { 200 };
    let mut r = json(status, &link_json(app, &link));
    if new {
        r = r.header("Location", format!("/api/links/{}", link.code));
    }
    Ok(r)
}

/// `PATCH /api/links/CODE`: changes any of `url`, `title`, `slug`; 200 with the link. A
/// new slug keeps the old code as an alias that still redirects.
pub(crate) fn api_edit(app: &App, req: &mut Request, code: &str) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let form = read_body(app, req, true)?;
    let url = field(&form, "url")?;
    let slug = field(&form, "slug")?;
    let title = field(&form, "title")?;
    let link = edit_link(
        &app.db,
        &app.cfg,
        code,
        url.as_deref(),
        slug.as_deref(),
        title.as_deref(),
    )?;
    let mut r = json(200, &link_json(app, &link));
    if link.code != code {
        r = r.header("Location", format!("/api/links/{}", link.code));
    }
    Ok(r)
}

pub(crate) fn api_get(app: &App, req: &Request, code: &str) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let link = app.db.link_by_code(code)?.ok_or(Error::NotFound)?;
    Ok(json(200, &link_json(app, &link)))
}

pub(crate) fn api_delete(app: &App, req: &Request, code: &str) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let id = app.db.delete_link(code)?.ok_or(Error::NotFound)?;
    app.clicks.borrow_mut().forget(id);
    Ok(Reply {
        status: 204,
        headers: Vec::new(),
        body: crate::reply::Body::Empty,
    })
}

// ---- pages for errors and notices on admin routes ----
