//! nib: a self-hosted blog engine and URL shortener in one small binary. This file holds
//! the program's entry point, [`run`], which dispatches a parsed command line to the
//! modules that do the work; see ARCHITECTURE.md for the map.
#![deny(clippy::undocumented_unsafe_blocks)]

pub use config::Args;

/// A small deterministic random generator for the fuzz-style unit tests: `next(n)` is a
/// number below `n`, the same sequence on every run, so a failure repeats.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

/// What the integration tests reach inside the crate: the cookie format (to forge and
/// replay cookies), the guard's header deadline and the `/proc` status parser.
#[doc(hidden)]
pub mod test_support {
    pub use crate::auth::{COOKIE_TTL, make_cookie, unhex};
    pub use crate::lifecycle::guard::HEADER_DEADLINE;
    pub use crate::lifecycle::memory::parse_status_kb;
}

mod access_log;
mod app;
mod auth;
mod cache;
mod config;
mod dates;
mod db;
mod error;
mod export;
mod handlers;
mod hash;
mod highlight;
mod http;
mod init;
mod lifecycle;
mod links;
mod oldurls;
mod pages;
mod posts;
mod render;
mod reply;
mod request;
mod routes;
mod secrets;
mod shortcodes;
mod shortener;
mod sockets;
mod sys;

use std::collections::HashMap;
use std::time::Instant;

use app::{open_db, open_site};
use config::{Command, Config, USAGE};
use db::Db;
use error::StartupError;

/// Runs one command to completion. Returns the process exit code for outcomes that are not
/// errors of nib itself (`check` finding problems exits 1).
pub fn run(args: Args, env: HashMap<String, String>) -> Result<u8, StartupError> {
    let command = args.command.clone().unwrap_or(Command::Serve);
    match command {
        Command::Help => {
            println!("{USAGE}");
            return Ok(0);
        }
        Command::Version => {
            println!("nib {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        // A new site has no configuration to load yet.
        Command::Init { dir } => return init::init(&dir),
        _ => {}
    }
    let cfg = Config::load(&args, &env)?;
    // Before any post is read: dates written without an offset are read in this zone.
    dates::set_site_zone(cfg.timezone.clone());
    match command {
        Command::Serve => {
            lifecycle::memory::ensure_allocator_tunables();
            http::install_panic_hook();
            lifecycle::serve(cfg, &env)
        }
        Command::Check => check(&cfg),
        Command::New { title } => {
            let path = posts::new_post(&cfg.posts_dir, &title, dates::now())
                .map_err(StartupError::Other)?;
            println!("{}", path.display());
            Ok(0)
        }
        Command::Build { out } => {
            let (db, _, _) = open_site(&cfg)?;
            db.set_cache_kib(4 * 1024)?;
            if cfg.base_url.is_none() {
                eprintln!(
                    "nib: warning: no base_url set; feeds and sitemap will point at {}",
                    cfg.base()
                );
            }
            let app = app::App::new(cfg, db)?;
            export::build(&app, &out)?;
            Ok(0)
        }
        Command::Backup { file } => {
            let db = open_db(&cfg)?;
            db.backup_to(&file)
                .map_err(|e| StartupError::db(format!("backup to {}", file.display()), e))?;
            eprintln!(
                "nib: backed up {} to {}",
                cfg.db_path.display(),
                file.display()
            );
            Ok(0)
        }
        Command::Restore { file } => {
            let mut db = open_db(&cfg)?;
            db.restore_from(&file)
                .map_err(|e| StartupError::db(format!("restore from {}", file.display()), e))?;
            eprintln!(
                "nib: restored {} from {}",
                cfg.db_path.display(),
                file.display()
            );
            Ok(0)
        }
        Command::Shorten { url, slug } => shorten(&cfg, &url, slug.as_deref()),
        Command::Links => list_links(&cfg),
        Command::Token { reset } => token(&cfg, reset),
        Command::Help | Command::Version | Command::Init { .. } => unreachable!("handled above"),
    }
}

/// `nib check`: indexes the posts into a scratch database (the live one is not touched)
/// and lists, one line each and sorted by path, every file under `posts/` that has a
/// problem (broken front matter, a duplicate slug with no way out, too big: these make
/// the exit code 1), every file it does not publish and why (a draft, not a post, a
/// section file, hidden, too deep...), and every post published under a dated slug with
/// the file that has its slug; then every file of `pages/` that is not served (broken,
/// a reserved or taken slug: problems; a draft, not a page, a folder: not). Then the front
/// matter keys nib ignored, with how many posts use each. Config problems never get here:
/// loading the config failed already, naming the key.
fn check(cfg: &Config) -> Result<u8, StartupError> {
    use std::collections::BTreeMap;
    use std::ops::ControlFlow;
    if !cfg.posts_dir.is_dir() {
        eprintln!("nib: {}: no posts folder", cfg.posts_dir.display());
        return Ok(1);
    }
    // An empty name is SQLite's private temporary database: on disk, deleted when closed.
    // (In memory, 10,000 posts with their HTML cost 80 MB.)
    let db = Db::open(std::path::Path::new(""))?;
    let mut index = posts::Index::new();
    index.quiet = true;
    index.max_post_bytes = cfg.max_post_kb * 1024;
    index.shortcodes = app::site_shortcodes(cfg);
    let started = Instant::now();
    let r = index.refresh(&db, &cfg.posts_dir);
    let broken = db.count_broken()?;
    let public = db.count_public()?;
    let shortcodes = shortcode_problems(cfg, &db, &index.shortcodes)?;
    println!(
        "checked {} files in {} ms: {public} public posts, {broken} with problems",
        r.parsed,
        started.elapsed().as_millis(),
    );
    // (path, what), sorted by path for a stable report; one line a file.
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut ignored: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = None;
    let walked = posts::walk(&cfg.posts_dir, &mut |found| {
        match found {
            posts::Walked::Post { rel, .. } => match db.post_status(rel) {
                Ok(Some(status)) => {
                    if let Some(problem) = status.error {
                        lines.push((rel.to_string(), problem));
                        return ControlFlow::Continue(());
                    }
                    let hidden = match (status.hidden, status.publish_at) {
                        (Some(db::Visibility::Waiting), Some(at)) => Some(format!(
                            "not published: scheduled for {}",
                            dates::rfc3339(at)
                        )),
                        (Some(db::Visibility::Expired), _) => {
                            Some("not published: past its expiryDate".to_string())
                        }
                        (Some(_), _) => Some("not published: a draft".to_string()),
                        (None, _) => None,
                    };
                    if let Some(why) = hidden {
                        lines.push((rel.to_string(), why));
                    }
                    if let Some(note) = status.note {
                        lines.push((rel.to_string(), note));
                    }
                    // Read again for its keys only: a file that parsed once parses again.
                    let text = std::fs::read_to_string(cfg.posts_dir.join(rel));
                    if let Ok(keys) = text
                        .map_err(|e| e.to_string())
                        .and_then(|t| posts::ignored_keys(&t))
                    {
                        for k in keys {
                            *ignored.entry(k).or_default() += 1;
                        }
                    }
                }
                // Added since the refresh: the next check sees it.
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            },
            posts::Walked::Skipped { rel, why } => {
                lines.push((rel.to_string(), format!("not published: {}", why.reason())));
            }
            posts::Walked::Folder { .. } => {}
        }
        ControlFlow::Continue(())
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    if let Err(e) = walked {
        eprintln!("nib: {}: {e}", cfg.posts_dir.display());
        return Ok(1);
    }
    // Served all the same: warnings, not problems. A post dated by its file's modification
    // time, or one showing a shortcode as text, is published; a migrated site's check
    // passes while the owner fixes them.
    for (path, note) in db.post_notes()? {
        lines.push((path, format!("warning: {note}")));
    }
    lines.sort();
    for (path, what) in &lines {
        println!("{}: {what}", cfg.posts_dir.join(path).display());
    }
    for line in &shortcodes {
        println!("{line}");
    }
    let old_urls = posts::alias_problems(&db, &cfg.db_path, &cfg.static_dir)?;
    for (path, problem) in &old_urls {
        println!("{}: {problem}", cfg.posts_dir.join(path).display());
    }
    // The standalone pages of `pages/`, one line a file: a page that is not served
    // (broken, a reserved slug, a slug another page has) is a problem, a draft is not.
    let pages_dir = pages::pages_dir(&cfg.posts_dir);
    let mut page_lines: Vec<(String, String)> = pages::list(&pages_dir)
        .map(|l| l.skipped)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, why)| (name, format!("not published: {why}")))
        .collect();
    let mut page_problems = 0;
    for (name, what, problem) in db.page_problems()? {
        page_problems += usize::from(problem);
        page_lines.push((name, what));
    }
    page_lines.sort();
    for (name, what) in &page_lines {
        println!("{}: {what}", pages_dir.join(name).display());
    }
    for (key, n) in &ignored {
        let posts = if *n == 1 { "post" } else { "posts" };
        println!("front matter key {key:?} is ignored: used by {n} {posts}");
    }
    Ok(
        if broken == 0 && old_urls.is_empty() && page_problems == 0 {
            0
        } else {
            1
        },
    )
}

/// `nib check`'s lines for shortcodes shown as text (`FILE:LINE: unknown shortcode
/// "NAME"`), from every indexed post file read once more. Only a body with a `{{` or `{%`
/// is scanned (see `shortcodes::expand`), so a site without shortcodes costs one read per
/// post.
fn shortcode_problems(
    cfg: &Config,
    db: &Db,
    templates: &shortcodes::Templates,
) -> Result<Vec<String>, StartupError> {
    let mut files = Vec::new();
    db.each_post_path(|p| files.push(cfg.posts_dir.join(p)))
        .map_err(|e| StartupError::db("listing the posts", e))?;
    // The pages of `pages/` too: they go through the same render path.
    let pages_dir = pages::pages_dir(&cfg.posts_dir);
    let listing = pages::list(&pages_dir).unwrap_or_default();
    files.extend(listing.pages.iter().map(|(name, _)| pages_dir.join(name)));
    let mut lines = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (line, problem) in posts::shortcode_problems(&text, templates) {
            lines.push(format!(
                "{}:{line}: {problem}, shown as text",
                path.display()
            ));
        }
    }
    Ok(lines)
}

/// Opens the live database for a short-link command, beside a running server (WAL and
/// the busy timeout make that safe), and makes sure the secrets exist. It never changes
/// the admin token (see [`secrets::ensure_secrets`]): only the server's configuration and
/// `nib token --reset` do.
fn links_db(cfg: &Config) -> Result<Db, StartupError> {
    let db = open_db(cfg)?;
    if let Some(token) = secrets::ensure_secrets(&db, cfg)
        .map_err(|e| StartupError::db("setting up the admin secrets", e))?
    {
        secrets::announce_token(&token, cfg.base());
    }
    Ok(db)
}

/// `nib shorten URL [--slug S]`: prints the short URL (an existing one when the target
/// was shortened before). Exit 1 with the reason on bad input or a taken slug.
fn shorten(cfg: &Config, url: &str, slug: Option<&str>) -> Result<u8, StartupError> {
    let db = links_db(cfg)?;
    match shortener::create_link(&db, cfg, url, slug, None) {
        Ok((link, _)) => {
            println!("{}/{}", cfg.base(), link.code);
            Ok(0)
        }
        Err(e) => {
            eprintln!("nib: {e}");
            Ok(1)
        }
    }
}

/// `nib links`: every link, newest first, as `code<TAB>clicks<TAB>url`, a page of rows at
/// a time. Clicks a running server has not written yet (at most a second's worth) are not
/// included.
fn list_links(cfg: &Config) -> Result<u8, StartupError> {
    use std::io::Write;
    let db = links_db(cfg)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut before = None;
    loop {
        let rows = db.search_links("", before, 500)?;
        for l in &rows {
            if writeln!(out, "{}\t{}\t{}", l.code, l.clicks, l.url).is_err() {
                // A closed pipe (`nib links | head`) ends the listing quietly.
                return Ok(0);
            }
        }
        match rows.last() {
            Some(l) => before = Some(l.id),
            None => return Ok(0),
        }
    }
}

/// `nib token [--reset]`. A token from the configuration is printed (it is in the config
/// already). A generated one is stored only as its hash and cannot be printed: `--reset`
/// makes a new one, prints it once, and ends every browser login.
fn token(cfg: &Config, reset: bool) -> Result<u8, StartupError> {
    if let Some(t) = &cfg.admin_token {
        if reset {
            return Err(StartupError::Other(
                "the admin token comes from NIB_ADMIN_TOKEN or admin_token in nib.toml; change it there".into(),
            ));
        }
        println!("{t}");
        return Ok(0);
    }
    let db = open_db(cfg)?;
    let fresh = secrets::ensure_secrets(&db, cfg)
        .map_err(|e| StartupError::db("setting up the admin secrets", e))?;
    let token = match (fresh, reset) {
        (Some(t), _) => t,
        (None, true) => secrets::reset_token(&db)
            .map_err(|e| StartupError::db("making a new admin token", e))?,
        (None, false) => {
            eprintln!(
                "nib: an admin token is set and stored hashed, so it cannot be shown; `nib token --reset` makes a new one and logs every browser out"
            );
            return Ok(0);
        }
    };
    println!("{token}");
    eprintln!("nib: log in at {}/admin/login", cfg.base());
    Ok(0)
}
