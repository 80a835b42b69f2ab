//! nib: a self-hosted blog engine and URL shortener in one small binary. This file holds
//! the program's entry point, [`run`], which dispatches a parsed command line to the
//! modules that do the work; see ARCHITECTURE.md for the map.

pub mod config;
pub mod dates;
pub mod db;
pub mod error;
pub mod guard;
pub mod http;
pub mod lifecycle;
pub mod notify;
pub mod posts;
pub mod render;

use std::collections::HashMap;
use std::time::Instant;

use config::{Args, Command, Config, USAGE};
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
        _ => {}
    }
    let cfg = Config::load(&args, &env)?;
    match command {
        Command::Serve => lifecycle::serve(cfg, &env),
        Command::Check => check(&cfg),
        Command::New { title } => {
            let path = posts::new_post(&cfg.posts_dir, &title, dates::now())
                .map_err(StartupError::Other)?;
            println!("{}", path.display());
            Ok(0)
        }
        Command::Build { .. }
        | Command::Shorten { .. }
        | Command::Links
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Token { .. } => Err(StartupError::Other(
            "this command is not available yet".into(),
        )),
        Command::Help | Command::Version => unreachable!("handled above"),
    }
}

/// Opens the database and brings the post index up to date, logging how long it took.
pub fn open_site(cfg: &Config) -> Result<(Db, posts::Index, posts::Refresh), StartupError> {
    if let Some(parent) = cfg.db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StartupError::Db(format!("{}: {e}", parent.display())))?;
    }
    let db = Db::open(&cfg.db_path)
        .map_err(|e| StartupError::Db(format!("{}: {e}", cfg.db_path.display())))?;
    let mut index = posts::Index::new();
    let r = index.refresh(&db, &cfg.posts_dir);
    Ok((db, index, r))
}

/// `nib check`: indexes the posts into a scratch database (the live one is not touched)
/// and lists every broken post and duplicate slug. Config problems never get here: loading
/// the config failed already, naming the key.
fn check(cfg: &Config) -> Result<u8, StartupError> {
    if !cfg.posts_dir.is_dir() {
        eprintln!("nib: {}: no posts folder", cfg.posts_dir.display());
        return Ok(1);
    }
    let db = Db::open(std::path::Path::new(":memory:"))?;
    let mut index = posts::Index::new();
    let started = Instant::now();
    // Parse errors are printed by the index as it meets them; the summary follows.
    let r = index.refresh(&db, &cfg.posts_dir);
    let broken = db.broken_posts()?;
    let public = db.count_public()?;
    println!(
        "checked {} files in {} ms: {public} public posts, {} with problems",
        r.parsed,
        started.elapsed().as_millis(),
        broken.len()
    );
    for (path, problem) in &broken {
        println!("{}: {problem}", cfg.posts_dir.join(path).display());
    }
    Ok(if broken.is_empty() { 0 } else { 1 })
}
