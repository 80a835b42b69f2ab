//! What every handler may read: [`App`], the configuration, the database and the bounded
//! caches a request may use (the page cache, pending clicks), with the page ETags that
//! name the site's current version. The loop alone changes it, between requests: the post
//! index refresh and the housekeeping of [`App::tick`].

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::cache::PageCache;
use crate::config::Config;
use crate::dates;
use crate::db::{Db, SiteVersion};
use crate::error::StartupError;
use crate::hash::{Fnv, strong_etag};
use crate::links::{self, ClickBatch};
use crate::posts::Index;
use crate::render::Site;

/// How often pending clicks are written at most.
pub(crate) const CLICK_FLUSH: Duration = Duration::from_secs(1);

/// The most links whose clicks wait in memory before they are written anyway.
pub(crate) const CLICK_BATCH_MAX: usize = 1024;

/// Everything a handler may read. Handlers get `&App`; the loop alone mutates it between
/// requests (the post index refresh). The `RefCell`s (pending clicks, the page cache, the
/// body read for the request at hand) are the only state handlers change in memory: each
/// is bounded, and the loop runs one handler at a time.
pub(crate) struct App {
    pub cfg: Config,
    pub db: Db,
    pub index: Index,
    pub site: SiteVersion,
    /// When a post waiting for its date appears or one expires next: the loop compares
    /// it with the clock before each request and tick, so a scheduled post shows within
    /// a tick of its time with no file change, and requests pay one clock read.
    next_schedule: Option<i64>,
    config_fingerprint: u64,
    /// Clicks counted but not yet written; see [`App::tick`].
    pub clicks: RefCell<ClickBatch>,
    last_flush: Instant,
    /// The pages rendered last, under their ETags.
    pub pages: RefCell<PageCache>,
    /// The request body the loop read off the loop for the request being answered (see
    /// [`Error::NeedBody`]); taken by the handler that asked for it.
    pub body: RefCell<Option<Vec<u8>>>,
}

impl App {
    pub fn new(cfg: Config, db: Db) -> rusqlite::Result<App> {
        let site = db.site_version()?;
        // The binary's size and time stand for its build: templates are compiled in, so a
        // rebuilt nib must not answer a 304 for a page it now renders differently.
        let build = std::fs::metadata("/proc/self/exe")
            .map(|m| m.len() ^ dates::mtime(&m).as_secs())
            .unwrap_or(0);
        let config_fingerprint = cfg.fingerprint() ^ build.rotate_left(17);
        // With the site's templates, so a refresh never renders posts without them (the
        // server hands over the index it opened the site with anyway).
        let mut index = Index::new();
        index.shortcodes = site_shortcodes(&cfg);
        let next_schedule = db.next_schedule()?;
        Ok(App {
            cfg,
            db,
            index,
            site,
            next_schedule,
            config_fingerprint,
            clicks: RefCell::new(ClickBatch::default()),
            last_flush: Instant::now(),
            pages: RefCell::new(PageCache::default()),
            body: RefCell::new(None),
        })
    }

    /// Brings the post index up to date when a check is due; called before each request.
    ///
    /// The site's version is read back at every due check, not only when this check
    /// changed something: another nib on the same database (`nib build`, `nib check`) may
    /// have indexed an edit first, and the pages kept under the old version must go.
    pub fn refresh_posts(&mut self) {
        let now = dates::now();
        let scheduled = self.next_schedule.is_some_and(|t| now >= t);
        if scheduled {
            match self
                .db
                .apply_schedule(now)
                .and_then(|_| self.db.next_schedule())
            {
                Ok(next) => self.next_schedule = next,
                Err(e) => {
                    eprintln!("nib: showing or hiding scheduled posts: {e}");
                    // Tried again in a second, not at every request meanwhile.
                    self.next_schedule = Some(now + 1);
                }
            }
        } else if !self.index.is_due() {
            return;
        }
        if self.index.is_due() {
            self.index.refresh_if_due(&self.db, &self.cfg.posts_dir);
        }
        match self.db.site_version() {
            Ok(v) if v != self.site => {
                self.site = v;
                // Every kept page names the old version in its ETag: none is served again.
                self.pages.borrow_mut().clear();
                match self.db.next_schedule() {
                    Ok(next) => self.next_schedule = next,
                    Err(e) => eprintln!("nib: reading the post schedule: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("nib: reading site version: {e}"),
        }
    }

    /// Housekeeping the loop runs after every request and at least every tick while idle
    /// (a quarter second): the rest of a check of posts/ and deferred writes that must not
    /// wait for the next request.
    pub fn tick(&mut self) {
        // A check of posts/ that left files for a later step goes on while no request
        // comes, too.
        self.refresh_posts();
        // Clicks spread over many links are written early too: measured with random codes
        // over 100,000 links, a second's batch held 11,000 entries (470 KB with its sorted
        // copy), more than the rest of the heap together.
        if self.last_flush.elapsed() >= CLICK_FLUSH || self.clicks.borrow().len() >= CLICK_BATCH_MAX
        {
            self.flush_clicks();
        }
    }

    /// Called once when the loop stops (before exit or re-exec), after the last request
    /// has been answered: writes whatever is still pending.
    pub fn finish(&mut self) {
        self.flush_clicks();
    }

    /// Writes the pending clicks in one transaction. On failure (another process holding
    /// the database past the busy timeout) they stay pending for the next try.
    fn flush_clicks(&mut self) {
        self.last_flush = Instant::now();
        let batch = {
            let clicks = self.clicks.borrow();
            if clicks.is_empty() {
                return;
            }
            clicks.snapshot()
        };
        match self.db.add_clicks(links::day_of(dates::now()), &batch) {
            Ok(()) => self.clicks.borrow_mut().commit(&batch),
            Err(e) => eprintln!("nib: writing {} link click counts: {e}", batch.len()),
        }
    }

    pub fn site_view(&self) -> Site<'_> {
        Site {
            title: &self.cfg.title,
            description: &self.cfg.description,
            author: &self.cfg.author,
            base: self.cfg.base(),
            nav: &self.cfg.nav,
            footer: &self.cfg.footer,
            image: self.cfg.image.as_deref(),
        }
    }

    /// Whether the page at `url` (its path, as the request gave it) is in the page cache
    /// under its current ETag: then routing it needs no query.
    pub(crate) fn kept(&self, url: &str) -> bool {
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        // Only pages end in a slash; a short link's redirect does not pay for the lookup.
        path.ends_with('/') && self.pages.borrow().contains(path, &self.page_etag(path))
    }

    /// A strong validator for a page that depends on the whole site: the route, the site's
    /// content version, the settings and the binary.
    pub(crate) fn page_etag(&self, path: &str) -> String {
        let mut h = Fnv::new();
        h.write(path.as_bytes());
        h.write(&self.site.counter.to_le_bytes());
        h.write(&self.config_fingerprint.to_le_bytes());
        strong_etag(h.finish())
    }
}

/// Opens (creating when needed) and migrates the configured database.
pub(crate) fn open_db(cfg: &Config) -> Result<Db, StartupError> {
    if let Some(parent) = cfg.db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StartupError::db(format!("creating {}", parent.display()), e))?;
    }
    Db::open(&cfg.db_path)
        .map_err(|e| StartupError::db(format!("opening {}", cfg.db_path.display()), e))
}

/// Opens the database and brings the post index up to date.
pub(crate) fn open_site(cfg: &Config) -> Result<(Db, Index, crate::posts::Refresh), StartupError> {
    let db = open_db(cfg)?;
    if let Err(e) = crate::posts::follow_timezone(&db, &cfg.timezone.key()) {
        eprintln!("nib: re-reading the posts in the new timezone: {e}");
    }
    let mut index = Index::new();
    index.max_post_bytes = cfg.max_post_kb * 1024;
    index.shortcodes = site_shortcodes(cfg);
    let r = index.refresh(&db, &cfg.posts_dir);
    // Posts whose time came while nib was not running (their files unchanged) are shown,
    // and expired ones hidden, before anything is served or exported.
    if let Err(e) = db.apply_schedule(crate::dates::now()) {
        eprintln!("nib: showing or hiding scheduled posts: {e}");
    }
    Ok((db, index, r))
}

/// The site's shortcode templates: `shortcodes/` beside `posts/`, read at start; the
/// index reads them again when their folder changes.
pub(crate) fn site_shortcodes(cfg: &Config) -> crate::shortcodes::Templates {
    let site = cfg
        .posts_dir
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."));
    crate::shortcodes::Templates::load(site)
}
