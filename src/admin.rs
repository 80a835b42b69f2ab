//! The short-link handlers: the public redirect and preview, the owner's JSON API, and the
//! owner's pages (login, the admin page with its forms, the share page the bookmarklets
//! open). Routing stays in `http::route`; the rules they apply live in `links` and `auth`,
//! and every query in `db`. Each handler that changes something is a POST (or the API's
//! DELETE) and checks who is asking before it reads a body.

use std::io::Read;

use askama::Template;
use qrcode::QrCode;
use qrcode::render::svg;
use tiny_http::Request;

use crate::auth;
use crate::config::Config;
use crate::dates;
use crate::db::{Created, Db, LinkRow};
use crate::error::Error;
use crate::http::{App, Reply, Target, header};
use crate::links::{self, Codes};
use crate::render::Site;

/// The largest request body nib reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Prints a newly generated admin token, the one time it is ever shown (only its hash is
/// kept), with where to log in.
pub fn announce_token(token: &str, base: &str) {
    eprintln!("nib: admin token (shown only now): {token}\nnib: log in at {base}/admin/login");
}
/// Links per admin page.
const ADMIN_PAGE: u32 = 50;
const API_DEFAULT_LIMIT: u32 = 50;
const API_MAX_LIMIT: u32 = 1000;

/// Sent with every admin page: only nib's own files run or style them, forms only post to
/// nib (plus the share target, see [`share_page`]), and no other site may frame them.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

// ---- set-up shared with the CLI ----

/// The server's set-up of the secrets: [`ensure_secrets`], then the admin token follows
/// the configuration. Returns a token that was generated now (to be shown once), if any. A
/// token from the configuration replaces the stored hash when it differs, and a change of
/// token rotates the cookie secret so logins made with the old one end. Only `nib serve`
/// calls this: it is the process whose configuration the token belongs to.
pub fn setup_secrets(db: &Db, cfg: &Config) -> Result<Option<String>, String> {
    let e = |e: rusqlite::Error| format!("database: {e}");
    if let Some(fresh) = ensure_secrets(db, cfg)? {
        return Ok(Some(fresh));
    }
    let stored = db.meta_get("admin_token_sha256").map_err(e)?;
    let source = db.meta_get("admin_token_source").map_err(e)?;
    match &cfg.admin_token {
        Some(t) => {
            let h = auth::hash_token(t);
            if stored.as_deref() != Some(h.as_str()) {
                db.meta_set("admin_token_sha256", &h).map_err(e)?;
                db.meta_set("admin_token_source", "config").map_err(e)?;
                rotate_cookie_secret(db)?;
            }
            Ok(None)
        }
        // A token that came from the server's configuration and is gone from it must not
        // keep working unseen: a new one is generated and shown, as on first start.
        None if source.as_deref() == Some("config") => reset_token(db).map(Some),
        None => Ok(None),
    }
}

/// Makes sure the secrets exist (the code key, the cookie secret, some admin token) and
/// changes none that does. A token is made only when none is stored at all: the
/// configured one if there is one, else a generated one, returned to be shown once.
///
/// The commands (`nib shorten`, `nib links`, `nib token`) call this, never
/// [`setup_secrets`]: they often run with another environment than the server (a shell
/// without `NIB_ADMIN_TOKEN`), and letting them bring the token in line with theirs
/// replaced the server's token and logged the owner out (regression).
pub fn ensure_secrets(db: &Db, cfg: &Config) -> Result<Option<String>, String> {
    let e = |e: rusqlite::Error| format!("database: {e}");
    if db.meta_get("code_key").map_err(e)?.is_none() {
        db.meta_set("code_key", &auth::hex(&auth::random_bytes::<32>()?))
            .map_err(e)?;
    }
    if db.meta_get("cookie_secret").map_err(e)?.is_none() {
        rotate_cookie_secret(db)?;
    }
    if db.meta_get("admin_token_sha256").map_err(e)?.is_some() {
        return Ok(None);
    }
    match &cfg.admin_token {
        Some(t) => {
            db.meta_set("admin_token_sha256", &auth::hash_token(t))
                .map_err(e)?;
            db.meta_set("admin_token_source", "config").map_err(e)?;
            Ok(None)
        }
        None => reset_token(db).map(Some),
    }
}

/// Generates and stores a new admin token and ends every browser login.
pub fn reset_token(db: &Db) -> Result<String, String> {
    let e = |e: rusqlite::Error| format!("database: {e}");
    let token = auth::new_token()?;
    db.meta_set("admin_token_sha256", &auth::hash_token(&token))
        .map_err(e)?;
    db.meta_set("admin_token_source", "generated").map_err(e)?;
    rotate_cookie_secret(db)?;
    Ok(token)
}

/// A new cookie secret, and no logins on record: every browser login ends.
fn rotate_cookie_secret(db: &Db) -> Result<(), String> {
    let e = |e: rusqlite::Error| format!("database: {e}");
    db.meta_set("cookie_secret", &auth::hex(&auth::random_bytes::<32>()?))
        .map_err(e)?;
    db.end_all_logins().map_err(e)
}

fn codes(db: &Db) -> Result<Codes, Error> {
    let key = db
        .meta_get("code_key")?
        .and_then(|k| auth::unhex(&k))
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| Error::Internal("code key missing".into()))?;
    Ok(Codes::new(key))
}

/// Validates and creates (or finds) a link: the one path used by the API, the admin form,
/// the share page and `nib shorten`.
pub fn create_link(
    db: &Db,
    cfg: &Config,
    url: &str,
    slug: Option<&str>,
    title: Option<&str>,
) -> Result<(LinkRow, bool), Error> {
    let url = links::normalize_target(url, cfg.base()).map_err(Error::BadRequest)?;
    let slug = slug.map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = slug {
        links::check_slug(s).map_err(Error::BadRequest)?;
    }
    let title = links::clean_title(title.unwrap_or(""));
    let codes = codes(db)?;
    let created = db.create_link(&url, slug, &title, dates::now(), &|n| codes.code(n), &|c| {
        !links::is_reserved(c)
    })?;
    match created {
        Created::New(l) => Ok((l, true)),
        Created::Existing(l) => Ok((l, false)),
        Created::SlugTaken => Err(Error::Conflict(format!(
            "slug {:?} is taken",
            slug.unwrap_or_default()
        ))),
    }
}

// ---- public: redirect and preview ----

/// `GET /CODE`: the redirect, counting a click unless it is a HEAD or a preview bot.
pub fn redirect(app: &App, req: &Request, t: &Target, code: &str) -> Result<Reply, Error> {
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

fn clicks_of(app: &App, l: &LinkRow) -> i64 {
    l.clicks + app.clicks.borrow().pending(l.id) as i64
}

fn short_url(cfg: &Config, code: &str) -> String {
    format!("{}/{code}", cfg.base())
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewPage<'a> {
    site: &'a Site<'a>,
    path: &'a str,
    link: &'a LinkRow,
    short_url: String,
    created: String,
    created_iso: String,
    clicks: i64,
    qr: String,
}

/// The QR code of a short link as an SVG element (no script, no style attribute).
fn qr_svg(text: &str) -> Result<String, Error> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| Error::Internal(format!("qr: {e}")))?;
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
pub fn preview(app: &App, req: &Request, t: &Target, code: &str) -> Result<Reply, Error> {
    let Some(link) = app.db.link_by_code(code)? else {
        return Err(Error::NotFound);
    };
    let short = short_url(&app.cfg, &link.code);
    let site = app.site_view();
    let page = PreviewPage {
        site: &site,
        path: &t.path,
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
    let etag = crate::http::strong_etag(crate::render::Fnv::hash_str(&body));
    let now = dates::now();
    let reply = if crate::http::not_modified(req, &etag, now) {
        Reply {
            status: 304,
            headers: Vec::new(),
            body: crate::http::Body::Empty,
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

pub enum Form {
    Json(serde_json::Value),
    Pairs(Vec<(String, String)>),
}

impl Form {
    /// A string field, from either encoding.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Form::Json(v) => v.get(name).and_then(|v| v.as_str()).map(str::to_string),
            Form::Pairs(p) => p.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        }
    }
}

/// Refuses a body over [`MAX_BODY`] by its `Content-Length` before reading anything
/// ([`read_body`] then reads at most one byte more than the limit, for chunked bodies).
fn check_length(req: &Request) -> Result<(), Error> {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(Error::PayloadTooLarge);
    }
    Ok(())
}

/// The request body as a form, once the handler has passed its checks. A body tiny_http
/// has not read already (over 1 KiB, chunked, or behind `Expect: 100-continue`) is never
/// read here, on the loop: the handler answers [`Error::NeedBody`], the loop reads the body
/// on a thread of its own with a deadline and runs the handler again with it.
pub fn read_body(app: &App, req: &mut Request, json_allowed: bool) -> Result<Form, Error> {
    check_length(req)?;
    let ctype = header(req, "Content-Type")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = match ctype.as_str() {
        "application/json" if json_allowed => true,
        "application/x-www-form-urlencoded" => false,
        _ => return Err(Error::UnsupportedMediaType),
    };
    let buf = match app.body.borrow_mut().take() {
        Some(b) => b,
        None if crate::http::may_hold_body(req) => return Err(Error::NeedBody),
        None => {
            // tiny_http has this body in memory already: reading it cannot wait.
            let mut buf = Vec::new();
            req.as_reader()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|_| Error::BadRequest("could not read the request body".into()))?;
            buf
        }
    };
    if buf.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    if json {
        let v: serde_json::Value = serde_json::from_slice(&buf)
            .map_err(|e| Error::BadRequest(format!("body is not valid json: {e}")))?;
        if !v.is_object() {
            return Err(Error::BadRequest("body must be a json object".into()));
        }
        Ok(Form::Json(v))
    } else {
        Ok(Form::Pairs(parse_query(&buf)))
    }
}

pub fn parse_query(q: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q)
        .take(64)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'q>(q: &'q [(String, String)], name: &str) -> Option<&'q str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

// ---- who is asking ----

/// The address failed attempts are counted against (see [`auth::client_key`]). Behind the
/// front end every peer is loopback, and the address is the `X-Real-IP` that nginx or
/// Caddy overwrites (`deploy/`); from any other peer that header is ignored.
///
/// Regression: the header was believed as the client sent it (the front end passed it
/// through), so 2,000 bad logins with 2,000 made-up addresses were never throttled, and 6
/// bad logins under the owner's address locked the owner out.
fn client(req: &Request) -> String {
    auth::client_key(req.remote_addr().map(|a| a.ip()), header(req, "X-Real-IP"))
}

/// Whether `who` has used up its failed attempts. The count lives in the database, so a
/// restart does not forgive it.
fn throttled(app: &App, who: &str, now: i64) -> Result<bool, Error> {
    let failures = app.db.login_failures(who, now - auth::THROTTLE_WINDOW)?;
    Ok(failures >= auth::MAX_FAILURES)
}

fn count_failure(app: &App, who: &str, now: i64) -> Result<(), Error> {
    app.db
        .record_login_failure(who, now, now - auth::THROTTLE_WINDOW, auth::THROTTLE_ROWS)?;
    Ok(())
}

fn cookie_secret(db: &Db) -> Result<Vec<u8>, Error> {
    db.meta_get("cookie_secret")?
        .and_then(|s| auth::unhex(&s))
        .ok_or_else(|| Error::Internal("cookie secret missing".into()))
}

/// A browser that is logged in: the nonce of its cookie, for CSRF tokens and logout.
pub struct Owner {
    nonce: String,
    secret: Vec<u8>,
}

impl Owner {
    fn csrf(&self) -> String {
        auth::csrf_token(&self.secret, &self.nonce)
    }
}

fn owner(app: &App, req: &Request) -> Result<Option<Owner>, Error> {
    let Some(value) = header(req, "Cookie").and_then(|c| auth::cookie_value(c, auth::COOKIE))
    else {
        return Ok(None);
    };
    let secret = cookie_secret(&app.db)?;
    let now = dates::now();
    let Some(nonce) = auth::verify_cookie(&secret, value, now) else {
        return Ok(None);
    };
    // A signed cookie is not enough: its login must still be on record, so one that was
    // logged out (and copied or replayed since) opens nothing.
    if !app.db.login_current(&nonce, now)? {
        return Ok(None);
    }
    Ok(Some(Owner { nonce, secret }))
}

/// The API's check: `Authorization: Bearer TOKEN`. Wrong tokens count as failed logins.
fn api_owner(app: &App, req: &Request) -> Result<(), Error> {
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

/// The checks of every state-changing form: same origin, then a logged-in cookie, then the
/// CSRF token from the form. Returns the form.
fn form_post(app: &App, req: &mut Request) -> Result<(Owner, Form), Error> {
    check_origin(app, req)?;
    // Who is asking first: a body is read only for the owner.
    let owner = owner(app, req)?.ok_or_else(|| Error::Unauthorized("log in first".into()))?;
    let form = read_body(app, req, false)?;
    let given = form.get("csrf").unwrap_or_default();
    if !auth::csrf_ok(&owner.secret, &owner.nonce, &given) {
        return Err(Error::Forbidden("missing or wrong csrf token".into()));
    }
    Ok((owner, form))
}

fn check_origin(app: &App, req: &Request) -> Result<(), Error> {
    if auth::same_origin(
        header(req, "Origin"),
        header(req, "Referer"),
        app.cfg.base(),
        header(req, "Host"),
    ) {
        Ok(())
    } else {
        Err(Error::Forbidden("cross-site request refused".into()))
    }
}

/// The page a browser that is not logged in gets instead of an admin page: the login form,
/// with a way back. A browser arriving from another site (the bookmarklet) does not send a
/// SameSite=Strict cookie on that first request, so it is first sent through one
/// same-site refresh of the same URL, which carries the cookie if there is one.
fn to_login(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    let here = if t.query.is_empty() {
        t.path.clone()
    } else {
        format!("{}?{}", t.path, t.query)
    };
    let cross = header(req, "Sec-Fetch-Site").is_some_and(|s| s == "cross-site");
    let bounced = parse_query(t.query.as_bytes())
        .iter()
        .any(|(k, _)| k == "_b");
    if cross && !bounced {
        let sep = if t.query.is_empty() { '?' } else { '&' };
        let again = format!("{here}{sep}_b=1");
        let page = MessagePage {
            site: &app.site_view(),
            path: &t.path,
            title: "One moment",
            message: "Checking your login…",
            refresh: Some(&again),
        };
        return Ok(admin_headers(Reply::html(page.render()?)));
    }
    let next: String = strip_bounce(&here);
    Ok(Reply::redirect(
        303,
        &format!("/admin/login?next={}", links::encode_component(&next)),
    ))
}

fn strip_bounce(here: &str) -> String {
    match here.split_once('?') {
        Some((p, q)) => {
            let kept: Vec<&str> = q.split('&').filter(|kv| !kv.starts_with("_b=")).collect();
            if kept.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{}", kept.join("&"))
            }
        }
        None => here.to_string(),
    }
}

/// The headers every admin answer carries.
pub fn admin_headers(r: Reply) -> Reply {
    r.header("Content-Security-Policy", CSP)
        .header("Cache-Control", "no-store")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "same-origin")
        .header("Cross-Origin-Opener-Policy", "same-origin")
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    site: &'a Site<'a>,
    path: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

pub fn login_page(app: &App, t: &Target) -> Result<Reply, Error> {
    let q = parse_query(t.query.as_bytes());
    let next = auth::safe_next(query_get(&q, "next").unwrap_or("/admin/"));
    let page = LoginPage {
        site: &app.site_view(),
        path: "/admin/login",
        next: &next,
        error: None,
    };
    Ok(admin_headers(Reply::html(page.render()?)))
}

pub fn login(app: &App, req: &mut Request) -> Result<Reply, Error> {
    check_origin(app, req)?;
    let who = client(req);
    let now = dates::now();
    if throttled(app, &who, now)? {
        return Err(Error::TooManyRequests);
    }
    let form = read_body(app, req, false)?;
    let token = form.get("token").unwrap_or_default();
    let next_raw = form.get("next").unwrap_or_default();
    let next = auth::safe_next(&next_raw);
    let stored = app.db.meta_get("admin_token_sha256")?;
    if !stored.is_some_and(|h| auth::token_matches(token.trim(), &h)) {
        count_failure(app, &who, now)?;
        let page = LoginPage {
            site: &app.site_view(),
            path: "/admin/login",
            next: &next,
            error: Some("That token is not right."),
        };
        let mut r = admin_headers(Reply::html(page.render()?));
        r.status = 401;
        return Ok(r);
    }
    app.db.clear_login_failures(&who)?;
    let secret = cookie_secret(&app.db)?;
    let nonce = auth::hex(&auth::random_bytes::<16>().map_err(Error::Internal)?);
    let value = auth::make_cookie(&secret, now, &nonce);
    app.db
        .add_login(&nonce, now, now + auth::COOKIE_TTL, auth::MAX_LOGINS)?;
    Ok(admin_headers(Reply::redirect(303, &next))
        .header("Set-Cookie", cookie(app, &value, auth::COOKIE_TTL)))
}

fn cookie(app: &App, value: &str, max_age: i64) -> String {
    let secure = if app.cfg.base().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        auth::COOKIE
    )
}

/// Ends this browser's login: its nonce is struck from the record, so the cookie opens
/// nothing even if it was copied before the browser dropped it.
pub fn logout(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (owner, _) = form_post(app, req)?;
    app.db.end_login(&owner.nonce)?;
    Ok(
        admin_headers(Reply::redirect(303, "/admin/login"))
            .header("Set-Cookie", cookie(app, "", 0)),
    )
}

// ---- the admin page ----

struct LinkView {
    code: String,
    short_url: String,
    url: String,
    title: String,
    clicks: i64,
    created: String,
    spark: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage<'a> {
    site: &'a Site<'a>,
    path: &'a str,
    csrf: String,
    links: Vec<LinkView>,
    total: i64,
    q: String,
    older: Option<String>,
    flash: Option<String>,
    share_bookmarklet: String,
    shorten_bookmarklet: String,
}

/// A `javascript:` URL that only navigates: it opens the share page in a small window (or,
/// when popups are blocked, in the same tab) with the page's address, title and selection.
/// It injects nothing into the page, so a page's CSP cannot stop it.
pub fn bookmarklet(base: &str, mode: &str) -> String {
    // A JSON string is a valid JavaScript string literal, whatever the base URL holds.
    let start = serde_json::to_string(&format!("{base}/admin/share?{mode}url="))
        .unwrap_or_else(|_| "\"/admin/share?url=\"".into());
    format!(
        "javascript:(function(){{var e=encodeURIComponent,s=String(window.getSelection?getSelection():'').slice(0,1000),u={start}+e(location.href)+'&title='+e(document.title)+'&text='+e(s);if(!window.open(u,'nib_share','width=640,height=640,resizable,scrollbars'))location.href=u;}})()"
    )
}

pub fn dashboard(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    let Some(owner) = owner(app, req)? else {
        return to_login(app, req, t);
    };
    let q = parse_query(t.query.as_bytes());
    let search = query_get(&q, "q").unwrap_or("").trim().to_string();
    let before = match query_get(&q, "before") {
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| Error::BadRequest("before must be a number".into()))?,
        ),
        None => None,
    };
    let rows = app.db.search_links(&search, before, ADMIN_PAGE + 1)?;
    let more = rows.len() > ADMIN_PAGE as usize;
    let today = links::day_of(dates::now());
    let mut views = Vec::new();
    let mut last_id = None;
    for l in rows.into_iter().take(ADMIN_PAGE as usize) {
        let mut days = app.db.link_days(l.id, today - links::SPARK_DAYS + 1)?;
        let pending = app.clicks.borrow().pending(l.id) as i64;
        if pending > 0 {
            days.push((today, pending));
        }
        last_id = Some(l.id);
        views.push(LinkView {
            short_url: short_url(&app.cfg, &l.code),
            clicks: clicks_of(app, &l),
            created: dates::ymd(l.created_at),
            spark: links::sparkline(&days, today),
            code: l.code,
            url: l.url,
            title: l.title,
        });
    }
    let older = match (more, last_id) {
        (true, Some(id)) => Some(if search.is_empty() {
            format!("/admin/?before={id}")
        } else {
            format!("/admin/?q={}&before={id}", links::encode_component(&search))
        }),
        _ => None,
    };
    let flash = [
        ("created", "Created"),
        ("existing", "Already shortened as"),
        ("deleted", "Deleted"),
    ]
    .iter()
    .find_map(|(key, what)| {
        query_get(&q, key)
            .filter(|c| links::is_code_like(c))
            .map(|c| format!("{what} {}", short_url(&app.cfg, c)))
    });
    let page = AdminPage {
        site: &app.site_view(),
        path: "/admin/",
        csrf: owner.csrf(),
        links: views,
        total: app.db.count_links()?,
        q: search,
        older,
        flash,
        share_bookmarklet: bookmarklet(app.cfg.base(), ""),
        shorten_bookmarklet: bookmarklet(app.cfg.base(), "mode=shorten&"),
    };
    Ok(admin_headers(Reply::html(page.render()?)))
}

/// Creates (or finds) the link a checked form POST asks for: `url`, `slug`, `title`.
fn create_from_form(app: &App, req: &mut Request) -> Result<(LinkRow, bool, Form), Error> {
    let (_, form) = form_post(app, req)?;
    let (link, new) = create_link(
        &app.db,
        &app.cfg,
        &form.get("url").unwrap_or_default(),
        form.get("slug").as_deref(),
        form.get("title").as_deref(),
    )?;
    Ok((link, new, form))
}

pub fn create_form(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (link, new, _) = create_from_form(app, req)?;
    let key = if new { "created" } else { "existing" };
    Ok(admin_headers(Reply::redirect(
        303,
        &format!("/admin/?{key}={}", link.code),
    )))
}

pub fn delete_form(app: &App, req: &mut Request, code: &str) -> Result<Reply, Error> {
    form_post(app, req)?;
    let id = app.db.delete_link(code)?.ok_or(Error::NotFound)?;
    app.clicks.borrow_mut().forget(id);
    Ok(admin_headers(Reply::redirect(
        303,
        &format!("/admin/?deleted={}", links::encode_component(code)),
    )))
}

// ---- the share page ----

#[derive(Template)]
#[template(path = "share.html")]
struct SharePage<'a> {
    site: &'a Site<'a>,
    path: &'a str,
    csrf: String,
    url: String,
    title: String,
    text: String,
    mode: &'a str,
    existing: Option<String>,
    error: Option<String>,
    done: Option<String>,
}

/// `GET /admin/share`: shows what will be shortened and shared. Reads only: the link is
/// made when the owner confirms (a POST).
pub fn share_page(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    let Some(owner) = owner(app, req)? else {
        return to_login(app, req, t);
    };
    let q = parse_query(t.query.as_bytes());
    let get = |k: &str| query_get(&q, k).unwrap_or("").to_string();
    let mode = if get("mode") == "shorten" {
        "shorten"
    } else {
        "share"
    };
    let mut page = SharePage {
        site: &app.site_view(),
        path: "/admin/share",
        csrf: owner.csrf(),
        url: get("url"),
        title: links::clean_title(&get("title")),
        text: String::new(),
        mode,
        existing: None,
        error: None,
        done: None,
    };
    let done = get("done");
    if !done.is_empty() {
        let link = app.db.link_by_code(&done)?.ok_or(Error::NotFound)?;
        page.done = Some(short_url(&app.cfg, &link.code));
        page.url = link.url;
        page.title = link.title;
        return Ok(share_headers(app, Reply::html(page.render()?)));
    }
    let selection = get("text");
    let selection = selection.trim();
    page.text = if selection.is_empty() {
        page.title.clone()
    } else if page.title.is_empty() {
        format!("“{selection}”")
    } else {
        format!("{} “{selection}”", page.title)
    };
    match links::normalize_target(&page.url, app.cfg.base()) {
        Ok(u) => {
            page.existing = app
                .db
                .link_by_url(&u)?
                .map(|l| short_url(&app.cfg, &l.code));
            page.url = u;
        }
        Err(e) => page.error = Some(e),
    }
    let status = if page.error.is_some() { 400 } else { 200 };
    let mut r = share_headers(app, Reply::html(page.render()?));
    r.status = status;
    Ok(r)
}

/// The share page's forms post to nib, which answers with a redirect to the share target:
/// browsers apply `form-action` to that redirect too, so its origin is allowed here.
fn share_headers(app: &App, r: Reply) -> Reply {
    let mut r = admin_headers(r);
    if let Some(origin) = auth::origin_of(&app.cfg.share_url) {
        for h in r.headers.iter_mut() {
            if h.0 == "Content-Security-Policy" {
                h.1 = CSP.replace(
                    "form-action 'self'",
                    &format!("form-action 'self' {origin}"),
                );
            }
        }
    }
    r
}

/// `POST /admin/share`: creates or reuses the link, then sends the browser to the share
/// target (or, in "shorten" mode, to a page showing the link).
pub fn share_post(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (link, _, form) = create_from_form(app, req)?;
    let short = short_url(&app.cfg, &link.code);
    if form.get("mode").as_deref() == Some("shorten") {
        return Ok(admin_headers(Reply::redirect(
            303,
            &format!("/admin/share?done={}", links::encode_component(&link.code)),
        )));
    }
    let text = form.get("text").unwrap_or_default();
    let target = links::share_target(&app.cfg.share_url, text.trim(), &short);
    Ok(admin_headers(Reply::redirect(303, &target)))
}

// ---- the JSON API ----

fn link_json(app: &App, l: &LinkRow) -> serde_json::Value {
    serde_json::json!({
        "code": l.code,
        "short_url": short_url(&app.cfg, &l.code),
        "url": l.url,
        "title": l.title,
        "created_at": dates::rfc3339(l.created_at),
        "clicks": clicks_of(app, l),
    })
}

pub fn json(status: u16, v: &serde_json::Value) -> Reply {
    Reply::new(status, "application/json", format!("{v}\n")).header("Cache-Control", "no-store")
}

/// `GET /api/links?limit=N&offset=M`.
pub fn api_list(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
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

/// `POST /api/links`: 201 with a new link, 200 with the existing one.
pub fn api_create(app: &App, req: &mut Request) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let form = read_body(app, req, true)?;
    let field = |name: &str| -> Result<Option<String>, Error> {
        match &form {
            Form::Json(v) => match v.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::BadRequest(format!("{name} must be a string"))),
            },
            Form::Pairs(_) => Ok(form.get(name)),
        }
    };
    let url = field("url")?.ok_or_else(|| Error::BadRequest("url is required".into()))?;
    let slug = field("slug")?;
    let title = field("title")?;
    let (link, new) = create_link(&app.db, &app.cfg, &url, slug.as_deref(), title.as_deref())?;
    let status = if new { 201 } else { 200 };
    let mut r = json(status, &link_json(app, &link));
    if new {
        r = r.header("Location", format!("/api/links/{}", link.code));
    }
    Ok(r)
}

pub fn api_get(app: &App, req: &Request, code: &str) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let link = app.db.link_by_code(code)?.ok_or(Error::NotFound)?;
    Ok(json(200, &link_json(app, &link)))
}

pub fn api_delete(app: &App, req: &Request, code: &str) -> Result<Reply, Error> {
    api_owner(app, req)?;
    let id = app.db.delete_link(code)?.ok_or(Error::NotFound)?;
    app.clicks.borrow_mut().forget(id);
    Ok(Reply {
        status: 204,
        headers: Vec::new(),
        body: crate::http::Body::Empty,
    })
}

// ---- pages for errors and notices on admin routes ----

#[derive(Template)]
#[template(path = "admin_message.html")]
pub struct MessagePage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub refresh: Option<&'a str>,
}

/// The JavaScript and CSS of the admin pages, built into the binary so every site has
/// them; a file of the same name in the site's `static/` folder wins.
pub fn embedded_asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    match name {
        "admin.js" => Some((
            "text/javascript; charset=utf-8",
            include_bytes!("../static/admin.js"),
        )),
        "admin.css" => Some((
            "text/css; charset=utf-8",
            include_bytes!("../static/admin.css"),
        )),
        _ => None,
    }
}
