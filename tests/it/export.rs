//! `nib build` and `nib backup`/`restore`: the export is the served site, byte for byte,
//! and a backup restores to the same database.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn site() -> Site {
    let site = Site::new();
    for i in 1..=7 {
        site.post(
            &format!("2026-01-{i:02}-post-{i}.md"),
            &format!(
                "---\ntitle: Post {i}\ntags: [t{}, all]\n---\nBody {i} with *emphasis*.\n",
                i % 2
            ),
        );
    }
    site.post(
        "draft.md",
        "---\ntitle: Draft\ntags: [secret]\ndraft: true\n---\ndraft body\n",
    )
    .write("static/style.css", "body{}\n")
    .write(
        "static/img/logo.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .write("static/.hidden", "no")
    .write(
        "nib.toml",
        "per_page = 3\nbase_url = \"https://blog.example\"\n",
    );
    site
}

/// Every file under `dir`, as URL paths (`a/index.html` → `/a/`).
fn exported(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            let url = match rel.strip_suffix("index.html") {
                Some(prefix) => format!("/{prefix}"),
                None => format!("/{rel}"),
            };
            out.insert(url, std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn export_matches_serve_page_for_page() {
    let site = site();
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let files = exported(&out);
    for must in [
        "/",
        "/page/2/",
        "/page/3/",
        "/posts/post-1/",
        "/tags/",
        "/tags/all/",
        "/tags/all/page/2/",
        "/feed.xml",
        "/rss.xml",
        "/feed.json",
        "/tags/all/feed.xml",
        "/sitemap.xml",
        "/robots.txt",
        "/static/style.css",
        "/static/img/logo.svg",
        // static/ also at the top, and the built-in icons wherever static/ has none.
        "/img/logo.svg",
        "/favicon.ico",
        "/static/favicon.svg",
        "/404.html",
    ] {
        assert!(
            files.contains_key(must),
            "{must} not exported: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        !files
            .keys()
            .any(|k| k.contains("draft") || k.contains("secret") || k.contains(".hidden")),
        "{:?}",
        files.keys()
    );
    let s = TestServer::start(&site);
    for (url, bytes) in &files {
        // Files for the static host itself, not pages nib serves.
        if [
            "/404.html",
            "/.nib-build",
            "/_redirects",
            "/nginx-redirects.conf",
        ]
        .contains(&url.as_str())
        {
            continue;
        }
        let r = s.get(url);
        assert_eq!(r.status, 200, "{url}");
        assert!(r.body == *bytes, "{url} differs between export and serve");
    }
    // The 404 page is the served one too.
    assert_eq!(s.get("/404.html").body, files["/404.html"]);

    // A second build replaces the first; a foreign folder is refused.
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = nib(
        &site,
        &[
            "build",
            "--out",
            site.path().join("posts").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn nginx_serves_the_export_like_nib() {
    let site = site();
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let port = free_port();
    let conf = format!(
        "master_process off; worker_processes 1; pid {{dir}}/nginx.pid;
         events {{ worker_connections 64; }}
         http {{ include /etc/nginx/mime.types; access_log off;
           client_body_temp_path {{dir}}; proxy_temp_path {{dir}}; fastcgi_temp_path {{dir}}; uwsgi_temp_path {{dir}}; scgi_temp_path {{dir}};
           server {{ listen 127.0.0.1:{port}; root {root}; error_page 404 /404.html; }} }}",
        root = out.display()
    );
    let Some(nginx) = Nginx::start(&conf, port) else {
        return;
    };
    let addr = nginx.addr;
    let s = TestServer::start(&site);
    for path in [
        "/",
        "/page/2/",
        "/posts/post-3/",
        "/tags/",
        "/tags/t1/",
        "/feed.xml",
        "/sitemap.xml",
        "/static/style.css",
    ] {
        let from_nginx = get(addr, path);
        let from_nib = s.get(path);
        assert_eq!(from_nginx.status, 200, "{path}");
        assert!(from_nginx.body == from_nib.body, "{path} differs");
    }
    assert_eq!(get(addr, "/posts/draft/").status, 404);
}

const TOKEN: &str = "export-test-token-0123456789";

/// Creates a link through the API and returns (code, target as stored).
fn shorten(s: &TestServer, url: &str, slug: Option<&str>) -> (String, String) {
    let body = match slug {
        Some(slug) => format!("{{\"url\": \"{url}\", \"slug\": \"{slug}\"}}"),
        None => format!("{{\"url\": \"{url}\"}}"),
    };
    let auth = format!("Authorization: Bearer {TOKEN}");
    let r = request(
        s.addr,
        "POST",
        "/api/links",
        &[&auth, "Content-Type: application/json"],
        body.as_bytes(),
    );
    assert!(
        r.status == 201 || r.status == 200,
        "{}: {}",
        r.status,
        r.text()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    (
        v["code"].as_str().unwrap().to_string(),
        v["url"].as_str().unwrap().to_string(),
    )
}

#[test]
fn short_links_export_as_redirects_nginx_map_and_refresh_pages() {
    let site = site();
    let s = TestServer::start_with(&site, &[], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    let links = vec![
        shorten(&s, "https://example.com/a?x=1&y=2", None),
        shorten(&s, "https://example.org/$dollar/path", Some("custom_slug")),
        shorten(&s, "https://bücher.example/ä", None),
    ];
    drop(s);
    let out = site.path().join("_site");
    let (code, _, err) = nib(&site, &["build", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let redirects = std::fs::read_to_string(out.join("_redirects")).unwrap();
    let map = std::fs::read_to_string(out.join("nginx-redirects.conf")).unwrap();
    for (code, url) in &links {
        let line = redirects
            .lines()
            .find(|l| l.starts_with(&format!("/{code} ")))
            .unwrap_or_else(|| panic!("{code} not in _redirects:\n{redirects}"));
        let fields: Vec<_> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[2], "302");
        assert!(fields[1].is_ascii(), "{line}");
        assert_eq!(fields[1].replace("%24", "$"), *url);
        assert!(map.contains(&format!("/{code} \"")), "{map}");
        let page = std::fs::read_to_string(out.join(code).join("index.html")).unwrap();
        assert!(
            page.contains("http-equiv=\"refresh\"") && page.contains("rel=\"canonical\""),
            "{page}"
        );
    }

    // nginx, with the exported map included, redirects every code.
    let port = free_port();
    let conf = format!(
        "master_process off; worker_processes 1; pid {{dir}}/nginx.pid;
         events {{ worker_connections 64; }}
         http {{ include /etc/nginx/mime.types; access_log off; include {root}/nginx-redirects.conf;
           client_body_temp_path {{dir}}; proxy_temp_path {{dir}}; fastcgi_temp_path {{dir}}; uwsgi_temp_path {{dir}}; scgi_temp_path {{dir}};
           server {{ listen 127.0.0.1:{port}; root {root};
             if ($nib_short_link) {{ return 302 $nib_short_link; }} }} }}",
        root = out.display()
    );
    let Some(nginx) = Nginx::start(&conf, port) else {
        return;
    };
    let addr = nginx.addr;
    for (code, url) in &links {
        let r = get(addr, &format!("/{code}"));
        assert_eq!(r.status, 302, "{code}");
        assert_eq!(
            r.header("location").map(|l| l.replace("%24", "$")),
            Some(url.clone()),
            "{code}"
        );
    }
    assert_eq!(
        get(addr, "/posts/post-1/").status,
        200,
        "pages still served"
    );
}

#[test]
fn backup_under_write_load_keeps_every_acknowledged_link() {
    let site = site();
    let s = TestServer::start_with(&site, &[], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    let addr = s.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let auth = format!("Authorization: Bearer {TOKEN}");
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5000 {
                let body = format!("url=https://load.example/{i}");
                let r = request(
                    addr,
                    "POST",
                    "/api/links",
                    &[&auth, "Content-Type: application/x-www-form-urlencoded"],
                    body.as_bytes(),
                );
                if r.status == 201 {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .push(v["code"].as_str().unwrap().to_string());
                }
                i += 1;
            }
        })
    };
    assert!(eventually(Duration::from_secs(10), || acked
        .lock()
        .unwrap()
        .len()
        >= 50));
    // Everything acknowledged before the backup starts must be in it.
    let before: Vec<String> = acked.lock().unwrap().clone();
    let backup = site.path().join("under-load.db");
    let (code, _, err) = nib(&site, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    drop(s);
    let restored = Site::new();
    let (code, _, err) = nib(&restored, &["restore", backup.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, listing, err) = nib(&restored, &["links"], &[("NIB_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(code, 0, "{err}");
    let codes: std::collections::HashSet<&str> = listing
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    let missing: Vec<_> = before
        .iter()
        .filter(|c| !codes.contains(c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged links missing from the backup",
        missing.len(),
        before.len()
    );
}

#[test]
fn backup_restores_to_the_same_database() {
    let site = site();
    let s = TestServer::start(&site);
    assert_eq!(s.get("/posts/post-1/").status, 200);
    let backup = site.path().join("backup.db");
    // Taken while the server runs.
    let (code, _, err) = nib(&site, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    drop(s);
    let other = Site::new();
    let (code, _, err) = nib(&other, &["restore", backup.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = nib(
        &other,
        &["backup", other.path().join("again.db").to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // Restoring something that is not a nib database is refused.
    std::fs::write(other.path().join("junk.db"), "not sqlite").unwrap();
    let (code, _, err) = nib(
        &other,
        &["restore", other.path().join("junk.db").to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "{err}");
}
