//! The bookmarklet in a real browser: headless Chromium, driven over the W3C WebDriver
//! protocol by a small hand-written client (a socket and serde_json, no async runtime).
//! It logs in through the form, opens a page of another site (nib's own post, reached as
//! `localhost` while nib's base URL is `127.0.0.1`, so the SameSite cookie rules apply as
//! they would on a foreign page), runs the "Shorten & share" bookmarklet there, confirms
//! on the share page, and checks that the browser lands on the share target with the short
//! link in it. A second test walks the owner's pages at 390 px: none scrolls sideways,
//! none has a serious or critical axe-core finding (when axe-core is installed, see
//! `.ci/run`), the share target leads to the share page, a refused address comes back
//! with what was typed, and a renamed link is followed under its old and new codes.
//! Without chromium and chromedriver the tests say so and pass (under
//! `NIB_REQUIRE_TOOLS=1`, fail).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token-0123456789";

/// chromedriver, killed (with its browser) on drop.
pub(crate) struct Driver {
    child: Child,
    addr: SocketAddr,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.call("DELETE", &format!("/session/{id}"), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) fn start(bin: &std::path::Path) -> Driver {
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut d = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: None,
        };
        let ready = eventually(Duration::from_secs(20), || {
            d.call("GET", "/status", None)
                .is_ok_and(|v| v["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver did not become ready");
        d.session = None;
        d
    }

    /// One WebDriver command: the decoded JSON answer, or the error it reported.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        s.set_write_timeout(Some(Duration::from_secs(10))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open whatever the request says, so the body is
        // read by its Content-Length.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or("no content length")?;
        let mut body = vec![0; len];
        s.read_exact(&mut body).map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body);
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if head.starts_with("HTTP/1.1 200") {
            Ok(v)
        } else {
            Err(format!("{path}: {}", v["value"]))
        }
    }

    pub(crate) fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_ref().expect("session");
        self.call(method, &format!("/session/{id}{path}"), body.as_ref())
            .unwrap_or_else(|e| panic!("{e}"))["value"]
            .clone()
    }

    pub(crate) fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn find(&self, css: &str) -> Option<String> {
        let id = self.session.as_ref()?;
        let v = self
            .call(
                "POST",
                &format!("/session/{id}/element"),
                Some(&json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_string)
    }

    pub(crate) fn wait_find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} on {}: {}",
                self.url(),
                self.cmd("GET", "/source", None)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let u = self.url();
            if ok(&u) {
                return u;
            }
            assert!(Instant::now() < deadline, "waiting for {what}; at {u}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` in the page and returns its value.
    pub(crate) fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Makes the page `width` CSS pixels wide, as a phone (below 500) or a desktop.
    pub(crate) fn viewport(&self, width: u32) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500
                }}),
            ),
        );
    }

    /// Replaces what the field `css` holds with `text`.
    fn fill(&self, css: &str, text: &str) {
        let field = self.wait_find(css);
        self.cmd("POST", &format!("/element/{field}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{field}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.wait_find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Opens a session of headless `chromium` with its profile in `profile`.
    pub(crate) fn open_session(&mut self, chromium: &std::path::Path, profile: &std::path::Path) {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 20000, "script": 10000, "implicit": 0},
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = match self.call("POST", "/session", Some(&caps)) {
            Ok(v) => v,
            Err(e) => panic!("new session: {e}"),
        };
        self.session = Some(
            v["value"]["sessionId"]
                .as_str()
                .expect("session id")
                .to_string(),
        );
    }
}

/// Logs in through the form at `base` and waits for the admin page.
fn log_in(d: &Driver, base: &str) {
    d.go(&format!("{base}/admin/login?next=%2Fadmin%2F"));
    let field = d.wait_find("#token");
    d.cmd(
        "POST",
        &format!("/element/{field}/value"),
        Some(json!({ "text": TOKEN })),
    );
    let button = d.wait_find("form[action='/admin/login'] button[type=submit]");
    d.cmd("POST", &format!("/element/{button}/click"), Some(json!({})));
    d.wait_url("the admin page", |u| u == format!("{base}/admin/"));
}

/// Takes the "Shorten & share" bookmarklet from the admin page, as a user dragging it
/// would, and returns its script without the `javascript:` scheme.
fn bookmarklet_script(d: &Driver) -> String {
    let link = d.wait_find("#bm-share");
    let href = d.cmd("GET", &format!("/element/{link}/attribute/href"), None);
    let href = href.as_str().expect("href").to_string();
    href.strip_prefix("javascript:")
        .expect("a javascript: URL")
        .to_string()
}

/// Switches to the window the bookmarklet opened when popups are allowed; when it opened
/// none (it then uses the same tab), stays on `main`.
fn follow_to_new_window(d: &Driver, main: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let handles = d.cmd("GET", "/window/handles", None);
        let handles = handles.as_array().cloned().unwrap_or_default();
        if let Some(other) = handles.iter().find(|h| *h != main) {
            d.cmd("POST", "/window", Some(json!({ "handle": other })));
            break;
        }
        if d.url().contains("/admin/share") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Chromium and its driver, or `None` (after `need_tool` has said what to install, and
/// failed the test under CI) when either is missing.
pub(crate) fn browser_tools() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let chromium = need_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    )?;
    let driver = need_tool(&["chromedriver"], "apt-get install chromium-driver")?;
    Some((chromium, driver))
}

#[test]
fn bookmarklet_shortens_and_shares_in_a_real_browser() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };

    let port = free_port();
    let site = Site::new();
    site.post(
        "2026-01-01-hello.md",
        "# Hello page\n\nSome words to select.\n",
    );
    site.write(
        "nib.toml",
        &format!("share_url = \"http://127.0.0.1:{port}/intent?text={{text}}&url={{url}}\"\n"),
    );
    let listen = format!("127.0.0.1:{port}");
    let s = TestServer::start_with(&site, &["--listen", &listen], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    let base = format!("http://127.0.0.1:{}", s.addr.port());

    let mut d = Driver::start(&driver);
    let profile = tempfile::tempdir().expect("profile dir");
    d.open_session(&chromium, profile.path());

    // Log in through the form, then take the bookmarklet from the admin page.
    log_in(&d, &base);
    let script = bookmarklet_script(&d);

    // Another site's page: the same server under another host name.
    let page = format!("http://localhost:{}/posts/hello/", s.addr.port());
    d.go(&page);
    d.wait_url("the post page", |u| u == page);
    let main = d.cmd("GET", "/window", None);
    d.cmd(
        "POST",
        "/execute/sync",
        Some(json!({"script": script, "args": []})),
    );

    // A new window when popups are allowed, else the same tab.
    follow_to_new_window(&d, &main);
    d.wait_url("the share page", |u| {
        u.starts_with(&format!("{base}/admin/share?"))
    });
    let confirm = d.wait_find("form[action='/admin/share'] button[type=submit]");
    d.cmd(
        "POST",
        &format!("/element/{confirm}/click"),
        Some(json!({})),
    );

    let landed = d.wait_url("the share target", |u| {
        u.starts_with(&format!("{base}/intent?"))
    });
    // The short link is in the intent, encoded, and it leads back to the page.
    let encoded_base = base.replace(':', "%3A").replace('/', "%2F");
    let (_, short) = landed
        .split_once(&format!("url={encoded_base}%2F"))
        .unwrap_or_else(|| panic!("no short link in {landed}"));
    let code: String = short
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(!code.is_empty() && code.len() <= 6, "{landed}");
    assert!(landed.contains("text=Hello%20page"), "{landed}");
    let r = s.get(&format!("/{code}"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(page.as_str()));
}

/// The Web App Manifest's share target as a phone fills it in: `action?title=…&text=…&url=…`
/// (Android apps often send the address in `text`, so `url` stays empty here).
fn share_target_url(s: &TestServer, base: &str, page: &str) -> String {
    let m: Value = serde_json::from_slice(&s.get("/manifest.webmanifest").body).expect("json");
    let t = &m["share_target"];
    assert_eq!(t["method"], "GET");
    let p = &t["params"];
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "{base}{}?{}=Hello&{}={}&{}=",
        t["action"].as_str().expect("action"),
        p["title"].as_str().expect("title"),
        p["text"].as_str().expect("text"),
        enc(&format!("Worth reading {page}")),
        p["url"].as_str().expect("url"),
    )
}

/// axe-core's script, when it is installed (`NIB_AXE_JS`, or the copy `.ci/run` installs
/// under target/ci-node); the check is skipped with a note otherwise (a failure under
/// `NIB_REQUIRE_TOOLS=1`).
pub(crate) fn axe_script() -> Option<String> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var_os("NIB_AXE_JS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join("target/ci-node/node_modules/axe-core/axe.min.js"));
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(_) => {
            tool_missing("axe-core", "npm install axe-core, or set NIB_AXE_JS");
            None
        }
    }
}

/// The serious and critical axe-core findings on the current page, one line each.
pub(crate) fn axe_findings(d: &Driver, axe: &str) -> Vec<String> {
    d.js(axe);
    let v = d.cmd(
        "POST",
        "/execute/async",
        Some(json!({"script": "var done = arguments[arguments.length - 1]; axe.run(document, {resultTypes: ['violations']}).then(function (r) { done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; }).map(function (v) { return v.id + ': ' + v.nodes.map(function (n) { return n.target.join(' '); }).join(', '); })); }, function (e) { done(['axe failed: ' + e]); });", "args": []})),
    );
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The longest slug there can be, which must not widen any page either.
const LONG_SLUG: &str = "a-very-long-custom-slug-that-uses-all-sixty-four-characters-0123";

/// A site with the example look, and links to its own post reached as `localhost` (so the
/// browser can follow them): three with long targets and titles, `first`, and one with
/// the longest slug. Returns the server and the post's URL.
fn owner_site(site: &Site) -> (TestServer, String) {
    site.post("2026-01-01-hello.md", "# Hello page\n\nSome words.\n");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["style.css", "admin.css", "admin.js", "favicon.svg"] {
        let text = std::fs::read_to_string(repo.join("static").join(f)).expect("static file");
        site.write(&format!("static/{f}"), &text);
    }
    let s = TestServer::start_with(site, &[], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    let target = format!("http://localhost:{}/posts/hello/", s.addr.port());
    let auth = format!("Authorization: Bearer {TOKEN}");
    let long = "A title long enough to need an ellipsis on any phone, and then some more words";
    let mut bodies: Vec<String> = (0..3)
        .map(|i| {
            let path = "x".repeat(120);
            format!(r#"{{"url":"{target}?n={i}&{path}","title":"{long}"}}"#)
        })
        .collect();
    bodies.push(format!(r#"{{"url":"{target}","slug":"first"}}"#));
    bodies.push(format!(r#"{{"url":"{target}?long","slug":"{LONG_SLUG}"}}"#));
    for body in bodies {
        let h = [auth.as_str(), "Content-Type: application/json"];
        let r = request(s.addr, "POST", "/api/links", &h, body.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    }
    (s, target)
}

/// No owner page scrolls sideways at 390 px, and axe-core finds nothing serious on any.
fn pages_fit_390_px(d: &Driver, base: &str, axe: Option<&str>) {
    let pages = [
        "/admin/".to_string(),
        "/admin/login".into(),
        "/admin/share?url=https%3A%2F%2Fexample.com%2Fa%2Fvery%2Flong%2Fpath%2Fthat%2Fgoes%2Fon%2Fand%2Fon%2Fand%2Fon&title=T&text=Some%20words".into(),
        "/admin/share?done=first".into(),
        "/admin/links/first/edit".into(),
        "/admin/links/first/delete".into(),
        "/first+".into(),
        format!("/{LONG_SLUG}+"),
        format!("/admin/links/{LONG_SLUG}/edit"),
        format!("/admin/links/{LONG_SLUG}/delete"),
        format!("/admin/share?done={LONG_SLUG}"),
    ];
    for p in &pages {
        d.go(&format!("{base}{p}"));
        d.wait_find("h1");
        let width = d.js("return document.documentElement.scrollWidth");
        assert!(
            width.as_u64().is_some_and(|w| w <= 390),
            "{p} is {width} px wide at 390"
        );
        if let Some(axe) = axe {
            let found = axe_findings(d, axe);
            assert!(found.is_empty(), "axe-core on {p}: {found:#?}");
        }
    }
}

/// The share target (Android's "Share → nib") leads to the share page with the address
/// found in the text, and the count follows the typing (admin.js, allowed by the page's
/// CSP): 290 characters and a link X counts as 23, after a space, are over 280.
fn share_target_opens_the_share_page(d: &Driver, s: &TestServer, base: &str, target: &str) {
    d.go(&share_target_url(s, base, target));
    d.wait_find("form[action='/admin/share'] button[type=submit]");
    let url = d.js("return document.getElementById('url').value");
    assert_eq!(url.as_str(), Some(target));
    d.fill("#text", &"x".repeat(290));
    let count = d.js("return [document.getElementById('count-out').textContent, document.getElementById('count').className]");
    assert_eq!(count[0], "314", "{count}");
    assert!(count[1].as_str().unwrap_or("").contains("over"), "{count}");
}

/// A refused address comes back beside its field, with what was typed.
fn a_refused_address_keeps_what_was_typed(d: &Driver, base: &str) {
    d.go(&format!("{base}/admin/"));
    d.fill("#url", "example.com/typo");
    d.fill("#title", "Kept title");
    d.click("form.create button[type=submit]");
    d.wait_find("#url-error");
    let kept = d.js("return [document.getElementById('url').value, document.getElementById('title').value, document.getElementById('url-error').textContent]");
    assert_eq!(kept[0], "example.com/typo");
    assert_eq!(kept[1], "Kept title");
    let said = kept[2].as_str().unwrap_or("");
    assert!(said.contains("http:// or https://"), "{kept}");
}

/// Renames `first` in the edit view; the old and the new code both lead to the target.
fn a_renamed_link_follows_both_codes(d: &Driver, base: &str, target: &str) {
    d.go(&format!("{base}/admin/links/first/edit"));
    d.fill("#slug", "renamed");
    d.click("form.stack button[type=submit]");
    d.wait_url("the list after saving", |u| {
        u.ends_with("/admin/?edited=renamed")
    });
    for code in ["first", "renamed"] {
        d.go(&format!("{base}/{code}"));
        d.wait_url(&format!("{code} followed"), |u| u == target);
    }
}

#[test]
fn owner_pages_fit_a_phone_and_a_renamed_link_follows_both_codes() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let axe = axe_script();
    let site = Site::new();
    let (s, target) = owner_site(&site);
    let base = format!("http://127.0.0.1:{}", s.addr.port());

    let mut d = Driver::start(&driver);
    let profile = tempfile::tempdir().expect("profile dir");
    d.open_session(&chromium, profile.path());
    d.viewport(390);
    log_in(&d, &base);

    pages_fit_390_px(&d, &base, axe.as_deref());
    share_target_opens_the_share_page(&d, &s, &base, &target);
    a_refused_address_keeps_what_was_typed(&d, &base);
    a_renamed_link_follows_both_codes(&d, &base, &target);
}
