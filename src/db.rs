//! The SQLite store and the only module with SQL in it. It owns the schema (versioned with
//! `PRAGMA user_version`, migrated forward at open), the connection settings, and one
//! function per question the rest of nib asks. Listing queries always carry a LIMIT so
//! memory never grows with the number of posts or links.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

/// Each entry migrates the schema from version `i` to `i + 1`. Never edit a released entry:
/// add a new one, so every existing database walks the same path.
const MIGRATIONS: &[&str] = &[
    // 1: the blog index. A row per file in posts/, broken ones included (with `error` set),
    // so an unchanged broken file is not parsed again on every scan. The rendered HTML lives
    // in its own table: kept inline it made every posts row a page or more, and counting
    // 10,000 posts read 40 MB of pages (14 ms) instead of a few hundred KB. Summaries stay
    // in the row, so listing pages never touch the bodies.
    "CREATE TABLE posts (
        id          INTEGER PRIMARY KEY,
        path        TEXT NOT NULL UNIQUE,
        mtime       INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        error       TEXT,
        slug        TEXT,
        title       TEXT,
        date        INTEGER,
        updated     INTEGER,
        draft       INTEGER NOT NULL DEFAULT 0,
        description TEXT,
        tags        TEXT,
        summary     TEXT,
        hash        INTEGER,
        changed_at  INTEGER
    );
    CREATE INDEX posts_public ON posts(date DESC, slug) WHERE error IS NULL AND draft = 0;
    CREATE INDEX posts_slug ON posts(slug) WHERE error IS NULL;
    CREATE TABLE post_bodies (
        post_id INTEGER PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
        html    TEXT NOT NULL
    );
    -- Tags of public posts only, with the post's date and slug copied in, so a tag page is
    -- one ordered index range instead of a join and a sort over every post of the tag.
    CREATE TABLE post_tags (
        tag     TEXT NOT NULL,
        name    TEXT NOT NULL,
        date    INTEGER NOT NULL,
        slug    TEXT NOT NULL,
        post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        PRIMARY KEY (tag, post_id)
    ) WITHOUT ROWID;
    CREATE INDEX post_tags_order ON post_tags(tag, date DESC, slug);
    CREATE INDEX post_tags_post ON post_tags(post_id);
    -- Rebuilt whenever the site changes: the tag list page read 30,000 rows otherwise.
    CREATE TABLE tag_counts (tag TEXT PRIMARY KEY, name TEXT NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;",
    // 2: short links. Clicks are a running total on the link plus one row per link and day
    // (for the 30-day sparkline): no per-click rows and no addresses, so the table grows
    // with links, not with traffic. `custom` marks owner-chosen slugs. The secrets (admin
    // token hash, cookie secret, code key) live in `meta`.
    "CREATE TABLE links (
        id         INTEGER PRIMARY KEY,
        code       TEXT NOT NULL UNIQUE,
        url        TEXT NOT NULL,
        title      TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        clicks     INTEGER NOT NULL DEFAULT 0,
        custom     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX links_url ON links(url);
    CREATE TABLE link_days (
        link_id INTEGER NOT NULL REFERENCES links(id) ON DELETE CASCADE,
        day     INTEGER NOT NULL,
        count   INTEGER NOT NULL,
        PRIMARY KEY (link_id, day)
    ) WITHOUT ROWID;",
    // 3: owner access that must outlive a restart. Failed logins per client address (at
    // most `auth::THROTTLE_ROWS` rows, expired ones deleted), so restarting nib no longer
    // forgives an attacker; and the browser logins (at most `auth::MAX_LOGINS` rows, one
    // per login of the owner, never one per visitor), so logging out ends that cookie.
    "CREATE TABLE login_failures (
        client   TEXT PRIMARY KEY,
        since    INTEGER NOT NULL,
        failures INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX login_failures_since ON login_failures(since);
    CREATE TABLE logins (
        nonce      TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX logins_created ON logins(created_at);",
    // 4: a note on a published post that `nib check` shows: a post whose slug another,
    // earlier post has is published under a dated slug, and the note names the other file.
    // A table of its own rather than a column: a row only for such posts, and no
    // `ALTER TABLE`, whose code a fresh database would page in at every cold start.
    "CREATE TABLE post_notes (path TEXT PRIMARY KEY, note TEXT NOT NULL) WITHOUT ROWID;",
];

/// The columns [`Db::row_to_post`] reads, in its order: a macro, so the queries below
/// are `&'static str` built at compile time (no SQL is formatted per request) and the
/// plan test can name them.
macro_rules! post_columns {
    () => {
        "posts.slug, title, posts.date, updated, posts.summary, tags, description, hash, changed_at"
    };
}

// The queries behind every page view and redirect; `hot_queries_use_indexes` checks
// their plans.
const POST_BY_SLUG: &str = concat!(
    "SELECT ",
    post_columns!(),
    ", post_bodies.html FROM posts JOIN post_bodies ON post_bodies.post_id = posts.id
     WHERE slug = ?1 AND error IS NULL AND draft = 0"
);
const OLDER_POST: &str = "SELECT slug, title FROM posts WHERE error IS NULL AND draft = 0
   AND (date < ?1 OR (date = ?1 AND slug > ?2)) ORDER BY date DESC, slug LIMIT 1";
const NEWER_POST: &str = "SELECT slug, title FROM posts WHERE error IS NULL AND draft = 0
   AND (date > ?1 OR (date = ?1 AND slug < ?2)) ORDER BY date, slug DESC LIMIT 1";
const INDEX_PAGE: &str = concat!(
    "SELECT ",
    post_columns!(),
    " FROM posts WHERE error IS NULL AND draft = 0
     ORDER BY date DESC, slug LIMIT ?1 OFFSET ?2"
);
const TAG_PAGE: &str = concat!(
    "SELECT ",
    post_columns!(),
    " FROM post_tags JOIN posts ON posts.id = post_tags.post_id
     WHERE post_tags.tag = ?3
     ORDER BY post_tags.date DESC, post_tags.slug LIMIT ?1 OFFSET ?2"
);
const PUBLIC_POST_PATH: &str =
    "SELECT path FROM posts WHERE slug = ?1 AND error IS NULL AND draft = 0";
const LINK_TARGET: &str = "SELECT id, url FROM links WHERE code = ?1";

pub(crate) struct Db {
    conn: Connection,
}

/// What the index knows about one file, to decide whether it must be parsed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub mtime: i64,
    pub size: i64,
}

/// Why the database cannot be used, beyond a failed SQLite call.
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
    /// The file's schema is newer than this nib knows: a newer nib wrote it.
    TooNew {
        version: i64,
        known: usize,
    },
    /// A file offered for a restore that is damaged or not a nib database.
    NotABackup(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            DbError::Io(e) => write!(f, "{e}"),
            DbError::TooNew { version, known } => write!(
                f,
                "database schema version {version} is newer than this nib ({known}); upgrade nib"
            ),
            DbError::NotABackup(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Sqlite(e) => Some(e),
            DbError::Io(e) => Some(e),
            DbError::TooNew { .. } | DbError::NotABackup(_) => None,
        }
    }
}

impl From<DbError> for crate::error::StartupError {
    fn from(e: DbError) -> Self {
        crate::error::StartupError::db("opening", e)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<std::io::Error> for DbError {
    fn from(e: std::io::Error) -> Self {
        DbError::Io(e)
    }
}

/// A post ready to store: everything a page needs, rendered once when the file changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Post {
    pub slug: String,
    pub title: String,
    pub date: i64,
    pub updated: Option<i64>,
    pub tags: Vec<String>,
    pub draft: bool,
    pub description: Option<String>,
    pub summary: String,
    pub html: String,
    /// A hash of everything above, so an unchanged re-save does not move feed dates.
    pub hash: u64,
}

/// What became of one file of `posts/` (see [`Db::post_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostStatus {
    pub error: Option<String>,
    pub draft: bool,
    pub note: Option<String>,
    pub slug: Option<String>,
}

/// A public post's place in the newest-first order, and when it last changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PostKey {
    pub date: i64,
    pub slug: String,
    pub updated: Option<i64>,
}

/// When the public site last changed, and a counter that moves with every change: the
/// basis of list pages' `Last-Modified` and of every page's `ETag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SiteVersion {
    pub changed_at: i64,
    pub counter: i64,
}

/// A post as listed on index, tag and feed pages.
#[derive(Debug, Clone)]
pub(crate) struct PostRow {
    pub slug: String,
    pub title: String,
    pub date: i64,
    pub updated: Option<i64>,
    pub summary: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub html: String,
}

/// A short link as stored. `clicks` is what the database holds; pending in-memory clicks
/// are added by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkRow {
    pub id: i64,
    pub code: String,
    pub url: String,
    pub title: String,
    pub created_at: i64,
    pub clicks: i64,
}

/// What happened when a link was asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    New(LinkRow),
    Existing(LinkRow),
    /// The requested slug belongs to another link.
    SlugTaken,
}

const TAG_SEP: char = '\u{1f}';

impl Db {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    fn setup(conn: Connection) -> Result<Db, DbError> {
        // Another process (`nib shorten`, `nib backup`, a restarting image) may hold the
        // write lock briefly; waiting a few seconds beats failing the request.
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets readers (a backup, the CLI) run beside the server's writes, and with
        // synchronous=NORMAL a commit is one fsync-free append: a power cut can lose the
        // last transactions but never corrupts the file. Acknowledged short links are
        // written with FULL (see `set_durable`).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The page cache is the largest single user of memory in the process: SQLite's
        // default (2 MB) measured ~1.9 MB RSS with no gain in throughput on this workload,
        // where each request reads a few rows by index. A post page touches 17 to 24 pages
        // (three b-trees, the body's overflow pages, two neighbour lookups): at 64 KiB (16
        // pages) they evicted each other and every view made ten `pread` calls; at 96 KiB
        // it makes one.
        conn.pragma_update(None, "cache_size", -96)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The query planner stability guarantee: a cached statement keeps its plan. Without
        // it SQLite marks a bound parameter that it compared with a partial index's WHERE
        // clause (`slug = ?1` against `draft = 0`) as "re-prepare when this value changes",
        // so the post page re-parsed and re-planned its query on every request: 15% of the
        // request loop's time, measured. nib's partial indexes name literals only, so
        // every plan stays the same.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    #[cfg(test)]
    pub fn memory() -> Db {
        Self::setup(Connection::open_in_memory().expect("in-memory db")).expect("migrate")
    }

    fn migrate(&mut self) -> Result<(), DbError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            return Err(DbError::TooNew {
                version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Copies the live database to `dest` with SQLite's online backup API: a consistent
    /// snapshot even while the server writes. The copy is made beside `dest` and renamed
    /// over it, so a cron job that is interrupted never leaves half a backup under the name.
    pub fn backup_to(&self, dest: &Path) -> Result<(), DbError> {
        let tmp = dest.with_extension("nib-partial");
        let _ = std::fs::remove_file(&tmp);
        // Pages are copied 256 at a time with a pause between steps, so a large database
        // does not hold the server's writes off for long.
        {
            let mut target = Connection::open(&tmp)?;
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut target)?;
            backup.run_to_completion(256, Duration::from_millis(5), None)?;
        }
        Ok(std::fs::rename(&tmp, dest)?)
    }

    /// Replaces this database's content with the one in `src` (a file made by
    /// [`Db::backup_to`]), after checking it is intact and of a schema this nib knows.
    pub fn restore_from(&mut self, src: &Path) -> Result<(), DbError> {
        {
            let check =
                Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let ok: String = check.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if ok != "ok" {
                return Err(DbError::NotABackup(format!("integrity check: {ok}")));
            }
            let version: i64 = check.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version == 0 || version as usize > MIGRATIONS.len() {
                return Err(DbError::NotABackup(format!(
                    "not a nib database of a known version ({version})"
                )));
            }
        }
        self.conn.restore(
            rusqlite::MAIN_DB,
            src,
            None::<fn(rusqlite::backup::Progress)>,
        )?;
        self.migrate()
    }

    /// Sets the page cache size. The server keeps SQLite's cache small (see `setup`);
    /// `nib build`, which reads every post, uses a larger one for its short life: with the
    /// server's 64 KiB, exporting 10,000 posts re-read 5 million pages from the OS.
    pub fn set_cache_kib(&self, kib: i64) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "cache_size", -kib)
    }

    /// `SELECT 1`, for `/healthz`.
    pub fn ping(&self) -> rusqlite::Result<()> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))
    }

    /// A read transaction: every query until [`Db::commit`] sees one snapshot, and SQLite
    /// takes its locks once instead of per statement.
    pub fn begin_read(&self) -> rusqlite::Result<()> {
        // Cached like any query: `execute_batch` would parse the statement every time, and
        // this one and `commit` run for every page view.
        self.conn
            .prepare_cached("BEGIN DEFERRED")?
            .execute([])
            .map(drop)
    }

    /// Runs `f` in one write transaction: committed when it succeeds, rolled back (and its
    /// error returned) when it fails.
    pub fn write_transaction<T>(
        &self,
        f: impl FnOnce() -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.begin()?;
        match f() {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn begin(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")
    }

    pub fn commit(&self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([]).map(drop)
    }

    fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    pub fn meta_get(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    pub fn meta_set(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
            .execute([key, value])?;
        Ok(())
    }

    // ---- posts index ----

    pub fn post_stamp(&self, path: &str) -> rusqlite::Result<Option<FileStamp>> {
        self.conn
            .prepare_cached("SELECT mtime, size FROM posts WHERE path = ?1")?
            .query_row([path], |r| {
                Ok(FileStamp {
                    mtime: r.get(0)?,
                    size: r.get(1)?,
                })
            })
            .optional()
    }

    /// The file that already uses `slug` for a public post, other than `path`, and that
    /// post's date. Drafts own no slug: a draft can never take a published post's URL away.
    pub fn slug_owner(&self, slug: &str, path: &str) -> rusqlite::Result<Option<(String, i64)>> {
        self.conn
            .prepare_cached(
                "SELECT path, date FROM posts WHERE slug = ?1 AND error IS NULL AND draft = 0 AND path <> ?2",
            )?
            .query_row([slug, path], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Sets (or clears) the note `nib check` shows for a file (see migration 4).
    pub fn set_post_note(&self, path: &str, note: Option<&str>) -> rusqlite::Result<()> {
        match note {
            Some(note) => self
                .conn
                .prepare_cached("INSERT OR REPLACE INTO post_notes(path, note) VALUES (?1, ?2)")?
                .execute([path, note])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM post_notes WHERE path = ?1")?
                .execute([path])?,
        };
        Ok(())
    }

    /// What became of a file: its problem, whether it is a draft, and its note; `None`
    /// when it is not indexed.
    pub fn post_status(&self, path: &str) -> rusqlite::Result<Option<PostStatus>> {
        self.conn
            .prepare_cached("SELECT error, draft, slug FROM posts WHERE path = ?1")?
            .query_row([path], |r| {
                Ok(PostStatus {
                    error: r.get(0)?,
                    draft: r.get(1)?,
                    note: None,
                    slug: r.get(2)?,
                })
            })
            .optional()?
            .map(|mut status| {
                status.note = self
                    .conn
                    .prepare_cached("SELECT note FROM post_notes WHERE path = ?1")?
                    .query_row([path], |r| r.get(0))
                    .optional()?;
                Ok(status)
            })
            .transpose()
    }

    /// The file of the public post at `slug`, for serving its bundle's files.
    pub fn public_post_path(&self, slug: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .prepare_cached(PUBLIC_POST_PATH)?
            .query_row([slug], |r| r.get(0))
            .optional()
    }

    /// Stores a parsed post. Returns whether anything a reader sees changed (the rendered
    /// content hash, draft state or date), so the site's change time only moves then.
    ///
    /// Takes the post, so its summary and HTML are dropped as soon as SQLite holds its own
    /// copy, before the row is built from that copy: with the post's copy alive too, a
    /// large post was held three times over at that moment.
    pub fn upsert_post(
        &self,
        path: &str,
        stamp: FileStamp,
        mut post: Post,
        now: i64,
    ) -> rusqlite::Result<bool> {
        let old: Option<(i64, Option<i64>, Option<String>, i64)> = self
            .conn
            .prepare_cached("SELECT id, hash, error, changed_at FROM posts WHERE path = ?1")?
            .query_row([path], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                ))
            })
            .optional()?;
        let hash = post.hash as i64;
        let unchanged = matches!(&old, Some((_, Some(h), None, _)) if *h == hash);
        let changed_at = match &old {
            Some((_, _, _, at)) if unchanged => *at,
            _ => now,
        };
        let tags = post.tags.join(&TAG_SEP.to_string());
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO posts(path, mtime, size, error, slug, title, date, updated, draft,
                               description, tags, summary, hash, changed_at)
             VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT(path) DO UPDATE SET
               mtime = excluded.mtime, size = excluded.size, error = NULL,
               slug = excluded.slug, title = excluded.title, date = excluded.date,
               updated = excluded.updated, draft = excluded.draft,
               description = excluded.description, tags = excluded.tags,
               summary = excluded.summary, hash = excluded.hash,
               changed_at = excluded.changed_at",
        )?;
        let values: [&dyn rusqlite::ToSql; 13] = [
            &path,
            &stamp.mtime,
            &stamp.size,
            &post.slug,
            &post.title,
            &post.date,
            &post.updated,
            &post.draft,
            &post.description,
            &tags,
            &post.summary,
            &hash,
            &changed_at,
        ];
        for (i, v) in values.into_iter().enumerate() {
            insert.raw_bind_parameter(i + 1, v)?;
        }
        post.summary = String::new();
        insert.raw_execute()?;
        drop(insert);
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM posts WHERE path = ?1")?
            .query_row([path], |r| r.get(0))?;
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR REPLACE INTO post_bodies(post_id, html) VALUES (?1, ?2)")?;
        insert.raw_bind_parameter(1, id)?;
        insert.raw_bind_parameter(2, &post.html)?;
        post.html = String::new();
        insert.raw_execute()?;
        drop(insert);
        self.conn
            .prepare_cached("DELETE FROM post_tags WHERE post_id = ?1")?
            .execute([id])?;
        // Drafts keep no tags: tags exist only for what the public sees.
        for name in post.tags.iter().filter(|_| !post.draft) {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO post_tags(tag, name, date, slug, post_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![crate::routes::slugify(name), name, post.date, post.slug, id])?;
        }
        Ok(!unchanged)
    }

    /// Records a file that could not be used, so it is not parsed again until it changes.
    /// Returns whether it was a valid post before (the site changed).
    pub fn mark_broken(&self, path: &str, stamp: FileStamp, error: &str) -> rusqlite::Result<bool> {
        let was_valid: bool = self
            .conn
            .prepare_cached("SELECT error IS NULL FROM posts WHERE path = ?1")?
            .query_row([path], |r| r.get(0))
            .optional()?
            .unwrap_or(false);
        self.conn
            .prepare_cached(
                "INSERT INTO posts(path, mtime, size, error) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(path) DO UPDATE SET mtime = excluded.mtime, size = excluded.size,
                   error = excluded.error, slug = NULL, hash = NULL",
            )?
            .execute(params![path, stamp.mtime, stamp.size, error])?;
        self.conn
            .prepare_cached(
                "DELETE FROM post_tags WHERE post_id = (SELECT id FROM posts WHERE path = ?1)",
            )?
            .execute([path])?;
        self.conn
            .prepare_cached(
                "DELETE FROM post_bodies WHERE post_id = (SELECT id FROM posts WHERE path = ?1)",
            )?
            .execute([path])?;
        Ok(was_valid)
    }

    /// Makes every indexed file look changed, so the next scan parses and renders it again.
    pub fn forget_post_stamps(&self) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE posts SET mtime = -1", [])
            .map(|_| ())
    }

    pub fn count_broken(&self) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT count(*) FROM posts WHERE error IS NOT NULL")?
            .query_row([], |r| r.get(0))
    }

    /// Calls `f` with every indexed file name, a page at a time so memory stays flat.
    pub fn each_post_path(&self, mut f: impl FnMut(&str)) -> rusqlite::Result<()> {
        let mut after = String::new();
        loop {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT path FROM posts WHERE path > ?1 ORDER BY path LIMIT 500")?;
            let page: Vec<String> = stmt
                .query_map([&after], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for p in &page {
                f(p);
            }
            match page.into_iter().last() {
                Some(last) => after = last,
                None => return Ok(()),
            }
        }
    }

    pub fn delete_post(&self, path: &str) -> rusqlite::Result<bool> {
        self.set_post_note(path, None)?;
        let n = self
            .conn
            .prepare_cached("DELETE FROM posts WHERE path = ?1")?
            .execute([path])?;
        Ok(n > 0)
    }

    /// Files whose slug depends on another file's: rejected because another had their slug,
    /// or published under a dated slug (with a note). Indexed again after changes, so a
    /// post whose rival went away takes its own slug back.
    pub fn contested_paths(&self) -> rusqlite::Result<Vec<String>> {
        let mut paths: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT path FROM posts WHERE error LIKE 'duplicate slug%' ORDER BY path LIMIT 1000",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut noted = self
            .conn
            .prepare_cached("SELECT path FROM post_notes ORDER BY path LIMIT 1000")?;
        for p in noted.query_map([], |r| r.get(0))? {
            paths.push(p?);
        }
        paths.sort();
        Ok(paths)
    }

    /// Every broken file with its problem.
    #[cfg(test)]
    pub fn broken_posts(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, error FROM posts WHERE error IS NOT NULL ORDER BY path LIMIT 10000",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// How many posts are public; kept in `meta` by [`Db::bump_site_version`].
    pub fn count_public(&self) -> rusqlite::Result<i64> {
        Ok(self
            .meta_get("public_count")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The newest date (published or updated) of any public post, 0 when there is none:
    /// the `lastmod` of listing pages, stable from run to run.
    pub fn newest_post(&self) -> rusqlite::Result<i64> {
        Ok(self
            .meta_get("newest_post")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn row_to_post(r: &rusqlite::Row<'_>, with_html: bool) -> rusqlite::Result<PostRow> {
        let tags: Option<String> = r.get(5)?;
        Ok(PostRow {
            slug: r.get(0)?,
            title: r.get(1)?,
            date: r.get(2)?,
            updated: r.get(3)?,
            summary: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            tags: tags
                .filter(|t| !t.is_empty())
                .map(|t| t.split(TAG_SEP).map(str::to_string).collect())
                .unwrap_or_default(),
            description: r.get(6)?,
            html: if with_html {
                r.get::<_, Option<String>>(9)?.unwrap_or_default()
            } else {
                String::new()
            },
        })
    }

    /// One public post by slug, with its HTML.
    pub fn post_by_slug(&self, slug: &str) -> rusqlite::Result<Option<PostRow>> {
        self.conn
            .prepare_cached(POST_BY_SLUG)?
            .query_row([slug], |r| Self::row_to_post(r, true))
            .optional()
    }

    /// The neighbours of a post in date order: (older, newer), as (slug, title).
    #[allow(clippy::type_complexity)] // Two optional pairs read more plainly than an alias.
    pub fn neighbours(
        &self,
        date: i64,
        slug: &str,
    ) -> rusqlite::Result<(Option<(String, String)>, Option<(String, String)>)> {
        let older = self
            .conn
            .prepare_cached(OLDER_POST)?
            .query_row(params![date, slug], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let newer = self
            .conn
            .prepare_cached(NEWER_POST)?
            .query_row(params![date, slug], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok((older, newer))
    }

    /// A page of public posts, newest first, optionally of one tag, without their bodies
    /// (listing pages show summaries only).
    pub fn list_posts(
        &self,
        tag: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> rusqlite::Result<Vec<PostRow>> {
        let sql = if tag.is_some() { TAG_PAGE } else { INDEX_PAGE };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let map = |r: &rusqlite::Row<'_>| Self::row_to_post(r, false);
        match tag {
            None => stmt
                .query_map(params![limit, offset as i64], map)?
                .collect(),
            Some(t) => stmt
                .query_map(params![limit, offset as i64, t], map)?
                .collect(),
        }
    }

    /// Public posts with this tag: (display name, count), or `None` for an unknown tag.
    pub fn tag(&self, tag: &str) -> rusqlite::Result<Option<(String, i64)>> {
        self.conn
            .prepare_cached("SELECT name, count FROM tag_counts WHERE tag = ?1")?
            .query_row([tag], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Every tag used by a public post: (slug, display name, count), by slug.
    pub fn tags(&self) -> rusqlite::Result<Vec<(String, String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tag, name, count FROM tag_counts ORDER BY tag LIMIT 10000")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    }

    /// A page of public posts' keys after the keyset cursor `after` (the last key of the
    /// previous page), newest first: the sitemap, the feeds and the export walk the posts
    /// with it.
    pub fn post_slugs_after(
        &self,
        after: Option<&PostKey>,
        limit: u32,
    ) -> rusqlite::Result<Vec<PostKey>> {
        let (date, slug) = after
            .map(|k| (k.date, k.slug.as_str()))
            .unwrap_or((i64::MAX, ""));
        let mut stmt = self.conn.prepare_cached(
            "SELECT date, slug, updated FROM posts WHERE error IS NULL AND draft = 0
               AND (date < ?1 OR (date = ?1 AND slug > ?2)) ORDER BY date DESC, slug LIMIT ?3",
        )?;
        stmt.query_map(params![date, slug, limit], |r| {
            Ok(PostKey {
                date: r.get(0)?,
                slug: r.get(1)?,
                updated: r.get(2)?,
            })
        })?
        .collect()
    }

    /// When any public page last changed, and a version number that moves with it: the
    /// basis of list pages' `Last-Modified` and `ETag`.
    pub fn site_version(&self) -> rusqlite::Result<SiteVersion> {
        let at = self
            .meta_get("site_changed_at")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let v = self
            .meta_get("site_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(SiteVersion {
            changed_at: at,
            counter: v,
        })
    }

    // ---- short links ----

    const LINK_COLUMNS: &'static str = "id, code, url, title, created_at, clicks";

    fn row_to_link(r: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRow> {
        Ok(LinkRow {
            id: r.get(0)?,
            code: r.get(1)?,
            url: r.get(2)?,
            title: r.get(3)?,
            created_at: r.get(4)?,
            clicks: r.get(5)?,
        })
    }

    /// The redirect's one query: (id, target) by code, through the unique index.
    pub fn link_target(&self, code: &str) -> rusqlite::Result<Option<(i64, String)>> {
        self.conn
            .prepare_cached(LINK_TARGET)?
            .query_row([code], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    pub fn link_by_code(&self, code: &str) -> rusqlite::Result<Option<LinkRow>> {
        let sql = format!("SELECT {} FROM links WHERE code = ?1", Self::LINK_COLUMNS);
        self.conn
            .prepare_cached(&sql)?
            .query_row([code], Self::row_to_link)
            .optional()
    }

    /// The oldest link to exactly this (normalised) target.
    pub fn link_by_url(&self, url: &str) -> rusqlite::Result<Option<LinkRow>> {
        let sql = format!(
            "SELECT {} FROM links WHERE url = ?1 ORDER BY id LIMIT 1",
            Self::LINK_COLUMNS
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row([url], Self::row_to_link)
            .optional()
    }

    /// Creates a link, or returns the existing one for the same target when no slug is
    /// asked for. `code_for(n)` gives the generated code for the n-th generated link; codes
    /// that are taken (by a custom slug) or refused by `usable` are skipped. Runs as one
    /// transaction committed with `synchronous = FULL`, so a link that was answered with
    /// 201 survives a power cut.
    pub fn create_link(
        &self,
        url: &str,
        slug: Option<&str>,
        title: &str,
        now: i64,
        code_for: &dyn Fn(u64) -> String,
        usable: &dyn Fn(&str) -> bool,
    ) -> rusqlite::Result<Created> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = self.write_transaction(|| {
            let code = match slug {
                Some(s) => {
                    if let Some(existing) = self.link_by_code(s)? {
                        // Asking again for the same slug and target is a repeat, not a clash.
                        return Ok(if existing.url == url {
                            Created::Existing(existing)
                        } else {
                            Created::SlugTaken
                        });
                    }
                    s.to_string()
                }
                None => {
                    if let Some(existing) = self.link_by_url(url)? {
                        return Ok(Created::Existing(existing));
                    }
                    let mut seq: u64 = self
                        .meta_get("code_seq")?
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let code = loop {
                        let c = code_for(seq);
                        seq += 1;
                        if usable(&c) && self.link_target(&c)?.is_none() {
                            break c;
                        }
                    };
                    self.meta_set("code_seq", &seq.to_string())?;
                    code
                }
            };
            self.conn
                .prepare_cached(
                    "INSERT INTO links(code, url, title, created_at, custom) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![code, url, title, now, slug.is_some()])?;
            Ok(Created::New(LinkRow {
                id: self.conn.last_insert_rowid(),
                code,
                url: url.to_string(),
                title: title.to_string(),
                created_at: now,
                clicks: 0,
            }))
        });
        let restore = self.conn.pragma_update(None, "synchronous", "NORMAL");
        let created = result?;
        restore?;
        Ok(created)
    }

    /// Deletes a link and its daily counts; the id it had, if it existed.
    pub fn delete_link(&self, code: &str) -> rusqlite::Result<Option<i64>> {
        let id: Option<i64> = self
            .conn
            .prepare_cached("DELETE FROM links WHERE code = ?1 RETURNING id")?
            .query_row([code], |r| r.get(0))
            .optional()?;
        Ok(id)
    }

    /// A page of links, newest first.
    pub fn list_links(&self, limit: u32, offset: u64) -> rusqlite::Result<Vec<LinkRow>> {
        let sql = format!(
            "SELECT {} FROM links ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            Self::LINK_COLUMNS
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        stmt.query_map(params![limit, offset as i64], Self::row_to_link)?
            .collect()
    }

    /// A page of links older than `before` (a keyset cursor on the id, so page 2,000 costs
    /// what page 1 does), optionally only those whose code, target or title contains
    /// `search` (matched literally: `%`, `_` and `\` are escaped).
    pub fn search_links(
        &self,
        search: &str,
        before: Option<i64>,
        limit: u32,
    ) -> rusqlite::Result<Vec<LinkRow>> {
        let before = before.unwrap_or(i64::MAX);
        let mut stmt;
        let rows = if search.is_empty() {
            let sql = format!(
                "SELECT {} FROM links WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                Self::LINK_COLUMNS
            );
            stmt = self.conn.prepare_cached(&sql)?;
            stmt.query_map(params![before, limit], Self::row_to_link)?
        } else {
            let mut pattern = String::from("%");
            for c in search.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            let sql = format!(
                "SELECT {} FROM links WHERE id < ?1 AND (code LIKE ?3 ESCAPE '\\'
                   OR url LIKE ?3 ESCAPE '\\' OR title LIKE ?3 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?2",
                Self::LINK_COLUMNS
            );
            stmt = self.conn.prepare_cached(&sql)?;
            stmt.query_map(params![before, limit, pattern], Self::row_to_link)?
        };
        rows.collect()
    }

    pub fn count_links(&self) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT count(*) FROM links")?
            .query_row([], |r| r.get(0))
    }

    /// Daily counts of one link from `since_day` on: (day number, clicks).
    pub fn link_days(&self, id: i64, since_day: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT day, count FROM link_days WHERE link_id = ?1 AND day >= ?2 ORDER BY day LIMIT 400",
        )?;
        stmt.query_map(params![id, since_day], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Adds batched clicks, all in one transaction: the running totals and today's row of
    /// each link. Links deleted meanwhile are skipped.
    pub fn add_clicks(&self, day: i64, counts: &[(i64, u64)]) -> rusqlite::Result<()> {
        self.write_transaction(|| {
            for (id, n) in counts {
                let n = *n as i64;
                let changed = self
                    .conn
                    .prepare_cached("UPDATE links SET clicks = clicks + ?2 WHERE id = ?1")?
                    .execute(params![id, n])?;
                if changed == 0 {
                    continue;
                }
                self.conn
                    .prepare_cached(
                        "INSERT INTO link_days(link_id, day, count) VALUES (?1, ?2, ?3)
                         ON CONFLICT(link_id, day) DO UPDATE SET count = count + excluded.count",
                    )?
                    .execute(params![id, day, n])?;
            }
            Ok(())
        })
    }

    /// Records that the public site changed: moves the version and recomputes what list
    /// pages would otherwise aggregate per request (post count, tag counts, newest date).
    pub fn bump_site_version(&self, now: i64) -> rusqlite::Result<()> {
        let v = self.site_version()?.counter;
        self.meta_set("site_changed_at", &now.to_string())?;
        self.meta_set("site_version", &(v + 1).to_string())?;
        let (count, newest): (i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), max(max(date, coalesce(updated, date)))
             FROM posts INDEXED BY posts_public WHERE error IS NULL AND draft = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.meta_set("public_count", &count.to_string())?;
        self.meta_set("newest_post", &newest.unwrap_or(0).to_string())?;
        self.conn.execute_batch(
            "DELETE FROM tag_counts;
             INSERT INTO tag_counts(tag, name, count)
               SELECT tag, min(name), count(*) FROM post_tags GROUP BY tag;",
        )
    }
}

/// Owner access: the login throttle and the browser logins (see migration 3). Each table
/// is bounded by the caller's limit, so neither grows with the number of visitors.
impl Db {
    /// The failures counted against `client` in a window that began after `window_start`.
    pub fn login_failures(&self, client: &str, window_start: i64) -> rusqlite::Result<u32> {
        self.conn
            .prepare_cached("SELECT failures FROM login_failures WHERE client = ?1 AND since > ?2")?
            .query_row(params![client, window_start], |r| r.get(0))
            .optional()
            .map(Option::unwrap_or_default)
    }

    /// Counts one failure against `client`: windows that began at or before
    /// `window_start` are forgotten first, and beyond `max_rows` clients the ones whose
    /// window began first go.
    pub fn record_login_failure(
        &self,
        client: &str,
        now: i64,
        window_start: i64,
        max_rows: u32,
    ) -> rusqlite::Result<()> {
        // An API GET runs in a read transaction (see `http::handle`), and a wrong token on
        // one must be counted too: that transaction ends here (it has read no more than
        // the token's hash) and a new one begins after the write, for the caller to end.
        let in_read = !self.conn.is_autocommit();
        if in_read {
            self.commit()?;
        }
        let written = self.write_transaction(|| {
            self.conn
                .prepare_cached("DELETE FROM login_failures WHERE since <= ?1")?
                .execute([window_start])?;
            self.conn
                .prepare_cached(
                    "INSERT INTO login_failures(client, since, failures) VALUES (?1, ?2, 1)
                     ON CONFLICT(client) DO UPDATE SET failures = failures + 1",
                )?
                .execute(params![client, now])?;
            self.conn
                .prepare_cached(
                    "DELETE FROM login_failures WHERE client IN (SELECT client FROM
                     login_failures ORDER BY since DESC LIMIT -1 OFFSET ?1)",
                )?
                .execute([max_rows])?;
            Ok(())
        });
        if in_read {
            self.begin_read()?;
        }
        written
    }

    pub fn clear_login_failures(&self, client: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM login_failures WHERE client = ?1")?
            .execute([client])
            .map(drop)
    }

    /// Remembers a browser login until `expires`; expired logins are forgotten, and beyond
    /// `max` the oldest login ends.
    pub fn add_login(&self, nonce: &str, now: i64, expires: i64, max: u32) -> rusqlite::Result<()> {
        self.write_transaction(|| {
            self.conn
                .prepare_cached("DELETE FROM logins WHERE expires <= ?1")?
                .execute([now])?;
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO logins(nonce, created_at, expires) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![nonce, now, expires])?;
            self.conn
                .prepare_cached(
                    "DELETE FROM logins WHERE nonce IN (SELECT nonce FROM logins
                     ORDER BY created_at DESC LIMIT -1 OFFSET ?1)",
                )?
                .execute([max])?;
            Ok(())
        })
    }

    /// Whether the login with this nonce is current (made, not ended, not expired).
    pub fn login_current(&self, nonce: &str, now: i64) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM logins WHERE nonce = ?1 AND expires > ?2")?
            .exists(params![nonce, now])
    }

    pub fn end_login(&self, nonce: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM logins WHERE nonce = ?1")?
            .execute([nonce])
            .map(drop)
    }

    pub fn end_all_logins(&self) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM logins")?
            .execute([])
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planner stability guarantee (see `setup`) must not cost an index: each query a
    /// page view or redirect runs reads through an index (a page walks one in order) and
    /// sorts nothing.
    #[test]
    fn hot_queries_use_indexes() {
        let db = Db::memory();
        let on: bool = db
            .conn
            .db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
            .unwrap();
        assert!(on, "QPSG is off");
        let queries = [
            ("post by slug", POST_BY_SLUG),
            ("bundle file", PUBLIC_POST_PATH),
            ("older post", OLDER_POST),
            ("newer post", NEWER_POST),
            ("index page", INDEX_PAGE),
            ("tag page", TAG_PAGE),
            ("link target", LINK_TARGET),
        ];
        for (name, sql) in queries {
            let mut stmt = db
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(!plan.is_empty(), "{name}: no plan");
            for step in &plan {
                let full_scan = step.starts_with("SCAN") && !step.contains(" USING ");
                let sort = step.contains("TEMP B-TREE");
                assert!(!full_scan && !sort, "{name}: {plan:?}");
            }
        }
    }

    #[test]
    fn throttle_and_login_rows_stay_bounded() {
        let db = Db::memory();
        let now = 10_000;
        for _ in 0..3 {
            db.record_login_failure("a", now, now - 900, 5).unwrap();
        }
        assert_eq!(db.login_failures("a", now - 900).unwrap(), 3);
        assert_eq!(db.login_failures("b", now - 900).unwrap(), 0);
        // A window that is over counts nothing and is deleted by the next failure.
        assert_eq!(db.login_failures("a", now).unwrap(), 0);
        db.record_login_failure("a", now + 900, now, 5).unwrap();
        assert_eq!(db.login_failures("a", now).unwrap(), 1);
        for i in 0..20 {
            db.record_login_failure(&format!("c{i}"), now + 901 + i, now, 5)
                .unwrap();
        }
        let rows: i64 = db
            .conn
            .query_row("SELECT count(*) FROM login_failures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 5);
        assert_eq!(db.login_failures("c19", now).unwrap(), 1);
        db.clear_login_failures("c19").unwrap();
        assert_eq!(db.login_failures("c19", now).unwrap(), 0);
        // Inside a GET's read transaction too, which is still open afterwards.
        db.begin_read().unwrap();
        db.record_login_failure("d", now + 950, now, 5).unwrap();
        assert!(!db.conn.is_autocommit());
        db.commit().unwrap();
        assert_eq!(db.login_failures("d", now).unwrap(), 1);

        for i in 0..10 {
            db.add_login(&format!("n{i}"), now + i, now + 100, 4)
                .unwrap();
        }
        assert!(!db.login_current("n5", now + 10).unwrap());
        assert!(db.login_current("n9", now + 10).unwrap());
        assert!(!db.login_current("n9", now + 100).unwrap());
        db.end_login("n9").unwrap();
        assert!(!db.login_current("n9", now + 10).unwrap());
        db.end_all_logins().unwrap();
        assert!(!db.login_current("n8", now + 10).unwrap());
    }
}
