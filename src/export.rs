//! `nib build --out DIR`: the whole public site as files, so it can leave nib for any static
//! host or a CDN. Every page is produced by the same router `nib serve` uses, fed a
//! synthetic GET, so the bytes are the ones the server would send. Pages land at
//! `path/index.html`, which every static host serves at `path/`.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tiny_http::{Request, TestRequest};

use crate::app::App;
use crate::error::StartupError;
use crate::handlers;
use crate::http;
use crate::reply::Body;
use crate::request::Target;

/// The marker that says a folder is a previous export nib may replace.
const MARKER: &str = ".nib-build";

/// Renders one route through the server's own router; `None` when it does not answer 200.
fn fetch(app: &App, path: &str) -> Result<Option<Body>, StartupError> {
    let mut req: Request = TestRequest::new().with_path(path).into();
    let target = Target::of(&req).map_err(|e| StartupError::Other(format!("{path}: {e}")))?;
    match handlers::route(app, &mut req, &target) {
        Ok(reply) if reply.status == 200 => Ok(Some(reply.body)),
        Ok(_) | Err(crate::error::Error::NotFound) => Ok(None),
        Err(e) => Err(StartupError::Other(format!("{path}: {e}"))),
    }
}

fn write_body(app: &App, dest: &Path, body: Body) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut f = io::BufWriter::new(fs::File::create(dest)?);
    match body {
        Body::Empty => {}
        Body::Bytes(b) => f.write_all(&b)?,
        Body::Shared(b) => f.write_all(&b)?,
        Body::File(mut file, _) => {
            io::copy(&mut file, &mut f)?;
        }
        Body::Stream(fill) => http::fill_all(app, fill, &mut f)?,
    }
    // No fsync per file: an export is rebuilt whole when in doubt, and 13,000 fsyncs took
    // longer than rendering every page.
    f.flush()
}

/// Where a route's bytes go in the export: `/a/b/` → `a/b/index.html`, `/feed.xml` as is.
fn file_for(out: &Path, route: &str) -> PathBuf {
    let rel = route.trim_start_matches('/');
    if rel.is_empty() || rel.ends_with('/') {
        out.join(rel).join("index.html")
    } else {
        out.join(rel)
    }
}

/// Prepares `out`: created when missing, replaced when it is an earlier export, refused
/// when it holds anything else (so `--out ~` can never wipe a home folder).
fn prepare(out: &Path) -> Result<(), StartupError> {
    let err = |e: io::Error| StartupError::Other(format!("{}: {e}", out.display()));
    if out.exists() {
        let empty = fs::read_dir(out).map_err(err)?.next().is_none();
        if !empty {
            if !out.join(MARKER).is_file() {
                return Err(StartupError::Other(format!(
                    "{} is not empty and not an earlier nib export; choose another folder",
                    out.display()
                )));
            }
            fs::remove_dir_all(out).map_err(err)?;
        }
    }
    fs::create_dir_all(out).map_err(err)?;
    fs::write(
        out.join(MARKER),
        "made by nib build; the next build replaces this folder\n",
    )
    .map_err(err)
}

/// Copies `static/` to `to`, skipping what the server would not serve (hidden files), and
/// returns how many files were copied. With `keep` a file already in `to` stays: the copy
/// at the site root never replaces a page the export wrote.
fn copy_static(from: &Path, to: &Path, keep: bool) -> io::Result<usize> {
    let mut n = 0;
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let meta = fs::metadata(&src)?;
        if meta.is_dir() {
            n += copy_static(&src, &dst, keep)?;
        } else if meta.is_file() && !(keep && dst.exists()) {
            fs::create_dir_all(to)?;
            fs::copy(&src, &dst)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes the built-in look (style, icons, admin files) wherever the site's `static/` did
/// not provide its own: under `static/`, and the icons also at the top, where browsers
/// look for `/favicon.ico` and `/apple-touch-icon.png`.
fn write_embedded(out: &Path) -> io::Result<usize> {
    let mut n = 0;
    for (name, bytes) in handlers::files::EMBEDDED {
        let icon = name.ends_with(".ico") || name.ends_with(".png");
        let dirs = [Some(out.join("static")), icon.then(|| out.to_path_buf())];
        for dir in dirs.into_iter().flatten() {
            let dst = dir.join(name);
            if !dst.exists() {
                fs::create_dir_all(&dir)?;
                fs::write(&dst, bytes)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Copies the files of every public post bundle (`posts/SLUG/index.md` and what lies
/// beside it) to `out/posts/SLUG/`, beside the post's page, skipping what the server would
/// not serve (hidden files, markdown, links that lead out of the folder). Returns how many
/// files were copied.
fn copy_bundles(app: &App, out: &Path) -> Result<usize, StartupError> {
    use std::ops::ControlFlow;
    let posts_dir = &app.cfg.posts_dir;
    let mut copied = 0;
    let mut failed = None;
    let walked = crate::posts::walk(posts_dir, &mut |found| {
        let crate::posts::Walked::Post { rel, .. } = found else {
            return ControlFlow::Continue(());
        };
        let Some(folder) = crate::posts::bundle_folder(rel) else {
            return ControlFlow::Continue(());
        };
        let slug = match app.db.post_status(rel) {
            Ok(Some(s)) if s.error.is_none() && s.hidden.is_none() => s.slug,
            Ok(_) => None,
            Err(e) => {
                failed = Some(StartupError::from(e));
                return ControlFlow::Break(());
            }
        };
        let Some(slug) = slug else {
            return ControlFlow::Continue(());
        };
        let from = posts_dir.join(folder);
        let to = out.join("posts").join(&slug);
        match copy_bundle(&from, &from, &to, 0) {
            Ok(n) => copied += n,
            Err(e) => {
                failed = Some(StartupError::Other(format!("{}: {e}", from.display())));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked.map_err(|e| StartupError::Other(format!("{}: {e}", posts_dir.display())))?;
    Ok(copied)
}

/// Copies one bundle folder (`root`, now at `from`) to `to`, as [`copy_bundles`] says, up
/// to [`crate::posts::MAX_DEPTH`] folders deep. The post's page (`index.html`) is never
/// replaced by a file of the same name.
fn copy_bundle(root: &Path, from: &Path, to: &Path, depth: usize) -> io::Result<usize> {
    let mut n = 0;
    let real_root = fs::canonicalize(root)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || crate::posts::post_stem(&name).is_some() {
            continue;
        }
        if depth == 0 && name == "index.html" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&*name));
        // A link may point anywhere; only what stays inside the folder is copied, as only
        // that is served.
        if !fs::canonicalize(&src).is_ok_and(|p| p.starts_with(&real_root)) {
            continue;
        }
        let meta = fs::metadata(&src)?;
        if meta.is_dir() && depth < crate::posts::MAX_DEPTH {
            n += copy_bundle(root, &src, &dst, depth + 1)?;
        } else if meta.is_file() {
            fs::create_dir_all(to)?;
            fs::copy(&src, &dst)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Shows `done/total` on one terminal line; silent when stderr is not a terminal.
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn show(&mut self, done: usize, total: usize) {
        if self.tty && (self.last.elapsed().as_millis() >= 100 || done == total) {
            eprint!("\rnib: exporting pages {done}/{total}");
            self.last = Instant::now();
        }
    }
}

/// A link target made safe for the three redirect formats: the url crate already gives
/// ASCII with spaces and quotes percent-encoded; `$` (an nginx variable), `\\` and any
/// remaining whitespace or quote are encoded too, which every server reads as the same URL.
fn redirect_target(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '$' | '\\' | '"' | '\'' | '<' | '>' | '{' | '}' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c if c.is_whitespace() || c.is_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The meta-refresh page for hosts without redirects, at `CODE/index.html`.
fn refresh_page(target: &str) -> String {
    let t = crate::render::escape(target);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Redirecting…</title>\n\
         <meta http-equiv=\"refresh\" content=\"0; url={t}\">\n<link rel=\"canonical\" href=\"{t}\">\n\
         <meta name=\"robots\" content=\"noindex\">\n</head>\n<body>\n<p>Redirecting to <a href=\"{t}\">{t}</a>.</p>\n</body>\n</html>\n"
    )
}

/// Writes every short link three ways: `_redirects` (Netlify / Cloudflare Pages),
/// `nginx-redirects.conf` (a `map` to include in nginx's `http` block) and a meta-refresh
/// `CODE/index.html` for hosts with no redirects at all. Returns how many links.
fn write_links(app: &App, out: &Path) -> io::Result<usize> {
    let status = app.cfg.redirect_status;
    let mut netlify = io::BufWriter::new(fs::File::create(out.join("_redirects"))?);
    let mut nginx = io::BufWriter::new(fs::File::create(out.join("nginx-redirects.conf"))?);
    writeln!(
        netlify,
        "# Short links exported by nib build: /CODE  TARGET  STATUS"
    )?;
    writeln!(
        nginx,
        "# Short links exported by nib build. Include inside nginx's http {{}} block, then in the\n\
         # server: if ($nib_short_link) {{ return {status} $nib_short_link; }}\n\
         map $uri $nib_short_link {{\n    default \"\";"
    )?;
    let mut n = 0;
    let mut before = None;
    loop {
        let page = app
            .db
            .search_links("", before, 500)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for link in &page {
            let target = redirect_target(&link.url);
            // A renamed link's old codes lead to the same target, as they do on the server.
            let aliases = app
                .db
                .link_aliases(link.id)
                .map_err(|e| io::Error::other(e.to_string()))?;
            for code in std::iter::once(&link.code).chain(&aliases) {
                writeln!(netlify, "/{code}  {target}  {status}")?;
                writeln!(nginx, "    /{code} \"{target}\";")?;
                let page_path = out.join(code).join("index.html");
                fs::create_dir_all(page_path.parent().unwrap_or(out))?;
                fs::write(page_path, refresh_page(&target))?;
            }
            n += 1;
        }
    }
    writeln!(nginx, "}}")?;
    netlify.flush()?;
    nginx.flush()?;
    Ok(n)
}

/// Writes every old URL of a public post (`aliases`, `redirect_from`, Zola's `path`) as a
/// 301 to the post: lines added to `_redirects` and a second `map` in
/// `nginx-redirects.conf` (each with and without its trailing slash and as `.html`, the
/// forms the server answers), and a meta-refresh `OLD/index.html` where no page of the
/// export stands (GitHub Pages serves redirects no other way). Returns how many.
fn write_old_urls(app: &App, out: &Path) -> io::Result<usize> {
    let append = |name: &str| {
        fs::OpenOptions::new()
            .append(true)
            .open(out.join(name))
            .map(io::BufWriter::new)
    };
    let (mut netlify, mut nginx) = (append("_redirects")?, append("nginx-redirects.conf")?);
    writeln!(netlify, "# Old URLs of posts: /OLD  /posts/SLUG/  301")?;
    writeln!(
        nginx,
        "# Old URLs of posts. In the server: if ($nib_old_url) {{ return 301 $nib_old_url; }}\n\
         map $uri $nib_old_url {{\n    default \"\";"
    )?;
    let mut n = 0;
    let mut after = String::new();
    loop {
        let page = app
            .db
            .public_aliases(&after, 500)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (key, slug) in &page {
            let old = redirect_target(key);
            let target = format!("/posts/{}/", crate::routes::encode_component(slug));
            for form in [
                format!("/{old}"),
                format!("/{old}/"),
                format!("/{old}.html"),
            ] {
                writeln!(netlify, "{form}  {target}  301")?;
                writeln!(nginx, "    \"{form}\" \"{target}\";")?;
            }
            // A key has no empty, `.` or `..` segment (`oldurls::alias_key`), so the page
            // stays inside `out`. Where the export already wrote something (an old URL that
            // a route answers, such as `/feed.xml`), or a file stands in the way, the
            // redirect files above are the only form.
            let dir = out.join(key);
            if !key.contains(|c: char| c.is_control() || c == '\\') && !dir.exists() {
                let _ = fs::create_dir_all(&dir)
                    .and_then(|()| fs::write(dir.join("index.html"), refresh_page(&target)));
            }
            n += 1;
        }
    }
    writeln!(nginx, "}}")?;
    netlify.flush()?;
    nginx.flush()?;
    Ok(n)
}

/// Writes the public site to `out`. Returns the number of pages written.
pub(crate) fn build(app: &App, out: &Path) -> Result<usize, StartupError> {
    prepare(out)?;
    let started = Instant::now();
    // One read transaction for the whole export: every page sees the same snapshot (a
    // post saved meanwhile cannot appear on one page and not another), and SQLite does not
    // take and check its locks again for each of the ~50,000 queries.
    app.db.begin_read()?;
    let io_err = |p: &Path, e: io::Error| StartupError::Other(format!("{}: {e}", p.display()));
    let total_posts = app.db.count_public()? as u64;

    // The route list is produced lazily, a page of posts at a time, so memory stays flat.
    let mut fixed: Vec<String> = crate::routes::fixed_pages().map(String::from).collect();
    fixed.extend(
        handlers::site::listing_pages(app)
            .map_err(|e| StartupError::Other(format!("listing pages: {e}")))?,
    );
    // Standalone pages, as `SLUG/index.html`.
    fixed.extend(
        app.db
            .page_slugs()?
            .into_iter()
            .map(|slug| format!("/{slug}/")),
    );
    // Each tag's feed; the sitemap lists pages only, so these are added here.
    fixed.extend(
        app.db
            .tags()?
            .into_iter()
            .map(|(slug, _, _)| format!("/tags/{slug}/feed.xml")),
    );
    let total = fixed.len() + total_posts as usize;
    let mut progress = Progress {
        tty: io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let mut written = 0;
    let mut emit = |route: &str| -> Result<(), StartupError> {
        if let Some(body) = fetch(app, route)? {
            let dest = file_for(out, route);
            write_body(app, &dest, body).map_err(|e| io_err(&dest, e))?;
            written += 1;
        }
        progress.show(written, total);
        Ok(())
    };
    for route in &fixed {
        emit(route)?;
    }
    drop(fixed);
    let mut cursor = None;
    loop {
        let page = app.db.post_slugs_after(cursor.as_ref(), 500)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for k in &page {
            emit(&format!("/posts/{}/", k.slug))?;
        }
        cursor = Some(last);
    }
    // Static hosts show `404.html` for unknown paths.
    let not_found = handlers::errors::not_found_page(app, "/404.html");
    let dest = out.join("404.html");
    write_body(app, &dest, not_found.body).map_err(|e| io_err(&dest, e))?;
    let links = write_links(app, out).map_err(|e| io_err(out, e))?;
    let old_urls = write_old_urls(app, out).map_err(|e| io_err(out, e))?;
    app.db.commit()?;
    let files = copy_static(&app.cfg.static_dir, &out.join("static"), false)
        .and_then(|n| Ok(n + copy_static(&app.cfg.static_dir, out, true)?))
        .map_err(|e| io_err(&app.cfg.static_dir, e))?;
    let files =
        files + copy_bundles(app, out)? + write_embedded(out).map_err(|e| io_err(out, e))?;
    if progress.tty {
        eprintln!();
    }
    eprintln!(
        "nib: exported {written} pages, {links} short links, {old_urls} old URLs and {files} static files to {} in {} ms",
        out.display(),
        started.elapsed().as_millis()
    );
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_index_files() {
        let out = Path::new("/o");
        let cases = [
            ("/", "/o/index.html"),
            ("/posts/a/", "/o/posts/a/index.html"),
            ("/tags/x/page/2/", "/o/tags/x/page/2/index.html"),
            ("/feed.xml", "/o/feed.xml"),
        ];
        for (route, want) in cases {
            assert_eq!(file_for(out, route), PathBuf::from(want), "{route}");
        }
    }

    #[test]
    fn redirect_targets_are_safe_in_every_format() {
        let cases = [
            ("https://e.com/a?b=c", "https://e.com/a?b=c"),
            ("https://e.com/$var", "https://e.com/%24var"),
            ("https://e.com/a\"b", "https://e.com/a%22b"),
            ("https://e.com/{x}", "https://e.com/%7Bx%7D"),
        ];
        for (input, want) in cases {
            assert_eq!(redirect_target(input), want);
        }
        assert!(refresh_page("https://e.com/?a=1&b=2").contains("url=https://e.com/?a=1&amp;b=2"));
    }

    #[test]
    fn refuses_to_replace_a_folder_it_did_not_make() {
        // A folder inside the scratch one, since `prepare` removes and makes it again.
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("out");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "keep").unwrap();
        assert!(prepare(&dir).is_err());
        assert!(dir.join("precious.txt").exists());
        fs::remove_file(dir.join("precious.txt")).unwrap();
        prepare(&dir).unwrap();
        fs::write(dir.join("old.html"), "stale").unwrap();
        prepare(&dir).unwrap();
        assert!(
            !dir.join("old.html").exists(),
            "an earlier export is replaced"
        );
    }
}
