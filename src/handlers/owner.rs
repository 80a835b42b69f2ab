//! The owner's pages: login and logout, the admin page with its forms, a link's edit and
//! delete pages, the share page the bookmarklets and the web app's share target open, and
//! the web app manifest. Each form checks the origin and the login cookie before it reads
//! a body, and its CSRF token after.

use askama::Template;
use tiny_http::Request;

use crate::app::App;
use crate::auth;
use crate::dates;
use crate::db::{Db, LinkRow};
use crate::error::Error;
use crate::handlers::links::{clicks_of, short_url};
use crate::links;
use crate::render::Site;
use crate::reply::Reply;
use crate::request::{
    Form, Target, check_origin, client, header, parse_query, query_get, read_body,
};
use crate::shortener::{create_link, edit_link};

/// Links per admin page.
pub(crate) const ADMIN_PAGE: u32 = 50;

/// Sent with every admin page: only nib's own files run or style them, forms only post to
/// nib (plus the share target, see [`share_page`]), and no other site may frame them.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

// ---- set-up shared with the CLI ----

/// Whether `who` has used up its failed attempts. The count lives in the database, so a
/// restart does not forgive it.
pub(crate) fn throttled(app: &App, who: &str, now: i64) -> Result<bool, Error> {
    let failures = app.db.login_failures(who, now - auth::THROTTLE_WINDOW)?;
    Ok(failures >= auth::MAX_FAILURES)
}

pub(crate) fn count_failure(app: &App, who: &str, now: i64) -> Result<(), Error> {
    app.db
        .record_login_failure(who, now, now - auth::THROTTLE_WINDOW, auth::THROTTLE_ROWS)?;
    Ok(())
}

pub(crate) fn cookie_secret(db: &Db) -> Result<Vec<u8>, Error> {
    db.meta_get("cookie_secret")?
        .and_then(|s| auth::unhex(&s))
        .ok_or_else(|| Error::Internal("cookie secret missing".into()))
}

/// A browser that is logged in: the nonce of its cookie, for CSRF tokens and logout.
pub(crate) struct Owner {
    nonce: String,
    secret: Vec<u8>,
}

impl Owner {
    fn csrf(&self) -> String {
        auth::csrf_token(&self.secret, &self.nonce)
    }
}

pub(crate) fn owner(app: &App, req: &Request) -> Result<Option<Owner>, Error> {
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

/// The checks of every state-changing form: same origin, then a logged-in cookie, then the
/// CSRF token from the form. Returns the form.
pub(crate) fn form_post(app: &App, req: &mut Request) -> Result<(Owner, Form), Error> {
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

/// The page a browser that is not logged in gets instead of an admin page: the login form,
/// with a way back. A browser arriving from another site (the bookmarklet) does not send a
/// SameSite=Strict cookie on that first request, so it is first sent through one
/// same-site refresh of the same URL, which carries the cookie if there is one.
pub(crate) fn to_login(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
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

pub(crate) fn strip_bounce(here: &str) -> String {
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
pub(crate) fn admin_headers(r: Reply) -> Reply {
    r.header("Content-Security-Policy", CSP)
        .header("Cache-Control", "no-store")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "same-origin")
        .header("Cross-Origin-Opener-Policy", "same-origin")
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    site: &'a Site<'a>,
    next: &'a str,
    error: Option<&'a str>,
}

pub(crate) fn login_page(app: &App, t: &Target) -> Result<Reply, Error> {
    let q = parse_query(t.query.as_bytes());
    let next = auth::safe_next(query_get(&q, "next").unwrap_or("/admin/"));
    let page = LoginPage {
        site: &app.site_view(),
        next: &next,
        error: None,
    };
    Ok(admin_headers(Reply::html(page.render()?)))
}

pub(crate) fn login(app: &App, req: &mut Request) -> Result<Reply, Error> {
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
            next: &next,
            error: Some("That token is not right."),
        };
        let mut r = admin_headers(Reply::html(page.render()?));
        r.status = 401;
        return Ok(r);
    }
    app.db.clear_login_failures(&who)?;
    let secret = cookie_secret(&app.db)?;
    let nonce = auth::hex(&auth::random_bytes::<16>()?);
    let value = auth::make_cookie(&secret, now, &nonce);
    app.db
        .add_login(&nonce, now, now + auth::COOKIE_TTL, auth::MAX_LOGINS)?;
    Ok(admin_headers(Reply::redirect(303, &next))
        .header("Set-Cookie", cookie(app, &value, auth::COOKIE_TTL)))
}

pub(crate) fn cookie(app: &App, value: &str, max_age: i64) -> String {
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
pub(crate) fn logout(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (owner, _) = form_post(app, req)?;
    app.db.end_login(&owner.nonce)?;
    Ok(
        admin_headers(Reply::redirect(303, "/admin/login"))
            .header("Set-Cookie", cookie(app, "", 0)),
    )
}

// ---- the admin page ----

pub(crate) struct LinkView {
    code: String,
    short_url: String,
    /// The short URL as people write it (`nib.example/abc`): the row's label and the
    /// accessible names of its buttons.
    label: String,
    /// The label without its code (`nib.example/`), shown apart so the code never breaks.
    host: String,
    url: String,
    title: String,
    clicks: i64,
    created: String,
    spark: String,
}

/// What was typed into a link form and what was wrong with it, so a refused form comes
/// back with the words in place and the reason next to its field.
#[derive(Default)]
pub(crate) struct Typed {
    url: String,
    slug: String,
    title: String,
    text: String,
    url_error: Option<String>,
    slug_error: Option<String>,
}

impl Typed {
    fn from_form(form: &Form) -> Typed {
        Typed {
            url: form.get("url").unwrap_or_default(),
            slug: form.get("slug").unwrap_or_default(),
            title: form.get("title").unwrap_or_default(),
            text: form.get("text").unwrap_or_default(),
            ..Typed::default()
        }
    }

    /// Puts a refusal of the link's fields next to its field, in plain words, with the
    /// status it answers; any other error is passed on. The address is checked first, so
    /// when it is refused the short name is checked here too: both mistakes show at once.
    fn refused(mut self, e: Error) -> Result<(Typed, u16), Error> {
        let status = e.status();
        let message = match e {
            Error::BadRequest(m) | Error::Conflict(m) => m,
            other => return Err(other),
        };
        let plain = Some(links::plainly(&message));
        if links::field_of(&message) == "slug" {
            self.slug_error = plain;
        } else {
            self.url_error = plain;
            let slug = self.slug.trim();
            if !slug.is_empty() {
                self.slug_error = links::check_slug(slug).err().map(|m| links::plainly(&m));
            }
        }
        Ok((self, status))
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
pub(crate) struct AdminPage<'a> {
    site: &'a Site<'a>,
    csrf: String,
    links: Vec<LinkView>,
    total: i64,
    q: String,
    older: Option<String>,
    /// On an older page: the way back to the newest links.
    newest: Option<String>,
    flash: Option<String>,
    typed: Typed,
    share_bookmarklet: String,
    shorten_bookmarklet: String,
}

/// A `javascript:` URL that only navigates: it opens the share page in a small window (or,
/// when popups are blocked, in the same tab) with the page's address, title and selection.
/// It injects nothing into the page, so a page's CSP cannot stop it.
pub(crate) fn bookmarklet(base: &str, mode: &str) -> String {
    // A JSON string is a valid JavaScript string literal, whatever the base URL holds.
    let start = serde_json::to_string(&format!("{base}/admin/share?{mode}url="))
        .unwrap_or_else(|_| "\"/admin/share?url=\"".into());
    format!(
        "javascript:(function(){{var e=encodeURIComponent,s=String(window.getSelection?getSelection():'').slice(0,1000),u={start}+e(location.href)+'&title='+e(document.title)+'&text='+e(s);if(!window.open(u,'nib_share','width=640,height=640,resizable,scrollbars'))location.href=u;}})()"
    )
}

pub(crate) fn dashboard(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
    let Some(owner) = owner(app, req)? else {
        return to_login(app, req, t);
    };
    render_dashboard(app, &owner, &t.query, Typed::default(), 200)
}

fn link_view(app: &App, l: LinkRow, today: i64) -> Result<LinkView, Error> {
    let mut days = app.db.link_days(l.id, today - links::SPARK_DAYS + 1)?;
    let pending = app.clicks.borrow().pending(l.id) as i64;
    if pending > 0 {
        days.push((today, pending));
    }
    let short = short_url(&app.cfg, &l.code);
    let label = links::short_label(&short).to_string();
    Ok(LinkView {
        host: label[..label.len() - l.code.len()].to_string(),
        label,
        short_url: short,
        clicks: clicks_of(app, &l),
        created: dates::ymd(l.created_at),
        spark: links::sparkline(&days, today),
        code: l.code,
        url: l.url,
        title: l.title,
    })
}

/// The admin page for the query `query`, with `typed` in the create form.
fn render_dashboard(
    app: &App,
    owner: &Owner,
    query: &str,
    typed: Typed,
    status: u16,
) -> Result<Reply, Error> {
    let q = parse_query(query.as_bytes());
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
        last_id = Some(l.id);
        views.push(link_view(app, l, today)?);
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
        ("edited", "Saved"),
        ("deleted", "Deleted"),
    ]
    .iter()
    .find_map(|(key, what)| {
        query_get(&q, key)
            .filter(|c| links::is_code_like(c))
            .map(|c| format!("{what} {}", links::short_label(&short_url(&app.cfg, c))))
    });
    let newest = before.map(|_| {
        if search.is_empty() {
            "/admin/".to_string()
        } else {
            format!("/admin/?q={}", links::encode_component(&search))
        }
    });
    let page = AdminPage {
        site: &app.site_view(),
        newest,
        csrf: owner.csrf(),
        links: views,
        total: app.db.count_links()?,
        q: search,
        older,
        flash,
        typed,
        share_bookmarklet: bookmarklet(app.cfg.base(), ""),
        shorten_bookmarklet: bookmarklet(app.cfg.base(), "mode=shorten&"),
    };
    let mut r = admin_headers(Reply::html(page.render()?));
    r.status = status;
    Ok(r)
}

/// `POST /admin/links`: creates (or finds) the link and goes back to the list; a refused
/// field brings the form back with what was typed and the reason beside the field.
pub(crate) fn create_form(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (owner, form) = form_post(app, req)?;
    let typed = Typed::from_form(&form);
    match create_link(
        &app.db,
        &app.cfg,
        &typed.url,
        Some(typed.slug.as_str()),
        Some(typed.title.as_str()),
    ) {
        Ok((link, new)) => {
            let key = if new { "created" } else { "existing" };
            Ok(admin_headers(Reply::redirect(
                303,
                &format!("/admin/?{key}={}", link.code),
            )))
        }
        Err(e) => {
            let (typed, status) = typed.refused(e)?;
            render_dashboard(app, &owner, "", typed, status)
        }
    }
}

// ---- one link: edit and delete ----

#[derive(Template)]
#[template(path = "admin_edit.html")]
pub(crate) struct EditPage<'a> {
    site: &'a Site<'a>,
    csrf: String,
    link: LinkView,
    /// The old codes that still lead here, as short URLs without the scheme.
    aliases: Vec<String>,
    typed: Typed,
}

#[derive(Template)]
#[template(path = "admin_delete.html")]
pub(crate) struct DeletePage<'a> {
    site: &'a Site<'a>,
    csrf: String,
    link: LinkView,
}

fn one_link(app: &App, code: &str) -> Result<(LinkView, Vec<String>), Error> {
    let link = app.db.link_by_code(code)?.ok_or(Error::NotFound)?;
    let aliases = app
        .db
        .link_aliases(link.id)?
        .iter()
        .map(|c| links::short_label(&short_url(&app.cfg, c)).to_string())
        .collect();
    Ok((link_view(app, link, links::day_of(dates::now()))?, aliases))
}

fn edit_reply(
    app: &App,
    owner: &Owner,
    code: &str,
    typed: Option<Typed>,
    status: u16,
) -> Result<Reply, Error> {
    let (link, aliases) = one_link(app, code)?;
    let typed = typed.unwrap_or_else(|| Typed {
        url: link.url.clone(),
        slug: link.code.clone(),
        title: link.title.clone(),
        ..Typed::default()
    });
    let page = EditPage {
        site: &app.site_view(),
        csrf: owner.csrf(),
        link,
        aliases,
        typed,
    };
    let mut r = admin_headers(Reply::html(page.render()?));
    r.status = status;
    Ok(r)
}

/// `GET /admin/links/CODE/edit`: the link's target, title and code in a form.
pub(crate) fn edit_page(app: &App, req: &Request, t: &Target, code: &str) -> Result<Reply, Error> {
    let Some(owner) = owner(app, req)? else {
        return to_login(app, req, t);
    };
    edit_reply(app, &owner, code, None, 200)
}

/// `POST /admin/links/CODE/edit`: form `url`, `title`, `slug`. A new slug keeps the old
/// code working as an alias; a refused field brings the form back as typed.
pub(crate) fn edit_form(app: &App, req: &mut Request, code: &str) -> Result<Reply, Error> {
    let (owner, form) = form_post(app, req)?;
    let typed = Typed::from_form(&form);
    let slug = typed.slug.trim();
    let slug = (!slug.is_empty() && slug != code).then_some(slug);
    match edit_link(
        &app.db,
        &app.cfg,
        code,
        Some(typed.url.as_str()),
        slug,
        Some(typed.title.as_str()),
    ) {
        Ok(link) => Ok(admin_headers(Reply::redirect(
            303,
            &format!("/admin/?edited={}", link.code),
        ))),
        Err(Error::NotFound) => Err(Error::NotFound),
        Err(e) => {
            let (typed, status) = typed.refused(e)?;
            edit_reply(app, &owner, code, Some(typed), status)
        }
    }
}

/// `GET /admin/links/CODE/delete`: asks before deleting, as a page, so it works without
/// script (the admin pages' CSP allows no inline script, and a `confirm()` is easy to
/// click through on a phone).
pub(crate) fn delete_page(
    app: &App,
    req: &Request,
    t: &Target,
    code: &str,
) -> Result<Reply, Error> {
    let Some(owner) = owner(app, req)? else {
        return to_login(app, req, t);
    };
    let (link, _) = one_link(app, code)?;
    let page = DeletePage {
        site: &app.site_view(),
        csrf: owner.csrf(),
        link,
    };
    Ok(admin_headers(Reply::html(page.render()?)))
}

pub(crate) fn delete_form(app: &App, req: &mut Request, code: &str) -> Result<Reply, Error> {
    form_post(app, req)?;
    let id = app.db.delete_link(code)?.ok_or(Error::NotFound)?;
    app.clicks.borrow_mut().forget(id);
    Ok(admin_headers(Reply::redirect(
        303,
        &format!("/admin/?deleted={}", links::encode_component(code)),
    )))
}

// ---- the web app manifest ----

/// `GET /manifest.webmanifest`: makes the admin an installable web app whose share target
/// is the share page, so on Android "Share → nib" from any app opens it (with the shared
/// title, text and URL as the bookmarklet would send them).
pub(crate) fn manifest(app: &App) -> Result<Reply, Error> {
    let site = app.site_view();
    let v = serde_json::json!({
        "name": format!("{} links", site.title),
        "short_name": "nib",
        "description": "Shorten and share links",
        "id": "/admin/",
        "start_url": "/admin/",
        "scope": "/admin/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1d4e89",
        "icons": [
            {"src": "/static/nib-icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any maskable"},
            {"src": "/static/nib-icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"}
        ],
        "share_target": {
            "action": "/admin/share",
            "method": "GET",
            "params": {"title": "title", "text": "text", "url": "url"}
        }
    });
    Ok(
        Reply::new(200, "application/manifest+json", format!("{v}\n"))
            .header("Cache-Control", "no-cache"),
    )
}

// ---- the share page ----

#[derive(Template)]
#[template(path = "share.html")]
pub(crate) struct SharePage<'a> {
    site: &'a Site<'a>,
    csrf: String,
    url: String,
    title: String,
    text: String,
    mode: &'a str,
    existing: Option<String>,
    done: Option<String>,
    typed: Typed,
    /// Where the post goes: "X", "Mastodon", "Bluesky", or the share page's host.
    service: String,
    limit: Option<usize>,
    /// What the short link adds to the post's length (a space and the link).
    link_len: usize,
    /// The post's length as the page opens (also counted as it is typed, by admin.js).
    count: usize,
}

/// The service of the configured `share_url`, its limit and what a link counts for.
fn service_of(app: &App, short_len: usize) -> (String, Option<usize>, usize) {
    let s = links::share_service(&app.cfg.share_url);
    let name = if s.name.is_empty() {
        auth::origin_of(&app.cfg.share_url)
            .map(|o| links::short_label(&o).to_string())
            .unwrap_or_else(|| "the share page".into())
    } else {
        s.name.to_string()
    };
    (name, s.limit, 1 + s.link_counts_as.unwrap_or(short_len))
}

/// The length of a new link's short URL with a generated code (at most 6 characters); a
/// custom slug may make it longer, which the count shows once the link exists.
fn new_short_len(app: &App) -> usize {
    short_url(&app.cfg, "abcdef").chars().count()
}

/// `GET /admin/share`: shows what will be shortened and shared. Reads only: the link is
/// made when the owner confirms (a POST).
pub(crate) fn share_page(app: &App, req: &Request, t: &Target) -> Result<Reply, Error> {
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
    let (url, selection) = links::url_from_shared(&get("url"), &get("text"));
    let (service, limit, link_len) = service_of(app, new_short_len(app));
    let mut page = SharePage {
        site: &app.site_view(),
        csrf: owner.csrf(),
        url,
        title: links::clean_title(&get("title")),
        text: String::new(),
        mode,
        existing: None,
        done: None,
        typed: Typed::default(),
        service,
        limit,
        link_len,
        count: 0,
    };
    let done = get("done");
    if !done.is_empty() {
        let link = app.db.link_by_code(&done)?.ok_or(Error::NotFound)?;
        page.done = Some(short_url(&app.cfg, &link.code));
        page.url = link.url;
        page.title = link.title;
        return Ok(share_headers(app, Reply::html(page.render()?)));
    }
    let selection = selection.trim();
    page.text = if selection.is_empty() {
        page.title.clone()
    } else if page.title.is_empty() || selection.contains(&page.title) {
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
        Err(e) => page.typed.url_error = Some(links::plainly(&e)),
    }
    if let Some(short) = &page.existing {
        let (_, _, len) = service_of(app, short.chars().count());
        page.link_len = len;
    }
    page.typed.url = page.url.clone();
    page.typed.text = page.text.clone();
    page.count = page.text.trim().chars().count() + page.link_len;
    let status = if page.typed.url_error.is_some() {
        400
    } else {
        200
    };
    let mut r = share_headers(app, Reply::html(page.render()?));
    r.status = status;
    Ok(r)
}

/// The share page's forms post to nib, which answers with a redirect to the share target:
/// browsers apply `form-action` to that redirect too, so its origin is allowed here.
pub(crate) fn share_headers(app: &App, r: Reply) -> Reply {
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
/// target (or, in "shorten" mode, to a page showing the link). A refused slug or address
/// brings the page back with what was typed and the reason beside the field.
pub(crate) fn share_post(app: &App, req: &mut Request) -> Result<Reply, Error> {
    let (owner, form) = form_post(app, req)?;
    let typed = Typed::from_form(&form);
    let mode = if form.get("mode").as_deref() == Some("shorten") {
        "shorten"
    } else {
        "share"
    };
    let link = match create_link(
        &app.db,
        &app.cfg,
        &typed.url,
        Some(typed.slug.as_str()),
        Some(typed.title.as_str()),
    ) {
        Ok((link, _)) => link,
        Err(e) => {
            let (typed, status) = typed.refused(e)?;
            let (service, limit, link_len) = service_of(app, new_short_len(app));
            let page = SharePage {
                site: &app.site_view(),
                csrf: owner.csrf(),
                url: typed.url.clone(),
                title: typed.title.clone(),
                text: typed.text.clone(),
                mode,
                existing: None,
                done: None,
                count: typed.text.trim().chars().count() + link_len,
                typed,
                service,
                limit,
                link_len,
            };
            let mut r = share_headers(app, Reply::html(page.render()?));
            r.status = status;
            return Ok(r);
        }
    };
    let short = short_url(&app.cfg, &link.code);
    if mode == "shorten" {
        return Ok(admin_headers(Reply::redirect(
            303,
            &format!("/admin/share?done={}", links::encode_component(&link.code)),
        )));
    }
    let target = links::share_target(&app.cfg.share_url, typed.text.trim(), &short);
    Ok(admin_headers(Reply::redirect(303, &target)))
}

// ---- the JSON API ----

#[derive(Template)]
#[template(path = "admin_message.html")]
pub(crate) struct MessagePage<'a> {
    pub site: &'a Site<'a>,
    pub title: &'a str,
    pub message: &'a str,
    pub refresh: Option<&'a str>,
}
