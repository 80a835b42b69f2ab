//! Short links and owner access, end to end against the real binary: the JSON API and
//! each of its statuses, the redirect and preview, click batching across a shutdown, the
//! owner's login with its cookie, CSRF and throttling rules, the share page, and the CLI.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const TOKEN: &str = "test-admin-token-0123456789";

fn server(site: &Site) -> TestServer {
    TestServer::start_with(site, &[], &[("NIB_ADMIN_TOKEN", TOKEN)])
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn api(s: &TestServer, method: &str, path: &str, json: Option<&str>) -> Resp {
    let auth = bearer();
    let mut headers = vec![auth.as_str()];
    if json.is_some() {
        headers.push("Content-Type: application/json");
    }
    request(
        s.addr,
        method,
        path,
        &headers,
        json.unwrap_or("").as_bytes(),
    )
}

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

fn create(s: &TestServer, body: &str) -> serde_json::Value {
    let r = api(s, "POST", "/api/links", Some(body));
    assert!(
        r.status == 201 || r.status == 200,
        "{}: {}",
        r.status,
        r.text()
    );
    json(&r)
}

fn origin(s: &TestServer) -> String {
    format!("Origin: http://{}", s.addr)
}

/// Posts the login form with the right token and `next=/admin/`.
fn login_response(s: &TestServer) -> Resp {
    let o = origin(s);
    request(
        s.addr,
        "POST",
        "/admin/login",
        &[&o, "Content-Type: application/x-www-form-urlencoded"],
        format!("token={TOKEN}&next=%2Fadmin%2F").as_bytes(),
    )
}

/// Logs in through the form and returns the cookie pair `nib_admin=...`.
fn login(s: &TestServer) -> String {
    let r = login_response(s);
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").expect("cookie set").to_string();
    set.split(';').next().unwrap().to_string()
}

fn cookie_header(cookie: &str) -> String {
    format!("Cookie: {cookie}")
}

fn csrf_of(s: &TestServer, cookie: &str) -> String {
    let c = cookie_header(cookie);
    let r = get_with(s.addr, "/admin/", &[&c]);
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    let at = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    page[at..at + 64].to_string()
}

fn form(s: &TestServer, path: &str, headers: &[&str], body: &str) -> Resp {
    let mut h = vec!["Content-Type: application/x-www-form-urlencoded"];
    h.extend_from_slice(headers);
    request(s.addr, "POST", path, &h, body.as_bytes())
}

/// 201 for a new target, 200 with the same link for a repeat, an unrelated code for a
/// second target, and a form-encoded body with a slug; returns the first link's code.
fn creating_answers_201_then_200(s: &TestServer) -> String {
    let r = api(
        s,
        "POST",
        "/api/links",
        Some(r#"{"url":"https://example.com/a","title":"A"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let first = json(&r);
    let code = first["code"].as_str().unwrap().to_string();
    assert!(code.len() <= 6 && code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(first["short_url"], format!("http://{}/{code}", s.addr));
    assert_eq!(first["url"], "https://example.com/a");
    assert_eq!(first["title"], "A");
    assert_eq!(first["clicks"], 0);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    let r = api(
        s,
        "POST",
        "/api/links",
        Some(r#"{"url":"https://example.com/a"}"#),
    );
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["code"], code.as_str());
    // A second target gets a code unrelated to the first.
    let second = create(s, r#"{"url":"https://example.com/b"}"#);
    assert_ne!(second["code"], code.as_str());
    // Form-encoded bodies work too, and a slug is honoured.
    let r = request(
        s.addr,
        "POST",
        "/api/links",
        &[&bearer(), "Content-Type: application/x-www-form-urlencoded"],
        b"url=https%3A%2F%2Fexample.com%2Fc&slug=my-link",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r)["code"], "my-link");
    code
}

/// 400 for each kind of bad input, each with a JSON message; `code` is a link of this
/// server, which may not be shortened again.
fn bad_input_answers_400(s: &TestServer, code: &str) {
    let long = format!(r#"{{"url":"https://example.com/{}"}}"#, "a".repeat(2100));
    let self_link = format!(r#"{{"url":"http://{}/{code}"}}"#, s.addr);
    let cases: Vec<(&str, String)> = vec![
        ("bad scheme", r#"{"url":"ftp://example.com/"}"#.into()),
        ("javascript", r#"{"url":"javascript:alert(1)"}"#.into()),
        ("not a url", r#"{"url":"example.com"}"#.into()),
        ("missing url", r#"{"title":"x"}"#.into()),
        ("too long", long),
        (
            "control chars",
            r#"{"url":"https://exa\u0007mple.com/"}"#.into(),
        ),
        (
            "newline inside",
            r#"{"url":"https://example.com/a\nb"}"#.into(),
        ),
        ("self link", self_link),
        (
            "bad slug",
            r#"{"url":"https://example.com/d","slug":"a b"}"#.into(),
        ),
        (
            "long slug",
            format!(
                r#"{{"url":"https://example.com/d","slug":"{}"}}"#,
                "x".repeat(65)
            ),
        ),
        (
            "reserved slug",
            r#"{"url":"https://example.com/d","slug":"admin"}"#.into(),
        ),
        (
            "reserved slug 2",
            r#"{"url":"https://example.com/d","slug":"posts"}"#.into(),
        ),
        (
            "reserved slug 3",
            r#"{"url":"https://example.com/d","slug":"healthz"}"#.into(),
        ),
        ("not json", "{nope".into()),
        ("not an object", "[1]".into()),
        ("url not a string", r#"{"url":5}"#.into()),
    ];
    for (what, body) in &cases {
        let r = api(s, "POST", "/api/links", Some(body));
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let msg = json(&r)["error"].as_str().unwrap().to_string();
        assert!(!msg.is_empty() && !msg.ends_with('.'), "{what}: {msg}");
    }
}

/// 401 without a good token, 404 for what does not exist (while `code` is found), and 405
/// with `Allow` for a method a route does not take.
fn refusals_answer_401_404_405(s: &TestServer, code: &str) {
    // 401: no token, wrong token, wrong scheme.
    for auth in [
        None,
        Some("Authorization: Bearer wrong-token-xxxxxxxx"),
        Some("Authorization: Basic eDp5"),
    ] {
        let headers: Vec<&str> = auth.into_iter().collect();
        let r = request(s.addr, "GET", "/api/links", &headers, b"");
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(json(&r)["error"].is_string());
    }

    // 404, GET and DELETE of a link.
    assert_eq!(api(s, "GET", "/api/links/nope", None).status, 404);
    assert_eq!(
        json(&api(s, "GET", "/api/links/nope", None))["error"],
        "not found"
    );
    assert_eq!(api(s, "GET", "/api/nothing", None).status, 404);
    let r = api(s, "GET", &format!("/api/links/{code}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["url"], "https://example.com/a");

    // 405 with Allow.
    let r = api(s, "PUT", "/api/links", Some("{}"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    assert!(json(&r)["error"].is_string());
    let r = api(s, "POST", "/api/links/x", Some("{}"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PATCH, DELETE"));
}

/// 409 when the slug `my-link` belongs to another target (and 200 for the same slug and
/// target again), and 415 for a body of any other type, or of none.
fn conflicts_answer_409_and_other_types_415(s: &TestServer) {
    let r = api(
        s,
        "POST",
        "/api/links",
        Some(r#"{"url":"https://example.com/zzz","slug":"my-link"}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = api(
        s,
        "POST",
        "/api/links",
        Some(r#"{"url":"https://example.com/c","slug":"my-link"}"#),
    );
    assert_eq!(r.status, 200);

    for ctype in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let h = format!("Content-Type: {ctype}");
        let r = request(s.addr, "POST", "/api/links", &[&bearer(), &h], b"url=x");
        assert_eq!(r.status, 415, "{ctype}");
    }
    let r = request(s.addr, "POST", "/api/links", &[&bearer()], b"{}");
    assert_eq!(r.status, 415, "no content type");
}

/// The three links made so far are listed newest first, with limit and offset; `code`
/// is the oldest. Bad paging values are 400.
fn listing_pages_newest_first(s: &TestServer, code: &str) {
    let r = api(s, "GET", "/api/links?limit=2", None);
    let list = json(&r)["links"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["code"], "my-link");
    let r = api(s, "GET", "/api/links?limit=2&offset=2", None);
    let list = json(&r)["links"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["code"], code);
    for bad in ["limit=0", "limit=x", "limit=1001", "offset=-1"] {
        assert_eq!(
            api(s, "GET", &format!("/api/links?{bad}"), None).status,
            400,
            "{bad}"
        );
    }
}

#[test]
fn api_answers_every_status() {
    let site = Site::new();
    let s = server(&site);
    let code = creating_answers_201_then_200(&s);
    bad_input_answers_400(&s, &code);
    refusals_answer_401_404_405(&s, &code);
    conflicts_answer_409_and_other_types_415(&s);
    listing_pages_newest_first(&s, &code);

    // 204, then gone.
    let r = api(&s, "DELETE", &format!("/api/links/{code}"), None);
    assert_eq!(r.status, 204);
    assert_eq!(
        api(&s, "GET", &format!("/api/links/{code}"), None).status,
        404
    );
    assert_eq!(s.get(&format!("/{code}")).status, 404);
    assert_eq!(
        api(&s, "DELETE", &format!("/api/links/{code}"), None).status,
        404
    );
}

#[test]
fn large_bodies_are_refused_without_reading_them() {
    let site = Site::new();
    let s = server(&site);
    // Only the headers of a 100 MB body: the answer must come without waiting for it.
    let started = Instant::now();
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /api/links HTTP/1.1\r\nHost: {}\r\n{}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
        s.addr,
        bearer()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(conn.try_clone().unwrap()), false);
    assert_eq!(r.status, 413);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
    // While that client still holds its connection open, the server answers others.
    let t = Instant::now();
    assert_eq!(s.get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(conn);

    // The same without a token, and on a form route: still refused at once.
    let r = request(
        s.addr,
        "POST",
        "/admin/login",
        &[
            &origin(&s),
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Length: 100000000",
        ],
        b"",
    );
    assert_eq!(r.status, 413);

    // A chunked body over 64 KiB is cut off at the limit.
    let body = vec![b'a'; 70_000];
    let mut chunked = Vec::new();
    for part in body.chunks(10_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = request(
        s.addr,
        "POST",
        "/api/links",
        &[
            &bearer(),
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        &chunked,
    );
    assert_eq!(r.status, 413);
    // 64 KiB exactly is read (and is then simply bad JSON).
    let r = api(&s, "POST", "/api/links", Some(&"x".repeat(64 * 1024)));
    assert_eq!(r.status, 400);
}

#[test]
fn redirect_and_preview() {
    let site = Site::new();
    let s = server(&site);
    let link = create(
        &s,
        r#"{"url":"https://bücher.example/straße?q=ü","title":"Books <b>"}"#,
    );
    let code = link["code"].as_str().unwrap();
    assert_eq!(
        link["url"],
        "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"
    );
    let r = s.get(&format!("/{code}"));
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC")
    );
    assert_eq!(r.header("cache-control"), Some("private, max-age=0"));
    assert_eq!(s.get("/nope123").status, 404);
    assert_eq!(s.get("/nope123+").status, 404);
    assert_eq!(s.get("/no.pe").status, 404);
    let r = request(s.addr, "POST", &format!("/{code}"), &[], b"");
    assert_eq!(r.status, 405);

    let r = s.get(&format!("/{code}+"));
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(page.contains("<svg"), "QR code inline");
    assert!(page.contains("https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"));
    assert!(page.contains("Books &#60;b&#62;") || page.contains("Books &lt;b&gt;"));
    assert!(!page.contains("<b>"));
    assert!(!page.contains("<?xml"));
    assert!(!page.contains("<script"));

    // 301 when configured.
    let site2 = Site::new();
    site2.write("nib.toml", "redirect_status = 301\n");
    let s2 = server(&site2);
    let l = create(&s2, r#"{"url":"https://example.com/"}"#);
    assert_eq!(
        s2.get(&format!("/{}", l["code"].as_str().unwrap())).status,
        301
    );
}

fn clicks(s: &TestServer, code: &str) -> i64 {
    json(&api(s, "GET", &format!("/api/links/{code}"), None))["clicks"]
        .as_i64()
        .unwrap()
}

#[test]
fn clicks_are_batched_exact_and_survive_shutdown() {
    let site = Site::new();
    let mut s = server(&site);
    let l = create(&s, r#"{"url":"https://example.com/"}"#);
    let code = l["code"].as_str().unwrap().to_string();
    let path = format!("/{code}");
    for _ in 0..3 {
        assert_eq!(s.get(&path).status, 302);
    }
    // Preview bots and HEAD are answered but not counted.
    for ua in [
        "Twitterbot/1.0",
        "facebookexternalhit/1.1",
        "Slackbot-LinkExpanding 1.0",
        "Mozilla/5.0 (compatible; Discordbot/2.0)",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1)",
    ] {
        let h = format!("User-Agent: {ua}");
        assert_eq!(get_with(s.addr, &path, &[&h]).status, 302, "{ua}");
    }
    let r = request(s.addr, "HEAD", &path, &[], b"");
    assert_eq!(r.status, 302);
    assert!(r.header("location").is_some());
    // Exact at once, before any write.
    assert_eq!(clicks(&s, &code), 3);
    for _ in 0..2 {
        s.get(&path);
    }
    s.signal("TERM");
    assert_eq!(s.wait_exit(Duration::from_secs(15)), Some(0));
    // Nothing but the database carries the count over.
    let (code_out, out, _) = nib(&site, &["links"], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(code_out, 0);
    assert!(
        out.contains(&format!("{code}\t5\thttps://example.com/")),
        "{out}"
    );
    let s = server(&site);
    assert_eq!(clicks(&s, &code), 5);
    // The admin page shows them in the sparkline too.
    let cookie = login(&s);
    let page = get_with(s.addr, "/admin/", &[&cookie_header(&cookie)]).text();
    assert!(page.contains("5 clicks in the last 30 days"), "{page}");
}

#[test]
fn clicks_are_written_within_a_second_or_so() {
    let site = Site::new();
    let s = server(&site);
    let l = create(&s, r#"{"url":"https://example.com/x"}"#);
    let code = l["code"].as_str().unwrap().to_string();
    s.get(&format!("/{code}"));
    let written = eventually(Duration::from_secs(5), || {
        let (_, out, _) = nib(&site, &["links"], &[("NIB_ADMIN_TOKEN", TOKEN)]);
        out.contains(&format!("{code}\t1\t"))
    });
    assert!(
        written,
        "the click reached the database while the server runs"
    );
}

/// Without a login, the admin page sends the browser to log in and back, and the login
/// form is a page whose scripts may only come from the site.
fn not_logged_in_is_sent_to_log_in(s: &TestServer) {
    let r = s.get("/admin/");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/admin/login?next=%2Fadmin%2F"));
    assert_eq!(s.get("/admin").status, 301);
    let r = s.get("/admin/login?next=%2Fadmin%2F");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(r.text().contains("type=\"password\""));
}

/// Logs in through the form and checks the cookie's attributes (no `Secure` on a plain
/// http base URL); returns the cookie pair.
fn login_sets_a_strict_cookie(s: &TestServer) -> String {
    let r = login_response(s);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/admin/"));
    let set = r.header("set-cookie").unwrap();
    for attr in [
        "nib_admin=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http base_url: {set}");
    set.split(';').next().unwrap().to_string()
}

/// The admin page, seen with the cookie header `ch`: its policy, its one script from
/// `/static/admin.js` (served though the site has no such file), and its bookmarklets.
fn admin_page_loads_only_its_own_script(s: &TestServer, ch: &str) {
    let r = get_with(s.addr, "/admin/", &[ch]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-security-policy"),
        Some(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    let page = r.text();
    assert!(page.contains("<script src=\"/static/admin.js\""));
    assert!(!page.contains("<script>"), "no inline script");
    assert!(page.contains("javascript:"), "bookmarklets are on the page");
    assert!(page.contains("Shorten &amp; share"));
    // The JavaScript it loads is served even though the site has no such file.
    let js = s.get("/static/admin.js");
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
}

/// Creates a link through the admin form (its title escaped on the page), finds it by a
/// search (in which LIKE wildcards are escaped), is refused a reserved slug with an HTML
/// page, and deletes the link.
fn admin_forms_create_search_and_delete(s: &TestServer, cookie: &str, csrf: &str) {
    let o = origin(s);
    let ch = cookie_header(cookie);
    let r = form(
        s,
        "/admin/links",
        &[&o, &ch],
        &format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2F%3Ca%3E&slug=&title=T%3Cx%3E"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with("/admin/?created="), "{loc}");
    let code = loc.trim_start_matches("/admin/?created=").to_string();
    let page = get_with(s.addr, &loc, &[&ch]).text();
    assert!(page.contains(&format!("Created {}/{code}", s.addr)));
    assert!(page.contains("T&#60;x&#62;") || page.contains("T&lt;x&gt;"));
    assert!(!page.contains("T<x>"));
    let found = get_with(s.addr, "/admin/?q=T%3Cx", &[&ch]).text();
    assert!(found.contains(&format!("/{code}+")));
    let none = get_with(s.addr, "/admin/?q=100%25", &[&ch]).text();
    assert!(
        !none.contains(&format!("/{code}+")),
        "LIKE wildcards are escaped"
    );
    let r = form(
        s,
        "/admin/links",
        &[&o, &ch],
        &format!("csrf={csrf}&url=https%3A%2F%2Fe.com%2F&slug=api"),
    );
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = form(
        s,
        &format!("/admin/links/{code}/delete"),
        &[&o, &ch],
        &format!("csrf={csrf}"),
    );
    assert_eq!(r.status, 303);
    assert_eq!(s.get(&format!("/{code}")).status, 404);
}

#[test]
fn login_cookie_and_admin_page() {
    let site = Site::new();
    let s = server(&site);
    // Not logged in: sent to log in, and back.
    not_logged_in_is_sent_to_log_in(&s);
    let cookie = login_sets_a_strict_cookie(&s);
    let ch = cookie_header(&cookie);
    admin_page_loads_only_its_own_script(&s, &ch);

    // Create through the form, search, delete.
    let csrf = csrf_of(&s, &cookie);
    admin_forms_create_search_and_delete(&s, &cookie, &csrf);

    // Log out ends the login on the server and drops the cookie.
    let o = origin(&s);
    let r = form(&s, "/admin/logout", &[&o, &ch], &format!("csrf={csrf}"));
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
}

/// Admin forms sent with the cookie header `ch` but without a same-site `Origin` or
/// `Referer`, or without the right `csrf` field, are 403, and without a cookie 401, each
/// as an HTML page; none of them creates a link.
fn forms_without_origin_or_csrf_are_refused(s: &TestServer, ch: &str, body_ok: &str) {
    let o = origin(s);
    let body_none = "url=https%3A%2F%2Fexample.com%2Fcsrf".to_string();
    let body_wrong = format!(
        "csrf={}&url=https%3A%2F%2Fexample.com%2Fcsrf",
        "0".repeat(64)
    );
    let cases: Vec<(&str, Vec<&str>, &str, u16)> = vec![
        ("no origin or referer", vec![ch], body_ok, 403),
        (
            "foreign origin",
            vec![ch, "Origin: https://evil.example"],
            body_ok,
            403,
        ),
        ("null origin", vec![ch, "Origin: null"], body_ok, 403),
        (
            "foreign referer",
            vec![ch, "Referer: https://evil.example/page"],
            body_ok,
            403,
        ),
        ("missing csrf", vec![ch, &o], &body_none, 403),
        ("wrong csrf", vec![ch, &o], &body_wrong, 403),
        ("no cookie", vec![&o], body_ok, 401),
    ];
    for (what, headers, body, status) in &cases {
        let r = form(s, "/admin/links", headers, body);
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{what}"
        );
    }
    let r = api(s, "GET", "/api/links", None);
    assert_eq!(
        json(&r)["links"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

/// Cookies made from the login `cookie` and the site's secret that must not be logins
/// (one minted with a nonce no login put on record, malformed ones, one with its date
/// altered, one expired), and last one that must: the login's own nonce, freshly signed.
fn forged_cookies(site: &Site, cookie: &str) -> (Vec<String>, String) {
    let value = cookie.trim_start_matches("nib_admin=");
    let mut parts: Vec<String> = value.split('.').map(str::to_string).collect();
    parts[0] = (parts[0].parse::<i64>().unwrap() - 10).to_string();
    let altered = format!("nib_admin={}", parts.join("."));
    let db = rusqlite::Connection::open(site.db()).unwrap();
    let secret: String = db
        .query_row(
            "SELECT value FROM meta WHERE key = 'cookie_secret'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let secret = nib::test_support::unhex(&secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = format!(
        "nib_admin={}",
        nib::test_support::make_cookie(&secret, now - nib::test_support::COOKIE_TTL - 5, "abcd")
    );
    // A cookie signed with the right secret is still no login unless its nonce is one
    // that a login put on record.
    let minted = format!(
        "nib_admin={}",
        nib::test_support::make_cookie(&secret, now, "abcd")
    );
    let fresh = format!(
        "nib_admin={}",
        nib::test_support::make_cookie(&secret, now - 5, value.split('.').nth(1).unwrap())
    );
    let bad = vec![
        minted,
        "nib_admin=1.2.3".to_string(),
        format!("nib_admin=9999999999.abcd.{}", "0".repeat(64)),
        altered,
        expired,
    ];
    (bad, fresh)
}

#[test]
fn csrf_and_forged_cookies_are_refused() {
    let site = Site::new();
    let s = server(&site);
    let cookie = login(&s);
    let ch = cookie_header(&cookie);
    let csrf = csrf_of(&s, &cookie);
    let o = origin(&s);
    let body_ok = format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fcsrf");
    forms_without_origin_or_csrf_are_refused(&s, &ch, &body_ok);
    // Same-origin Referer instead of Origin is accepted.
    let referer = format!("Referer: http://{}/admin/", s.addr);
    assert_eq!(
        form(&s, "/admin/links", &[&ch, &referer], &body_ok).status,
        303
    );

    // Forged, altered and expired cookies are not logins.
    let (bad_cookies, fresh) = forged_cookies(&site, &cookie);
    for bad in bad_cookies {
        let r = get_with(s.addr, "/admin/", &[&cookie_header(&bad)]);
        assert_eq!(r.status, 303, "{bad}");
        let r = form(&s, "/admin/links", &[&cookie_header(&bad), &o], &body_ok);
        assert_eq!(r.status, 401, "{bad}");
    }
    assert_eq!(
        get_with(s.addr, "/admin/", &[&cookie_header(&fresh)]).status,
        200
    );
    // Rotating the token ends every login.
    let (code, out, _) = nib(&site, &["token", "--reset"], &[]);
    assert_eq!(code, 0);
    let new_token = out.trim();
    assert_eq!(new_token.len(), 64);
    assert_eq!(get_with(s.addr, "/admin/", &[&ch]).status, 303);
    let h = format!("Authorization: Bearer {new_token}");
    assert_eq!(request(s.addr, "GET", "/api/links", &[&h], b"").status, 200);
}

#[test]
fn failed_logins_are_throttled() {
    let site = Site::new();
    let s = server(&site);
    let o = origin(&s);
    let login_with = |token: &str| {
        form(
            &s,
            "/admin/login",
            &[&o],
            &format!("token={token}&next=%2Fadmin%2F"),
        )
        .status
    };
    for _ in 0..5 {
        assert_eq!(login_with("wrong-wrong-wrong-wrong"), 401);
    }
    assert_eq!(login_with("wrong-wrong-wrong-wrong"), 429);
    // Even the right token waits now.
    assert_eq!(login_with(TOKEN), 429);
    // Another client address (behind the proxy) is not affected.
    let r = form(
        &s,
        "/admin/login",
        &[&o, "X-Real-IP: 203.0.113.9"],
        &format!("token={TOKEN}&next=%2F"),
    );
    assert_eq!(r.status, 303);
    // Wrong API tokens count too.
    let r = request(
        s.addr,
        "GET",
        "/api/links",
        &["Authorization: Bearer nope-nope-nope-nope"],
        b"",
    );
    assert_eq!(r.status, 429);
    // A login from another site is refused before the token is even looked at.
    let r = form(
        &s,
        "/admin/login",
        &["Origin: https://evil.example", "X-Real-IP: 203.0.113.10"],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn next_never_leaves_the_site() {
    let site = Site::new();
    let s = server(&site);
    let o = origin(&s);
    let cases = [
        ("%2F%2Fevil.example%2F", "/admin/"),
        ("%2F%5Cevil.example", "/admin/"),
        ("https%3A%2F%2Fevil.example%2F", "/admin/"),
        ("javascript%3Aalert(1)", "/admin/"),
        ("%2Fadmin%2Fshare%3Furl%3Dx", "/admin/share?url=x"),
        ("", "/admin/"),
    ];
    for (next, want) in cases {
        let r = form(
            &s,
            "/admin/login",
            &[&o],
            &format!("token={TOKEN}&next={next}"),
        );
        assert_eq!(r.status, 303, "{next}");
        assert_eq!(r.header("location"), Some(want), "{next}");
    }
    // The login page never echoes a foreign next either.
    let page = s.get("/admin/login?next=%2F%2Fevil.example").text();
    assert!(!page.contains("evil.example"));
}

/// How many short links the API lists.
fn link_count(s: &TestServer) -> usize {
    json(&api(s, "GET", "/api/links", None))["links"]
        .as_array()
        .unwrap()
        .len()
}

/// Without a login the share page at `share` sends the browser to log in with the way
/// back; arriving from another site, it is first sent once through a same-site refresh,
/// which carries its SameSite=Strict cookie.
fn share_page_needs_a_login(s: &TestServer, share: &str) {
    let r = s.get(share);
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with("/admin/login?next=%2Fadmin%2Fshare%3Furl%3D"),
        "{loc}"
    );
    let r = get_with(s.addr, share, &["Sec-Fetch-Site: cross-site"]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("http-equiv=\"refresh\""));
    assert!(r.text().contains("_b=1"));
    let r = get_with(
        s.addr,
        &format!("{share}&_b=1"),
        &["Sec-Fetch-Site: cross-site"],
    );
    assert_eq!(r.status, 303);
    assert!(!r.header("location").unwrap().contains("_b"));
}

/// Logged in (cookie header `ch`), the share page at `share` shows what will be shared,
/// as often as it is loaded, and may send its form to the share target; loading it
/// creates no link, and a bad target is explained, not shortened.
fn share_page_only_reads(s: &TestServer, share: &str, ch: &str) {
    for _ in 0..2 {
        let r = get_with(s.addr, share, &[ch]);
        assert_eq!(r.status, 200);
        let page = r.text();
        assert!(page.contains("Post to Mastodon"), "{page}");
        assert!(
            page.contains("A &#60;title&#62; “chosen words”")
                || page.contains("A &lt;title&gt; “chosen words”"),
            "{page}"
        );
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("form-action 'self' https://social.example")
        );
    }
    // A GET changed nothing.
    assert_eq!(link_count(s), 0);
    // A bad target is explained, not shortened.
    let r = get_with(s.addr, "/admin/share?url=ftp%3A%2F%2Fx&title=x", &[ch]);
    assert_eq!(r.status, 400);
    let page = r.text();
    assert!(
        page.contains("needs to start with http:// or https://"),
        "{page}"
    );
    assert!(page.contains("value=\"ftp://x\""), "{page}");
}

#[test]
fn share_page_reads_only_and_confirming_shares() {
    let site = Site::new();
    site.write(
        "nib.toml",
        "share_url = \"https://social.example/share?text={text}&url={url}\"\n",
    );
    let s = server(&site);
    let share = "/admin/share?url=https%3A%2F%2Fexample.com%2Fpage&title=A%20%3Ctitle%3E&text=chosen%20words";

    // Not logged in: to the login form, with the way back.
    share_page_needs_a_login(&s, share);

    let cookie = login(&s);
    let ch = cookie_header(&cookie);
    share_page_only_reads(&s, share, &ch);

    let csrf = csrf_of(&s, &cookie);
    let o = origin(&s);
    let r = form(
        &s,
        "/admin/share",
        &[&o, &ch],
        &format!(
            "csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fpage&title=A&mode=share&text=Hello+%26+bye"
        ),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let links = json(&api(&s, "GET", "/api/links", None))["links"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(links.len(), 1);
    let short = links[0]["short_url"].as_str().unwrap();
    assert_eq!(
        loc,
        format!(
            "https://social.example/share?text=Hello%20%26%20bye&url={}",
            short.replace(':', "%3A").replace('/', "%2F")
        )
    );
    // Sharing the same page again reuses the link.
    let r = form(
        &s,
        "/admin/share",
        &[&o, &ch],
        &format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fpage&mode=shorten"),
    );
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(
        loc,
        format!("/admin/share?done={}", links[0]["code"].as_str().unwrap())
    );
    let page = get_with(s.addr, &loc, &[&ch]).text();
    assert!(page.contains(&format!("value=\"{short}\"")));
    assert!(page.contains("class=\"button copy\""));
    assert_eq!(link_count(&s), 1);
    // Share forms are CSRF-checked like the others.
    let r = form(
        &s,
        "/admin/share",
        &[&ch, "Origin: https://evil.example"],
        &format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fother"),
    );
    assert_eq!(r.status, 403);
    // GETs on form routes change nothing.
    assert_eq!(get_with(s.addr, "/admin/links", &[&ch]).status, 405);
    assert_eq!(get_with(s.addr, "/admin/logout", &[&ch]).status, 405);
}

#[test]
fn cli_shortens_lists_and_handles_the_token() {
    let site = Site::new();
    site.write("nib.toml", "base_url = \"https://s.example\"\n");
    let (code, out, err) = nib(&site, &["shorten", "https://example.com/cli"], &[]);
    assert_eq!(code, 0, "{err}");
    let short = out.trim().to_string();
    assert!(short.starts_with("https://s.example/"), "{short}");
    // The first command to open the database generated the token and showed it once.
    assert!(err.contains("admin token (shown only now)"), "{err}");
    let (_, again, err2) = nib(&site, &["shorten", "https://example.com/cli"], &[]);
    assert_eq!(again.trim(), short);
    assert!(!err2.contains("admin token"));
    let (code, out, _) = nib(
        &site,
        &["shorten", "https://example.com/x", "--slug", "hello"],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "https://s.example/hello");
    let (code, _, err) = nib(
        &site,
        &["shorten", "https://example.com/y", "--slug", "hello"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("taken"), "{err}");
    let (code, _, err) = nib(&site, &["shorten", "https://s.example/hello"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("own short links"), "{err}");
    let (code, out, _) = nib(&site, &["links"], &[]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "hello\t0\thttps://example.com/x",
            &format!(
                "{}\t0\thttps://example.com/cli",
                short.trim_start_matches("https://s.example/")
            )
        ]
    );

    // A generated token cannot be shown again; --reset makes a new one.
    let (code, out, err) = nib(&site, &["token"], &[]);
    assert_eq!(code, 0);
    assert!(out.is_empty());
    assert!(err.contains("--reset"), "{err}");
    let (_, t1, _) = nib(&site, &["token", "--reset"], &[]);
    let (_, t2, _) = nib(&site, &["token", "--reset"], &[]);
    assert_eq!(t1.trim().len(), 64);
    assert_ne!(t1, t2);
    // A token from the environment is printed as is and cannot be reset here.
    let (code, out, _) = nib(&site, &["token"], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    assert_eq!((code, out.trim()), (0, TOKEN));
    let (code, _, _) = nib(&site, &["token", "--reset"], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(code, 1);

    // A server started without a configured token prints nothing new once one exists...
    let s = TestServer::start(&site);
    assert!(!s.stderr_text().contains("admin token"));
    drop(s);
    // ...and a fresh site's first start prints one, with the login URL, exactly once.
    let fresh = Site::new();
    let s = TestServer::start(&fresh);
    assert!(eventually(Duration::from_secs(2), || s
        .stderr_text()
        .contains("admin token (shown only now)")));
    assert!(s.stderr_text().contains("/admin/login"));
    drop(s);
    let s = TestServer::start(&fresh);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!s.stderr_text().contains("admin token"));
}

/// Regression (found in review): answers written through `into_writer` read what was left
/// of the request's body first. A client that sent `Expect: 100-continue` with a small
/// body waits for `100 Continue` or the answer before sending it, so a refused API call
/// held the request loop. The refusal must come at once, and others be served meanwhile.
#[test]
fn expect_continue_with_a_refused_body_does_not_stall_the_loop() {
    let site = Site::new();
    let s = server(&site);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(
        b"POST /api/links HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\n\
          Content-Type: application/json\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let t = Instant::now();
    let resp = read_response(&mut BufReader::new(c.try_clone().unwrap()), false);
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(s.get("/healthz").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(c);
}

// ---- owner access: regressions from the security review ----

/// Logs in with `next` (form-encoded already) and returns the answer.
fn login_to(s: &TestServer, next: &str) -> Resp {
    let o = origin(s);
    form(
        s,
        "/admin/login",
        &[&o],
        &format!("token={TOKEN}&next={next}"),
    )
}

/// Regression: a login cookie was only signed and dated, so logging out dropped it from
/// the browser but a copy of it (a stolen cookie, a shared machine's history) kept working
/// for 30 days.
#[test]
fn a_cookie_replayed_after_logout_is_refused() {
    let site = Site::new();
    let s = server(&site);
    let cookie = login(&s);
    let other = login(&s);
    let ch = cookie_header(&cookie);
    let csrf = csrf_of(&s, &cookie);
    let o = origin(&s);
    let r = form(&s, "/admin/logout", &[&o, &ch], &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.text());

    // The old cookie now gets the way to the login form, and its forms are refused.
    let r = get_with(s.addr, "/admin/", &[&ch]);
    assert_eq!(r.status, 303);
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/admin/login")),
        "{:?}",
        r.header("location")
    );
    let r = form(
        &s,
        "/admin/links",
        &[&o, &ch],
        &format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2F"),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // Another browser's login goes on.
    assert_eq!(
        get_with(s.addr, "/admin/", &[&cookie_header(&other)]).status,
        200
    );
    // ...and so does the replayed cookie's after a restart: nothing comes back.
    drop(s);
    let s = server(&site);
    assert_eq!(get_with(s.addr, "/admin/", &[&ch]).status, 303);
    assert_eq!(
        get_with(s.addr, "/admin/", &[&cookie_header(&other)]).status,
        200
    );
}

/// Regression: the `Location` header of the login's 303 held `next` as typed, and a value
/// outside ASCII was refused when the answer was written, so the browser got a 303 with
/// nowhere to go.
#[test]
fn a_non_ascii_next_after_login_still_gets_a_location() {
    let site = Site::new();
    let s = server(&site);
    let cases = [
        (
            "%2Fadmin%2Fshare%3Ftitle%3Dcaf%C3%A9",
            "/admin/share?title=caf%C3%A9",
        ),
        (
            "%2Fposts%2F%E6%97%A5%E6%9C%AC%2F",
            "/posts/%E6%97%A5%E6%9C%AC/",
        ),
    ];
    for (next, want) in cases {
        let r = login_to(&s, next);
        assert_eq!(r.status, 303, "{next}");
        assert_eq!(r.header("location"), Some(want), "{next}");
    }
}

/// Regression: failed logins were counted in memory, so a restart (or anything that made
/// nib restart) forgave every client.
#[test]
fn failed_logins_stay_throttled_across_a_restart() {
    let site = Site::new();
    let s = server(&site);
    let o = origin(&s);
    let bad = |s: &TestServer| {
        form(
            s,
            "/admin/login",
            &[&o, "X-Real-IP: 203.0.113.20"],
            "token=wrong-wrong-wrong-wrong",
        )
        .status
    };
    for _ in 0..5 {
        assert_eq!(bad(&s), 401);
    }
    drop(s);
    let s = server(&site);
    let o = origin(&s);
    let r = form(
        &s,
        "/admin/login",
        &[&o, "X-Real-IP: 203.0.113.20"],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let r = form(
        &s,
        "/admin/login",
        &[&o, "X-Real-IP: 203.0.113.21"],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
}

/// Regression: on a dual-stack listener (`[::]`) nginx on 127.0.0.1 appears as
/// `::ffff:127.0.0.1`, which was not taken for loopback: `X-Real-IP` was ignored and every
/// client shared one throttle slot, so 5 bad logins from anyone locked everyone out.
#[test]
fn a_dual_stack_listener_still_tells_clients_apart() {
    let site = Site::new();
    let s = TestServer::start_with(
        &site,
        &["--listen", "[::]:0"],
        &[("NIB_ADMIN_TOKEN", TOKEN)],
    );
    let v4: std::net::SocketAddr = format!("127.0.0.1:{}", s.addr.port()).parse().unwrap();
    let login_as = |ip: &str, token: &str| {
        let o = format!("Origin: http://{v4}");
        let real = format!("X-Real-IP: {ip}");
        request(
            v4,
            "POST",
            "/admin/login",
            &[&o, &real, "Content-Type: application/x-www-form-urlencoded"],
            format!("token={token}").as_bytes(),
        )
        .status
    };
    for _ in 0..5 {
        assert_eq!(login_as("203.0.113.30", "wrong-wrong-wrong-wrong"), 401);
    }
    assert_eq!(login_as("203.0.113.30", TOKEN), 429);
    assert_eq!(login_as("203.0.113.31", TOKEN), 303);
}

/// Regression: the start-up warning about a public address took `::ffff:127.0.0.1` (IPv4
/// loopback written as IPv6) for one.
#[test]
fn a_mapped_loopback_listener_is_not_called_public() {
    let site = Site::new();
    let s = TestServer::start_with(&site, &["--listen", "[::ffff:127.0.0.1]:0"], &[]);
    assert_eq!(s.get("/healthz").status, 200);
    assert!(
        !s.stderr_text().contains("public address"),
        "{}",
        s.stderr_text()
    );
    let s = TestServer::start_with(&site, &["--listen", "[::]:0"], &[]);
    assert!(
        s.stderr_text().contains("public address"),
        "{}",
        s.stderr_text()
    );
}

/// Regression: `nib links` (and `nib shorten`, `nib token`) run in a shell without
/// `NIB_ADMIN_TOKEN` took the stored token, which the server had from its environment,
/// for one that had been removed, and replaced it with a new one: the owner's token
/// stopped working and every browser was logged out.
#[test]
fn nib_links_does_not_replace_the_token_from_the_environment() {
    let site = Site::new();
    let s = server(&site);
    let cookie = login(&s);
    create(&s, r#"{"url":"https://example.com/kept"}"#);
    for _ in 0..2 {
        let (code, out, err) = nib(&site, &["links"], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("https://example.com/kept"), "{out}");
        assert!(!err.contains("admin token"), "{err}");
    }
    let (code, _, err) = nib(&site, &["shorten", "https://example.com/cli"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("admin token"), "{err}");
    let (code, out, _) = nib(&site, &["token"], &[]);
    assert_eq!((code, out.as_str()), (0, ""));
    // The running server still takes the token from its environment, and the browser
    // login made before is still good.
    assert_eq!(api(&s, "GET", "/api/links", None).status, 200);
    assert_eq!(
        get_with(s.addr, "/admin/", &[&cookie_header(&cookie)]).status,
        200
    );
    // So does a restart with the same environment.
    drop(s);
    let s = server(&site);
    assert_eq!(api(&s, "GET", "/api/links", None).status, 200);
    assert!(!s.stderr_text().contains("admin token"));
}

// ---- through nginx, as deployed ----

/// A login through nginx at `front` (127.0.0.1 or [::1]), with a forged `X-Real-IP` when
/// `forged` is given; returns the status.
fn login_through(front: std::net::SocketAddr, forged: Option<&str>, token: &str) -> u16 {
    let body = format!("token={token}");
    let forged = forged
        .map(|f| format!("X-Real-IP: {f}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /admin/login HTTP/1.1\r\nHost: nib.test\r\nConnection: close\r\n\
         Origin: http://nib.test\r\n{forged}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(front, &req).status
}

/// Regression: nginx passed the client's own `X-Real-IP` to nib, which believed it, so
/// a new made-up address per attempt was never throttled (2,000 bad logins, 2,000 401s,
/// about 2,600 guesses a second).
#[test]
fn forged_x_real_ip_values_do_not_escape_the_throttle_through_nginx() {
    let site = Site::new();
    let s = server(&site);
    let Some(nginx) = deploy_nginx(s.addr.port()) else {
        return;
    };
    forged_addresses_are_throttled_as_one(nginx.addr);
}

/// Twenty bad logins through a front end at `front`, each claiming another `X-Real-IP`:
/// the first five are 401 and the rest 429, all counted against the one real client.
fn forged_addresses_are_throttled_as_one(front: std::net::SocketAddr) {
    let statuses: Vec<u16> = (0..20)
        .map(|i| {
            let forged = format!("198.51.100.{i}");
            login_through(front, Some(&forged), "wrong-wrong-wrong")
        })
        .collect();
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&c| c == 429), "{statuses:?}");
}

/// Regression: through nginx, 6 bad logins that named the owner's address in `X-Real-IP`
/// locked the owner out for 15 minutes.
#[test]
fn a_forged_x_real_ip_cannot_lock_the_owner_out_through_nginx() {
    let site = Site::new();
    let s = server(&site);
    let Some(nginx) = deploy_nginx(s.addr.port()) else {
        return;
    };
    // The owner comes from ::1, the attacker from 127.0.0.1 claiming to be ::1.
    let owner: std::net::SocketAddr = format!("[::1]:{}", nginx.addr.port()).parse().unwrap();
    for _ in 0..6 {
        login_through(nginx.addr, Some("::1"), "wrong-wrong-wrong");
    }
    assert_eq!(login_through(owner, None, TOKEN), 303);
    // The failures were counted against the attacker's own address.
    assert_eq!(login_through(nginx.addr, None, TOKEN), 429);
    assert_eq!(login_through(nginx.addr, Some("203.0.113.99"), TOKEN), 429);
}

// ---- through Caddy, as deployed ----

/// The same regression through deploy/Caddyfile, which passed the client's `X-Real-IP`
/// through as well (and did not load on Debian 12's Caddy at all).
#[test]
fn forged_x_real_ip_values_do_not_escape_the_throttle_through_caddy() {
    let site = Site::new();
    let s = server(&site);
    let Some(caddy) = DeployCaddy::start(s.addr.port()) else {
        return;
    };
    forged_addresses_are_throttled_as_one(caddy.addr);
}

/// Waits until the link `code` shows `n` clicks on the API (clicks are written in batches).
fn wait_clicks(s: &TestServer, code: &str, n: i64) {
    let ok = eventually(Duration::from_secs(5), || clicks(s, code) == n);
    assert!(ok, "{code} never reached {n} clicks");
}

/// Refusals of `PATCH` as for create (the old code `code` of another link is taken too),
/// an unknown code and a missing token.
fn patch_refusals_answer_400_404_409(s: &TestServer, code: &str) {
    let r = api(
        s,
        "POST",
        "/api/links",
        Some(&format!(
            r#"{{"url":"https://e.example/","slug":"{code}"}}"#
        )),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // `other` may not take `renamed`'s old code, `renamed` may not take `other`.
    let taken = format!(r#"{{"slug":"{code}"}}"#);
    let cases = [
        ("renamed", r#"{"url":"ftp://x"}"#, 400),
        ("renamed", r#"{"slug":"admin"}"#, 400),
        ("renamed", r#"{"slug":"a b"}"#, 400),
        ("renamed", r#"{"title":5}"#, 400),
        ("renamed", "[1]", 400),
        ("renamed", r#"{"slug":"other"}"#, 409),
        ("other", taken.as_str(), 409),
    ];
    for (link, body, status) in cases {
        let r = api(s, "PATCH", &format!("/api/links/{link}"), Some(body));
        assert_eq!(r.status, status, "{link} {body}: {}", r.text());
        assert!(json(&r)["error"].is_string());
    }
    assert_eq!(api(s, "PATCH", "/api/links/nope", Some("{}")).status, 404);
    let r = request(s.addr, "PATCH", "/api/links/renamed", &[], b"{}");
    assert_eq!(r.status, 401);
}

/// `PATCH /api/links/CODE`: each field alone, then a rename whose old code still redirects
/// (and stays taken), with the clicks kept; and each refusal as for create.
#[test]
fn a_link_edited_on_the_api_keeps_its_old_code_and_its_clicks() {
    let site = Site::new();
    let s = server(&site);
    let l = create(&s, r#"{"url":"https://example.com/old","title":"Old"}"#);
    let code = l["code"].as_str().unwrap().to_string();
    create(&s, r#"{"url":"https://example.com/other","slug":"other"}"#);
    assert_eq!(s.get(&format!("/{code}")).status, 302);
    wait_clicks(&s, &code, 1);

    let path = format!("/api/links/{code}");
    let r = api(
        &s,
        "PATCH",
        &path,
        Some(r#"{"url":"https://example.com/new"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["url"], "https://example.com/new");
    assert_eq!(json(&r)["title"], "Old");
    let r = api(
        &s,
        "PATCH",
        &path,
        Some(r#"{"title":"New","slug":"renamed"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    let got = (
        v["code"].as_str(),
        v["title"].as_str(),
        v["clicks"].as_i64(),
    );
    assert_eq!(got, (Some("renamed"), Some("New"), Some(1)));
    assert_eq!(r.header("location"), Some("/api/links/renamed"));

    // Both codes lead to the new target; the old one's clicks count for the link.
    for c in [code.as_str(), "renamed"] {
        let r = s.get(&format!("/{c}"));
        assert_eq!(r.status, 302, "{c}");
        assert_eq!(r.header("location"), Some("https://example.com/new"));
    }
    wait_clicks(&s, "renamed", 3);
    assert!(s.get(&format!("/{code}+")).text().contains("renamed"));

    patch_refusals_answer_400_404_409(&s, &code);
    // Deleting the link frees both codes.
    assert_eq!(api(&s, "DELETE", "/api/links/renamed", None).status, 204);
    assert_eq!(s.get(&format!("/{code}")).status, 404);
}

/// The edit view of `first` before logging in (the login; a POST refused before its body
/// is read) and without a CSRF token.
fn edit_view_is_owner_only(s: &TestServer, ch: &str) {
    let o = origin(s);
    assert_eq!(get_with(s.addr, "/admin/links/first/edit", &[]).status, 303);
    let evil = "url=https%3A%2F%2Fevil.example%2F";
    assert_eq!(form(s, "/admin/links/first/edit", &[&o], evil).status, 401);
    let page = get_with(s.addr, "/admin/links/first/edit", &[ch]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("value=\"https://example.com/a\""));
    assert_eq!(
        get_with(s.addr, "/admin/links/nope/edit", &[ch]).status,
        404
    );
    let body = "url=https%3A%2F%2Fexample.com%2Fb&slug=second&title=";
    let r = form(s, "/admin/links/first/edit", &[&o, ch], body);
    assert_eq!(r.status, 403, "no csrf");
}

/// A refused address: 400, the plain words beside the field, everything typed kept, and
/// the link unchanged.
fn edit_refusal_keeps_what_was_typed(s: &TestServer, ch: &str, csrf: &str) {
    let o = origin(s);
    let body = format!("csrf={csrf}&url=example.com%2Fb&slug=second&title=Typed+title");
    let r = form(s, "/admin/links/first/edit", &[&o, ch], &body);
    assert_eq!(r.status, 400);
    let page = r.text();
    let words = "That address needs to start with http:// or https://";
    assert!(page.contains(words), "{page}");
    for kept in ["example.com/b", "second", "Typed title"] {
        assert!(
            page.contains(&format!("value=\"{kept}\"")),
            "{kept}: {page}"
        );
    }
    let now = s.get("/first");
    assert_eq!(now.header("location"), Some("https://example.com/a"));
}

/// The admin's edit view: owner only, CSRF-checked, a rename keeps the old code, and a
/// refused field comes back beside its field with what was typed.
#[test]
fn a_link_edited_in_the_admin_follows_old_and_new_codes() {
    let site = Site::new();
    let s = server(&site);
    let l = create(&s, r#"{"url":"https://example.com/a","slug":"first"}"#);
    assert_eq!(l["code"], "first");
    let cookie = login(&s);
    let ch = cookie_header(&cookie);
    let csrf = csrf_of(&s, &cookie);
    let o = origin(&s);
    edit_view_is_owner_only(&s, &ch);
    edit_refusal_keeps_what_was_typed(&s, &ch, &csrf);

    let body = format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fb&slug=second&title=B");
    let r = form(&s, "/admin/links/first/edit", &[&o, &ch], &body);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/admin/?edited=second"));
    for c in ["first", "second"] {
        let r = s.get(&format!("/{c}"));
        assert_eq!(r.header("location"), Some("https://example.com/b"), "{c}");
    }
    let page = get_with(s.addr, "/admin/links/second/edit", &[&ch]).text();
    assert!(page.contains("Old names that still work"), "{page}");
    // A taken name is refused beside the slug field.
    create(&s, r#"{"url":"https://example.com/c","slug":"third"}"#);
    let body = format!("csrf={csrf}&url=https%3A%2F%2Fexample.com%2Fc&slug=first&title=");
    let r = form(&s, "/admin/links/third/edit", &[&o, &ch], &body);
    assert_eq!(r.status, 409);
    assert!(r.text().contains("taken by another link"));
}

/// The create form: a refused field answers 400 with the plain words beside it and the
/// form filled in as typed; two refused fields are both shown; nothing is created.
fn create_refusals_are_inline(s: &TestServer, ch: &str, csrf: &str) {
    let o = origin(s);
    let url = "https%3A%2F%2Fexample.com%2F";
    let cases = [
        (
            "url=example.com&slug=mine",
            "http:// or https://",
            "example.com",
        ),
        (
            &format!("url={url}&slug=a+b") as &str,
            "letters, digits",
            "https://example.com/",
        ),
        (
            &format!("url={url}&slug=tags"),
            "site&#39;s own pages",
            "https://example.com/",
        ),
    ];
    for (body, words, url) in cases {
        let body = format!("csrf={csrf}&{body}&title=My+page");
        let r = form(s, "/admin/links", &[&o, ch], &body);
        assert_eq!(r.status, 400, "{body}");
        let page = r.text().replace("&#x27;", "&#39;");
        assert!(page.contains(words), "{body}: {page}");
        assert!(page.contains(&format!("value=\"{url}\"")), "{body}");
        assert!(page.contains("value=\"My page\""), "{body}");
        assert!(page.contains("aria-invalid=\"true\""), "{body}");
    }
    let body = format!("csrf={csrf}&url=example.com&slug=a+b");
    let page = form(s, "/admin/links", &[&o, ch], &body).text();
    let both = page.contains("id=\"url-error\"") && page.contains("id=\"slug-error\"");
    assert!(both, "{page}");
    assert_eq!(link_count(s), 0);
}

/// Inline errors on the create form; each row's buttons are named after its link; the
/// delete button leads to a page that asks first.
#[test]
fn inline_errors_keep_what_was_typed_and_delete_asks_first() {
    let site = Site::new();
    let s = server(&site);
    let cookie = login(&s);
    let ch = cookie_header(&cookie);
    let csrf = csrf_of(&s, &cookie);
    let o = origin(&s);
    create_refusals_are_inline(&s, &ch, &csrf);

    create(&s, r#"{"url":"https://example.com/d","slug":"doomed"}"#);
    let page = get_with(s.addr, "/admin/", &[&ch]).text();
    let label = format!("{}/doomed", s.addr);
    for name in ["Copy", "Edit", "Delete"] {
        let named = format!("aria-label=\"{name} {label}\"");
        assert!(page.contains(&named), "{name}: {page}");
    }
    // GET asks; nothing is deleted until the POST.
    let r = get_with(s.addr, "/admin/links/doomed/delete", &[&ch]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("This cannot be undone"));
    assert_eq!(s.get("/doomed").status, 302);
    let body = format!("csrf={csrf}");
    let r = form(&s, "/admin/links/doomed/delete", &[&o, &ch], &body);
    assert_eq!(r.status, 303);
    assert_eq!(s.get("/doomed").status, 404);
}

/// The web app manifest's share target opens the share page, which takes the address
/// from the shared text when an app sends none in `url`; a page shortened before says
/// "Share again", and the post's length counts the link.
#[test]
fn the_share_target_and_share_again() {
    let site = Site::new();
    let s = server(&site);
    let r = s.get("/manifest.webmanifest");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/manifest+json"));
    let m = json(&r);
    assert_eq!(m["share_target"]["action"], "/admin/share");
    assert_eq!(m["share_target"]["method"], "GET");
    assert_eq!(m["share_target"]["params"]["url"], "url");
    assert_eq!(m["share_target"]["params"]["text"], "text");
    // Its icons are built in, so a site without them still installs.
    for icon in m["icons"].as_array().unwrap() {
        let r = s.get(icon["src"].as_str().unwrap());
        assert_eq!(r.status, 200, "{icon}");
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert!(r.body.starts_with(b"\x89PNG"), "{icon}");
    }

    let cookie = login(&s);
    let ch = cookie_header(&cookie);
    let page = get_with(s.addr, "/admin/", &[&ch]).text();
    assert!(page.contains("rel=\"manifest\" href=\"/manifest.webmanifest\""));
    // Android's way: the address at the end of the text.
    let shared = "/admin/share?title=T&text=Look%20https%3A%2F%2Fexample.com%2Fp";
    let r = get_with(s.addr, shared, &[&ch]);
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("value=\"https://example.com/p\""), "{page}");
    assert!(page.contains("Post to X"), "{page}");
    // "T “Look”" and a link X counts as 23, after a space: 8 + 1 + 23.
    assert!(page.contains(">32</output> of 280"), "{page}");
    assert!(!page.contains("class=\"site-nav\""), "no public nav");
    create(&s, r#"{"url":"https://example.com/p"}"#);
    let page = get_with(s.addr, shared, &[&ch]).text();
    assert!(page.contains("Share again on X"), "{page}");
}

/// `nib build` writes a renamed link's old code beside its new one, so a static export
/// keeps printed links working too.
#[test]
fn a_renamed_link_is_exported_under_both_codes() {
    let site = Site::new();
    let s = server(&site);
    create(&s, r#"{"url":"https://example.com/x","slug":"before"}"#);
    let r = api(
        &s,
        "PATCH",
        "/api/links/before",
        Some(r#"{"slug":"after"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    drop(s);
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let redirects = std::fs::read_to_string(out.join("_redirects")).unwrap();
    for c in ["before", "after"] {
        assert!(
            redirects.contains(&format!("/{c}  https://example.com/x  302")),
            "{c}: {redirects}"
        );
        assert!(out.join(c).join("index.html").is_file(), "{c}");
    }
}

/// Every owner page in each of its states, logged in as `ch`: the GETs, the forms a
/// refused field sends back, and a wrong login. Returns (what, answer) pairs.
fn owner_pages_in_every_state(s: &TestServer, ch: &str, csrf: &str) -> Vec<(String, Resp)> {
    let o = origin(s);
    let mut pages: Vec<(String, Resp)> = [
        "/admin/?created=two",
        "/admin/?q=nothing",
        "/admin/?before=1",
        "/admin/login",
        "/admin/share?url=https%3A%2F%2Fexample.com%2Fc&title=C&text=words",
        "/admin/share?url=https%3A%2F%2Fexample.com%2Fa&mode=shorten",
        "/admin/share?url=ftp%3A%2F%2Fx",
        "/admin/share?done=two",
        "/admin/links/two/edit",
        "/admin/links/two/delete",
        "/admin/links/nope/edit",
        "/two+",
    ]
    .iter()
    .map(|p| (p.to_string(), get_with(s.addr, p, &[ch])))
    .collect();
    let refused = [
        ("/admin/links", "url=x&slug=a+b&title=T"),
        (
            "/admin/links/two/edit",
            "url=https%3A%2F%2Fexample.com%2F&slug=admin&title=",
        ),
        (
            "/admin/share",
            "url=https%3A%2F%2Fexample.com%2Fd&slug=two&text=hi&mode=share",
        ),
    ];
    for (path, body) in refused {
        let r = form(s, path, &[&o, ch], &format!("csrf={csrf}&{body}"));
        pages.push((format!("POST {path}"), r));
    }
    let wrong = b"token=wrong&next=%2Fadmin%2F";
    let h = [
        o.as_str(),
        "Content-Type: application/x-www-form-urlencoded",
    ];
    pages.push((
        "wrong login".into(),
        request(s.addr, "POST", "/admin/login", &h, wrong),
    ));
    pages
}

/// Every owner page, in each of its states, is valid HTML by the Nu HTML Checker (skipped
/// with a note without Java or vnu.jar, as in `html_valid`).
#[test]
fn owner_pages_pass_the_nu_html_checker() {
    let Some((java, jar)) = crate::html_valid::vnu_tools() else {
        return;
    };
    let site = Site::new();
    let s = server(&site);
    create(
        &s,
        r#"{"url":"https://example.com/a","slug":"one","title":"A <title> & more"}"#,
    );
    create(&s, r#"{"url":"https://example.com/b"}"#);
    let r = api(&s, "PATCH", "/api/links/one", Some(r#"{"slug":"two"}"#));
    assert_eq!(r.status, 200);
    let cookie = login(&s);
    let pages = owner_pages_in_every_state(&s, &cookie_header(&cookie), &csrf_of(&s, &cookie));
    for (what, r) in &pages {
        let html = r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html"));
        assert!(html, "{what}: {}", r.status);
    }
    let bodies: Vec<&[u8]> = pages.iter().map(|(_, r)| r.body.as_slice()).collect();
    if let Err(report) = crate::html_valid::nu_check(&java, &jar, &bodies) {
        let names: Vec<&str> = pages.iter().map(|(w, _)| w.as_str()).collect();
        panic!("Nu HTML checker errors for {names:?}:\n{report}");
    }
}
