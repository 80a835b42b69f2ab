//! The SQLite store and the only module with SQL in it. It owns the schema (versioned with
//! `PRAGMA user_version`, migrated forward at open), the connection settings, and one
//! function per question the rest of nib asks. Listing queries always carry a LIMIT so
//! memory never grows with the number of posts or links.

use std::path::Path;
use std::time::Duration;

use rusqlite::blob::ZeroBlob;
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
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
    // 4: migrated blogs. A post keeps the offset its date was written in (`date_offset`,
    // seconds east of UTC), so the day shown is the day written; `publish_at` and
    // `expire_at` are its schedule, and `draft` now says whether it is shown: 0 public,
    // 1 a draft, 2 waiting for `publish_at`, 3 past `expire_at` (see `Visibility`), so
    // every public query keeps its `draft = 0` and its partial indexes. `note` is a
    // warning for `nib check` about a post that is served (a date from the file's
    // modification time). Old URLs (`aliases`, `redirect_from`, Zola's `path`) are rows
    // of `post_aliases`, by their key (`oldurls::alias_key`). Every post is read again,
    // so the new columns are filled.
    "ALTER TABLE posts ADD COLUMN date_offset INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE posts ADD COLUMN publish_at INTEGER;
    ALTER TABLE posts ADD COLUMN expire_at INTEGER;
    ALTER TABLE posts ADD COLUMN note TEXT;
    CREATE INDEX posts_waiting ON posts(publish_at) WHERE error IS NULL AND draft = 2;
    CREATE INDEX posts_expiring ON posts(expire_at)
      WHERE error IS NULL AND draft = 0 AND expire_at IS NOT NULL;
    CREATE TABLE post_aliases (
        alias   TEXT NOT NULL,
        post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        PRIMARY KEY (alias, post_id)
    ) WITHOUT ROWID;
    CREATE INDEX post_aliases_post ON post_aliases(post_id);
    UPDATE posts SET mtime = -1;
    DELETE FROM meta WHERE key = 'posts_fingerprint';",
    // 5: the old codes of renamed links. A link whose slug is changed keeps its old code
    // here, so a printed or posted short URL still redirects; the old code stays taken
    // (no other link may have it) and goes with the link when it is deleted. Clicks and
    // daily counts are kept by the link's id, so a rename moves none of them.
    "CREATE TABLE link_aliases (
        code    TEXT PRIMARY KEY,
        link_id INTEGER NOT NULL REFERENCES links(id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX link_aliases_link ON link_aliases(link_id);",
    // 6: a post's card image (front matter `image`, `images`, `banner_image`, `cover.image`,
    // else its first image), as written: the page makes it absolute for `og:image`. Every
    // post is read again, so the column is filled.
    "ALTER TABLE posts ADD COLUMN image TEXT;
    UPDATE posts SET mtime = -1;
    DELETE FROM meta WHERE key = 'posts_fingerprint';",
    // 7: a note on a published post that `nib check` shows: a post whose slug another,
    // earlier post has is published under a dated slug, and the note names the other file.
    // A table of its own rather than a column: a row only for such posts, and no
    // `ALTER TABLE`, whose code a fresh database would page in at every cold start.
    "CREATE TABLE post_notes (path TEXT PRIMARY KEY, note TEXT NOT NULL) WITHOUT ROWID;",
    // 8: standalone pages (`pages/*.md`, served at `/SLUG/`), a cache of `pages/` like the
    // posts tables. A table of their own rather than rows of `posts`: no post query (lists,
    // feeds, tags, neighbours, old URLs, the schedule) can ever show one, a page's slug is
    // unique among pages only, and a file name of `pages/` cannot meet one of `posts/`.
    // `draft` is 0 for a served page, 1 for a draft; `error` says why a file is not served.
    // Of two served pages with one slug, the first by file name answers it.
    "CREATE TABLE pages (
        path        TEXT PRIMARY KEY,
        mtime       INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        error       TEXT,
        slug        TEXT,
        title       TEXT,
        description TEXT,
        image       TEXT,
        summary     TEXT,
        html        TEXT,
        draft       INTEGER NOT NULL DEFAULT 0,
        hash        INTEGER
    );
    CREATE INDEX pages_slug ON pages(slug, path) WHERE error IS NULL AND draft = 0;",
    // 9: the parts of a long page, written here as it is rendered, before its post's row
    // is written, then joined into `post_bodies` (see `Db::stage_page`). Empty between
    // two files.
    "CREATE TABLE staged_page (part INTEGER PRIMARY KEY, html BLOB NOT NULL);",
];

/// What the `draft` column of `posts` says (migration 4): whether a post is shown now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visibility {
    Public = 0,
    Draft = 1,
    /// Dated (or `publishDate`d) in the future.
    Waiting = 2,
    /// Past its `expiryDate`.
    Expired = 3,
}

impl Visibility {
    /// A post's visibility at `now`.
    pub(crate) fn of(draft: bool, publish_at: i64, expire_at: Option<i64>, now: i64) -> Self {
        if draft {
            Visibility::Draft
        } else if publish_at > now {
            Visibility::Waiting
        } else if expire_at.is_some_and(|e| e <= now) {
            Visibility::Expired
        } else {
            Visibility::Public
        }
    }
}

/// The columns [`Db::row_to_post`] reads, in its order: a macro, so the queries below
/// are `&'static str` built at compile time (no SQL is formatted per request) and the
/// plan test can name them.
macro_rules! post_columns {
    () => {
        "posts.slug, title, posts.date, updated, posts.summary, tags, description, hash, changed_at, date_offset, posts.image"
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
       AND posts.draft = 0
     ORDER BY post_tags.date DESC, post_tags.slug LIMIT ?1 OFFSET ?2"
);
const PUBLIC_POST_PATH: &str =
    "SELECT path FROM posts WHERE slug = ?1 AND error IS NULL AND draft = 0";
const LINK_TARGET: &str = "SELECT id, url FROM links WHERE code = ?1";
// Asked for paths every route answered 404 (old URLs of a migrated blog). Of two posts
// declaring one old URL, the first by file name has it (SQLite's `min` picks its row).
const ALIAS_TARGET: &str = "SELECT posts.slug, min(posts.path) FROM post_aliases
   JOIN posts ON posts.id = post_aliases.post_id
   WHERE alias = ?1 AND posts.error IS NULL AND posts.draft = 0";
const POST_DATE: &str =
    "SELECT date, date_offset FROM posts WHERE slug = ?1 AND error IS NULL AND draft = 0";
/// A standalone page at `/SLUG/`: the first file by name of those with the slug.
const PAGE_BY_SLUG: &str = "SELECT slug, title, description, image, summary, html FROM pages
   WHERE slug = ?1 AND error IS NULL AND draft = 0 ORDER BY path LIMIT 1";
/// Asked when no short link has a code: whether `/CODE` is a page's path without its slash.
const HAS_PAGE: &str = "SELECT 1 FROM pages WHERE slug = ?1 AND error IS NULL AND draft = 0";
/// The redirect's second query, run only when no link has the code: an old code of a
/// renamed link.
const LINK_ALIAS_TARGET: &str = "SELECT links.id, links.url FROM link_aliases
     JOIN links ON links.id = link_aliases.link_id WHERE link_aliases.code = ?1";

/// A post's stored page as text: long pages are blobs and short ones text (see
/// `Db::put_body`). Both were written from a `String`.
fn page_text(v: ValueRef<'_>) -> String {
    String::from_utf8_lossy(value_bytes(v)).into_owned()
}

/// The bytes of a text or blob value (none of any other).
fn value_bytes(v: ValueRef<'_>) -> &[u8] {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        _ => &[],
    }
}

pub(crate) struct Db {
    conn: Connection,
    /// Whether `post_notes` may hold a row: almost never, so clearing a file's note is
    /// skipped without a probe of the table (see [`Db::set_post_note`]).
    notes: std::sync::atomic::AtomicBool,
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
    /// The offset east of UTC, in seconds, `date` was written in.
    pub offset: i32,
    /// When the post is shown from: its date, or a later `publishDate`.
    pub publish_at: i64,
    /// When the post is hidden again (`expiryDate`).
    pub expire_at: Option<i64>,
    /// Its old URLs' keys (`oldurls::alias_key`), answered with a 301 to it.
    pub aliases: Vec<String>,
    /// A warning for `nib check` (the post is served all the same).
    pub note: Option<String>,
    pub description: Option<String>,
    /// The image for link previews (`og:image`), as written: an absolute URL, a path on
    /// the site, or a path relative to the post (a bundle's own picture).
    pub image: Option<String>,
    pub summary: String,
    /// The page; empty when it is `staged`.
    pub html: String,
    /// The length of a page handed to [`Db::stage_page`] as it was written.
    pub staged: Option<usize>,
    /// The page's hash, whether it is here or staged.
    pub page_hash: u64,
    /// A hash of everything above, so an unchanged re-save does not move feed dates.
    pub hash: u64,
}

/// What became of one file of `posts/` (see [`Db::post_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostStatus {
    pub error: Option<String>,
    /// Whether and why it is not shown: the `draft` column (see [`Visibility`]).
    pub hidden: Option<Visibility>,
    /// When a post waiting for its date appears.
    pub publish_at: Option<i64>,
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
    /// The offset `date` was written in: pages show the day written.
    pub offset: i32,
    pub updated: Option<i64>,
    pub summary: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
    /// The card image as written (see `Post::image`).
    pub image: Option<String>,
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

/// What happened when a link was edited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Updated {
    Done(LinkRow),
    NotFound,
    /// The new code belongs (or belonged) to another link.
    SlugTaken,
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
        let mut db = Db {
            conn,
            notes: true.into(),
        };
        db.migrate()?;
        let notes: bool =
            db.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM post_notes)", [], |r| r.get(0))?;
        db.notes.store(notes, std::sync::atomic::Ordering::Relaxed);
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
        // The restored file may hold notes.
        self.notes.store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// The file that already uses `slug` for a post, other than `path`, and that post's
    /// date. Drafts own no slug: a draft can never take a published post's URL away. A
    /// post waiting for its date (or past its expiry) owns its slug, so appearing never
    /// takes another's.
    pub fn slug_owner(&self, slug: &str, path: &str) -> rusqlite::Result<Option<(String, i64)>> {
        self.conn
            .prepare_cached(
                "SELECT path, date FROM posts WHERE slug = ?1 AND error IS NULL AND draft <> 1 AND path <> ?2",
            )?
            .query_row([slug, path], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Sets (or clears) the note `nib check` shows for a file (see migration 4).
    pub fn set_post_note(&self, path: &str, note: Option<&str>) -> rusqlite::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        match note {
            Some(note) => {
                self.notes.store(true, Relaxed);
                self.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO post_notes(path, note) VALUES (?1, ?2)",
                    )?
                    .execute([path, note])?
            }
            // Every file clears its note when indexed: with the table empty, as it almost
            // always is, that is no work at all.
            None if !self.notes.load(Relaxed) => 0,
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
            .prepare_cached("SELECT error, draft, slug, publish_at FROM posts WHERE path = ?1")?
            .query_row([path], |r| {
                let hidden = match r.get::<_, i64>(1)? {
                    0 => None,
                    2 => Some(Visibility::Waiting),
                    3 => Some(Visibility::Expired),
                    _ => Some(Visibility::Draft),
                };
                Ok(PostStatus {
                    error: r.get(0)?,
                    hidden,
                    publish_at: r.get(3)?,
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
        let visibility = Visibility::of(post.draft, post.publish_at, post.expire_at, now) as i64;
        // (id, hash, error, changed_at, visibility) of the row as stored.
        #[allow(clippy::type_complexity)] // A one-off row, read just below.
        let old: Option<(i64, Option<i64>, Option<String>, i64, i64)> = self
            .conn
            .prepare_cached("SELECT id, hash, error, changed_at, draft FROM posts WHERE path = ?1")?
            .query_row([path], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    r.get(4)?,
                ))
            })
            .optional()?;
        let hash = post.hash as i64;
        // A post that appeared or went while its file did not change changed the site too.
        let unchanged =
            matches!(&old, Some((_, Some(h), None, _, v)) if *h == hash && *v == visibility);
        let changed_at = match &old {
            Some((_, _, _, at, _)) if unchanged => *at,
            _ => now,
        };
        let tags = post.tags.join(&TAG_SEP.to_string());
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO posts(path, mtime, size, error, slug, title, date, updated, draft,
                               description, tags, summary, hash, changed_at,
                               date_offset, publish_at, expire_at, note, image)
             VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                     ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT(path) DO UPDATE SET
               mtime = excluded.mtime, size = excluded.size, error = NULL,
               slug = excluded.slug, title = excluded.title, date = excluded.date,
               updated = excluded.updated, draft = excluded.draft,
               description = excluded.description, tags = excluded.tags,
               summary = excluded.summary, hash = excluded.hash,
               changed_at = excluded.changed_at, date_offset = excluded.date_offset,
               publish_at = excluded.publish_at, expire_at = excluded.expire_at,
               note = excluded.note, image = excluded.image",
        )?;
        let values: [&dyn rusqlite::ToSql; 18] = [
            &path,
            &stamp.mtime,
            &stamp.size,
            &post.slug,
            &post.title,
            &post.date,
            &post.updated,
            &visibility,
            &post.description,
            &tags,
            &post.summary,
            &hash,
            &changed_at,
            &post.offset,
            &post.publish_at,
            &post.expire_at,
            &post.note,
            &post.image,
        ];
        for (i, v) in values.into_iter().enumerate() {
            insert.raw_bind_parameter(i + 1, v)?;
        }
        post.summary = String::new();
        insert.raw_execute()?;
        drop(insert);
        // A new row has no tags, old URLs or body to replace: measured, the probes of those
        // tables were a quarter of the page reads of a cold index (10,000 posts), whose
        // B-tree pages the small page cache has evicted by then.
        let fresh = old.is_none();
        let id: i64 = match &old {
            Some((id, ..)) => *id,
            None => self.conn.last_insert_rowid(),
        };
        self.put_body(id, std::mem::take(&mut post.html), post.staged)?;
        if !fresh {
            self.conn
                .prepare_cached("DELETE FROM post_tags WHERE post_id = ?1")?
                .execute([id])?;
        }
        // Drafts keep no tags: tags exist only for what the public sees (a post waiting for
        // its date keeps them, and tag pages and counts skip it until it is shown).
        for name in post.tags.iter().filter(|_| !post.draft) {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO post_tags(tag, name, date, slug, post_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![crate::routes::tag_key(name), name, post.date, post.slug, id])?;
        }
        if !fresh {
            self.conn
                .prepare_cached("DELETE FROM post_aliases WHERE post_id = ?1")?
                .execute([id])?;
        }
        // Two posts may declare one old URL; the first by file name answers it.
        for alias in post.aliases.iter().filter(|_| !post.draft) {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO post_aliases(alias, post_id) VALUES (?1, ?2)",
                )?
                .execute(params![alias, id])?;
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
        self.conn
            .prepare_cached(
                "DELETE FROM post_aliases WHERE post_id = (SELECT id FROM posts WHERE path = ?1)",
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

    /// Stores a post's page: as text when it is here (the renderer hands on any page
    /// longer than a part, see `render::Spill`), else from its staged parts. A staged
    /// page's row is made with room for it (a zero blob, which SQLite neither builds in
    /// memory nor copies) and each part is written into that room through a blob handle.
    /// Bound as a value, the page was copied once when bound and once more into the row
    /// SQLite built, so a post's page was held three times at once: the peak of indexing
    /// a large post. Read back by [`page_text`]. The parts stay in `staged_page` until the
    /// caller drops them ([`Db::drop_staged`]).
    fn put_body(&self, id: i64, html: String, staged: Option<usize>) -> rusqlite::Result<()> {
        let insert = "INSERT OR REPLACE INTO post_bodies(post_id, html) VALUES (?1, ?2)";
        let Some(len) = staged else {
            self.conn
                .prepare_cached(insert)?
                .execute(params![id, html])?;
            return Ok(());
        };
        self.conn
            .prepare_cached(insert)?
            .execute(params![id, ZeroBlob(len as u64)])?;
        let mut blob = self
            .conn
            .blob_open("main", "post_bodies", "html", id, false)?;
        let mut at = 0;
        let mut parts = self
            .conn
            .prepare_cached("SELECT html FROM staged_page ORDER BY part")?;
        let mut rows = parts.query([])?;
        while let Some(row) = rows.next()? {
            let part = value_bytes(row.get_ref(0)?);
            if at + part.len() > len {
                break;
            }
            blob.write_at(part, at)?;
            at += part.len();
        }
        if at != len {
            // Only a bug gets here: the parts are this page's, written just before.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!("a staged page holds {at} bytes, not {len}")),
            ));
        }
        Ok(())
    }

    /// Keeps one part of a page being rendered, in order, until [`Db::upsert_post`] joins
    /// them into the post's row: a page of several megabytes (a post of highlighted code
    /// has a page of three to four times its size) then never exists whole in memory.
    pub fn stage_page(&self, part: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("INSERT INTO staged_page(html) VALUES (?1)")?
            .execute([part.as_bytes()])?;
        Ok(())
    }

    /// Forgets the parts of a page once they are joined into its post's row, or when its
    /// post was refused after it was rendered.
    pub fn drop_staged(&self) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM staged_page")?
            .execute([])?;
        Ok(())
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
            offset: r.get(9)?,
            image: r.get(10)?,
            html: if with_html {
                page_text(r.get_ref(11)?)
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

    /// The newest `limit` public posts' keys of one tag: a tag's feed. (`post_tags` also
    /// holds the tags of posts waiting for their date.)
    pub fn tag_post_keys(&self, tag: &str, limit: u32) -> rusqlite::Result<Vec<PostKey>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.date, t.slug, p.updated FROM post_tags t JOIN posts p ON p.id = t.post_id
              WHERE t.tag = ?1 AND p.error IS NULL AND p.draft = 0
              ORDER BY t.date DESC, t.slug LIMIT ?2",
        )?;
        stmt.query_map(params![tag, limit], |r| {
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

    // ---- standalone pages ----

    /// Every file of `pages/` the index holds, with its stamp.
    pub fn page_stamps(&self) -> rusqlite::Result<Vec<(String, FileStamp)>> {
        self.conn
            .prepare_cached("SELECT path, mtime, size FROM pages ORDER BY path LIMIT 10000")?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    FileStamp {
                        mtime: r.get(1)?,
                        size: r.get(2)?,
                    },
                ))
            })?
            .collect()
    }

    /// Stores a parsed page (its summary is kept for the description only). Returns
    /// whether anything a reader sees changed.
    pub fn upsert_page(&self, path: &str, stamp: FileStamp, page: &Post) -> rusqlite::Result<bool> {
        let old: Option<(Option<i64>, Option<String>, bool)> = self
            .conn
            .prepare_cached("SELECT hash, error, draft FROM pages WHERE path = ?1")?
            .query_row([path], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let hash = page.hash as i64;
        let unchanged = matches!(&old, Some((Some(h), None, d)) if *h == hash && *d == page.draft);
        let was_public = matches!(&old, Some((_, None, false)));
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO pages(path, mtime, size, error, slug, title, description,
                                              image, summary, html, draft, hash)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(rusqlite::params![
                path,
                stamp.mtime,
                stamp.size,
                page.slug,
                page.title,
                page.description,
                page.image,
                page.summary,
                page.html,
                page.draft,
                hash
            ])?;
        Ok(!unchanged && (was_public || !page.draft))
    }

    /// Records a file of `pages/` that is not served, and why. Returns whether a served
    /// page went.
    pub fn mark_page_broken(
        &self,
        path: &str,
        stamp: FileStamp,
        error: &str,
    ) -> rusqlite::Result<bool> {
        let was_public = self.page_was_public(path)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO pages(path, mtime, size, error) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![path, stamp.mtime, stamp.size, error])?;
        Ok(was_public)
    }

    fn page_was_public(&self, path: &str) -> rusqlite::Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM pages WHERE path = ?1 AND error IS NULL AND draft = 0")?
            .query_row([path], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Forgets a file of `pages/` that is gone. Returns whether a served page went.
    pub fn delete_page(&self, path: &str) -> rusqlite::Result<bool> {
        let was_public = self.page_was_public(path)?;
        self.conn
            .prepare_cached("DELETE FROM pages WHERE path = ?1")?
            .execute([path])?;
        Ok(was_public)
    }

    /// The served page at `slug`, as a post row (no date, no tags), with its HTML: the
    /// first by file name when two files claim the slug.
    pub fn page_by_slug(&self, slug: &str) -> rusqlite::Result<Option<PostRow>> {
        self.conn
            .prepare_cached(PAGE_BY_SLUG)?
            .query_row([slug], |r| {
                Ok(PostRow {
                    slug: r.get(0)?,
                    title: r.get(1)?,
                    date: 0,
                    offset: 0,
                    updated: None,
                    summary: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    tags: Vec::new(),
                    description: r.get(2)?,
                    image: r.get(3)?,
                    html: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                })
            })
            .optional()
    }

    /// Whether a served page has `slug` (the short-link 404's redirect to `/SLUG/`).
    pub fn has_page(&self, slug: &str) -> rusqlite::Result<bool> {
        Ok(self
            .conn
            .prepare_cached(HAS_PAGE)?
            .query_row([slug], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The slugs of every served page, sorted: the sitemap's and the export's.
    pub fn page_slugs(&self) -> rusqlite::Result<Vec<String>> {
        self.conn
            .prepare_cached(
                "SELECT DISTINCT slug FROM pages WHERE error IS NULL AND draft = 0
                 ORDER BY slug LIMIT 10000",
            )?
            .query_map([], |r| r.get(0))?
            .collect()
    }

    /// What `nib check` says of each file of `pages/` that is not served, sorted by file:
    /// its problem, "a draft", or the earlier file that has its slug.
    pub fn page_problems(&self) -> rusqlite::Result<Vec<(String, String, bool)>> {
        self.conn
            .prepare_cached(
                "SELECT path, CASE
                   WHEN error IS NOT NULL THEN error
                   WHEN draft <> 0 THEN 'not published: a draft'
                   ELSE 'duplicate slug ' || '\"' || slug || '\"' || ' (also used by ' ||
                        (SELECT min(q.path) FROM pages q WHERE q.slug = pages.slug
                           AND q.error IS NULL AND q.draft = 0) || ')'
                 END, error IS NOT NULL OR draft = 0
                 FROM pages
                 WHERE error IS NOT NULL OR draft <> 0 OR EXISTS (
                   SELECT 1 FROM pages q WHERE q.slug = pages.slug AND q.path < pages.path
                     AND q.error IS NULL AND q.draft = 0)
                 ORDER BY path LIMIT 10000",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    }

    // ---- short links ----

    const LINK_COLUMNS: &'static str = "id, code, url, title, created_at, clicks";
    const LINK_COLUMNS_QUALIFIED: &'static str =
        "links.id, links.code, links.url, links.title, links.created_at, links.clicks";

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

    /// The redirect's query: (id, target) by code, through the unique index; when no link
    /// has the code, by an old code of a renamed link (a second index lookup, only on a
    /// miss).
    pub fn link_target(&self, code: &str) -> rusqlite::Result<Option<(i64, String)>> {
        let found = self
            .conn
            .prepare_cached(LINK_TARGET)?
            .query_row([code], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
        self.conn
            .prepare_cached(LINK_ALIAS_TARGET)?
            .query_row([code], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// The link with this code, or the link that had it before a rename.
    pub fn link_by_any_code(&self, code: &str) -> rusqlite::Result<Option<LinkRow>> {
        if let Some(l) = self.link_by_code(code)? {
            return Ok(Some(l));
        }
        let sql = format!(
            "SELECT {} FROM link_aliases JOIN links ON links.id = link_aliases.link_id
             WHERE link_aliases.code = ?1",
            Self::LINK_COLUMNS_QUALIFIED
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row([code], Self::row_to_link)
            .optional()
    }

    /// The old codes a link answers to besides its own, in code order.
    pub fn link_aliases(&self, id: i64) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT code FROM link_aliases WHERE link_id = ?1 ORDER BY code")?;
        stmt.query_map([id], |r| r.get(0))?.collect()
    }

    /// Changes a link's target, title or code (each when given), in one durable
    /// transaction. A new code keeps the old one as an alias; taking back one of the
    /// link's own old codes is allowed, a code any other link has or had is not.
    pub fn update_link(
        &self,
        code: &str,
        url: Option<&str>,
        title: Option<&str>,
        new_code: Option<&str>,
    ) -> rusqlite::Result<Updated> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = self.write_transaction(|| {
            let Some(mut link) = self.link_by_code(code)? else {
                return Ok(Updated::NotFound);
            };
            if let Some(new) = new_code.filter(|n| *n != link.code) {
                if self
                    .link_by_any_code(new)?
                    .is_some_and(|other| other.id != link.id)
                {
                    return Ok(Updated::SlugTaken);
                }
                self.conn
                    .prepare_cached("DELETE FROM link_aliases WHERE code = ?1")?
                    .execute([new])?;
                self.conn
                    .prepare_cached("INSERT INTO link_aliases(code, link_id) VALUES (?1, ?2)")?
                    .execute(params![link.code, link.id])?;
                self.conn
                    .prepare_cached("UPDATE links SET code = ?2, custom = 1 WHERE id = ?1")?
                    .execute(params![link.id, new])?;
                link.code = new.to_string();
            }
            if let Some(u) = url {
                self.conn
                    .prepare_cached("UPDATE links SET url = ?2 WHERE id = ?1")?
                    .execute(params![link.id, u])?;
                link.url = u.to_string();
            }
            if let Some(t) = title {
                self.conn
                    .prepare_cached("UPDATE links SET title = ?2 WHERE id = ?1")?
                    .execute(params![link.id, t])?;
                link.title = t.to_string();
            }
            Ok(Updated::Done(link))
        });
        let restore = self.conn.pragma_update(None, "synchronous", "NORMAL");
        let updated = result?;
        restore?;
        Ok(updated)
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
                    // An old code of a renamed link is taken too.
                    if let Some(existing) = self.link_by_any_code(s)? {
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
        self.store_next_schedule()?;
        self.conn.execute_batch(
            "DELETE FROM tag_counts;
             INSERT INTO tag_counts(tag, name, count)
               SELECT tag, min(name), count(*) FROM post_tags
                 JOIN posts ON posts.id = post_tags.post_id AND posts.draft = 0
                 GROUP BY tag;",
        )
    }

    /// Keeps the next instant a post appears or goes, for the loop to watch for.
    fn store_next_schedule(&self) -> rusqlite::Result<()> {
        let next: Option<i64> = self.conn.query_row(
            "SELECT min(t) FROM (
               SELECT min(publish_at) AS t FROM posts INDEXED BY posts_waiting
                 WHERE error IS NULL AND draft = 2
               UNION ALL
               SELECT min(expire_at) FROM posts INDEXED BY posts_expiring
                 WHERE error IS NULL AND draft = 0 AND expire_at IS NOT NULL)",
            [],
            |r| r.get(0),
        )?;
        self.meta_set(
            "next_schedule",
            &next.map_or(String::new(), |t| t.to_string()),
        )
    }

    /// The next instant a post waiting for its date appears or a post expires, as the
    /// last [`Db::bump_site_version`] found it.
    pub fn next_schedule(&self) -> rusqlite::Result<Option<i64>> {
        Ok(self.meta_get("next_schedule")?.and_then(|v| v.parse().ok()))
    }

    /// Shows the posts whose time has come and hides those past their expiry, at `now`.
    /// Returns whether any changed (then the site's version has moved). Runs only when
    /// [`Db::next_schedule`] has passed (and at start-up), never per request.
    pub fn apply_schedule(&self, now: i64) -> rusqlite::Result<bool> {
        self.write_transaction(|| {
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE posts SET draft = CASE
                       WHEN publish_at > ?1 THEN 2
                       WHEN expire_at <= ?1 THEN 3 ELSE 0 END
                     WHERE error IS NULL AND draft IN (0, 2, 3) AND draft <> CASE
                       WHEN publish_at > ?1 THEN 2
                       WHEN expire_at <= ?1 THEN 3 ELSE 0 END",
                )?
                .execute([now])?;
            if n > 0 {
                self.bump_site_version(now)?;
            } else {
                // Nothing was due (another process applied it first): the instant kept
                // must still move on, or the loop would ask at every request.
                self.store_next_schedule()?;
            }
            Ok(n > 0)
        })
    }

    /// The public post an old URL (by its `oldurls::alias_key`) names: its slug.
    pub fn alias_target(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .prepare_cached(ALIAS_TARGET)?
            .query_row([key], |r| r.get::<_, Option<String>>(0))
            .optional()
            .map(Option::flatten)
    }

    /// A page of public posts' old URLs after `after` (by key): (key, the post's slug). The
    /// export writes them as redirects.
    pub fn public_aliases(
        &self,
        after: &str,
        limit: u32,
    ) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT alias, posts.slug FROM post_aliases JOIN posts ON posts.id = post_aliases.post_id
              WHERE alias > ?1 AND posts.error IS NULL AND posts.draft = 0
              ORDER BY alias LIMIT ?2",
        )?;
        stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// A public post's date and the offset it was written in, by slug.
    pub fn post_date(&self, slug: &str) -> rusqlite::Result<Option<(i64, i32)>> {
        self.conn
            .prepare_cached(POST_DATE)?
            .query_row([slug], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// Every old URL with the file of the post that declares it (drafts declare none),
    /// for `nib check`.
    pub fn aliases(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT alias, posts.path FROM post_aliases JOIN posts ON posts.id = post_aliases.post_id
             ORDER BY alias, posts.path LIMIT 100000",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// The warnings about posts that are served all the same, for `nib check`.
    pub fn post_notes(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, note FROM posts WHERE error IS NULL AND note IS NOT NULL
             ORDER BY path LIMIT 10000",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Whether a public post has this slug.
    pub fn has_post(&self, slug: &str) -> rusqlite::Result<bool> {
        Ok(self.post_date(slug)?.is_some())
    }

    /// Which of `codes` are short links in the database at `path`, opened read-only and
    /// not migrated: `nib check` indexes the posts into a scratch database and must not
    /// write the live one. None when there is no database to read.
    pub fn short_links_in(path: &Path, codes: &[&str]) -> Vec<String> {
        use rusqlite::OpenFlags;
        let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
            return Vec::new();
        };
        let Ok(mut stmt) = conn.prepare("SELECT 1 FROM links WHERE code = ?1") else {
            return Vec::new();
        };
        codes
            .iter()
            .filter(|c| stmt.exists([c]).unwrap_or(false))
            .map(|c| c.to_string())
            .collect()
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
            ("old URL", ALIAS_TARGET),
            ("post date", POST_DATE),
            ("link alias target", LINK_ALIAS_TARGET),
            ("page by slug", PAGE_BY_SLUG),
            ("page of a code", HAS_PAGE),
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

    /// An index built by an older nib is read again after migration 4: its rows have no
    /// offset or schedule yet, and the stored fingerprint would skip the scan.
    #[test]
    fn an_older_index_is_read_again_after_the_migrated_blogs_migration() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO posts(path, mtime, size, slug, title, date, draft, hash)
               VALUES ('a.md', 5, 1, 'a', 'A', 0, 0, 1);
             INSERT INTO meta(key, value) VALUES ('posts_fingerprint', 'v 42');",
        )
        .unwrap();
        let db = Db::setup(conn).unwrap();
        assert_eq!(db.post_stamp("a.md").unwrap().map(|s| s.mtime), Some(-1));
        assert_eq!(db.meta_get("posts_fingerprint").unwrap(), None);
        assert_eq!(db.post_date("a").unwrap(), Some((0, 0)));
    }

    #[test]
    fn visibility_follows_draft_date_and_expiry() {
        use Visibility::*;
        // (draft, publish_at, expire_at, now, visibility)
        let cases = [
            (false, 100, None, 100, Public),
            (false, 101, None, 100, Waiting),
            (true, 0, None, 100, Draft),
            (true, 200, Some(50), 100, Draft),
            (false, 0, Some(100), 100, Expired),
            (false, 0, Some(101), 100, Public),
            (false, 150, Some(120), 100, Waiting),
        ];
        for (draft, publish_at, expire_at, now, want) in cases {
            assert_eq!(
                Visibility::of(draft, publish_at, expire_at, now),
                want,
                "{draft} {publish_at} {expire_at:?} {now}"
            );
        }
    }

    #[test]
    fn a_renamed_link_keeps_its_old_code_its_clicks_and_its_days() {
        let db = Db::memory();
        let code = |n: u64| format!("g{n}");
        let ok = |_: &str| true;
        let Created::New(a) = db
            .create_link("https://a.example/", None, "", 1, &code, &ok)
            .unwrap()
        else {
            panic!("not created")
        };
        let Created::New(b) = db
            .create_link("https://b.example/", Some("bee"), "", 1, &code, &ok)
            .unwrap()
        else {
            panic!("not created")
        };
        db.add_clicks(5, &[(a.id, 3)]).unwrap();
        let Updated::Done(r) = db
            .update_link(&a.code, None, Some("A"), Some("first"))
            .unwrap()
        else {
            panic!("not renamed")
        };
        assert_eq!(
            (r.code.as_str(), r.title.as_str(), r.clicks),
            ("first", "A", 3)
        );
        // Both codes redirect; the old one is taken for new links and for renames.
        assert_eq!(db.link_target("first").unwrap().unwrap().0, a.id);
        assert_eq!(db.link_target("g0").unwrap().unwrap().0, a.id);
        assert_eq!(db.link_by_any_code("g0").unwrap().unwrap().code, "first");
        assert_eq!(
            db.create_link("https://c.example/", Some("g0"), "", 2, &code, &ok)
                .unwrap(),
            Created::SlugTaken
        );
        assert_eq!(
            db.update_link("bee", None, None, Some("g0")).unwrap(),
            Updated::SlugTaken
        );
        assert_eq!(
            db.update_link("bee", None, None, Some("first")).unwrap(),
            Updated::SlugTaken
        );
        assert_eq!(
            db.update_link("nope", None, None, None).unwrap(),
            Updated::NotFound
        );
        // Generated codes skip old codes too.
        let next = |n: u64| {
            if n == 1 {
                "g0".to_string()
            } else {
                format!("z{n}")
            }
        };
        let Created::New(c) = db
            .create_link("https://c.example/", None, "", 2, &next, &ok)
            .unwrap()
        else {
            panic!("not created")
        };
        assert_ne!(c.code, "g0");
        // Taking back an old code of its own is allowed; the daily counts stay.
        let Updated::Done(r) = db
            .update_link("first", Some("https://a2.example/"), None, Some("g0"))
            .unwrap()
        else {
            panic!("not renamed back")
        };
        assert_eq!(
            (r.code.as_str(), r.url.as_str()),
            ("g0", "https://a2.example/")
        );
        assert_eq!(db.link_aliases(a.id).unwrap(), vec!["first".to_string()]);
        assert_eq!(db.link_days(a.id, 0).unwrap(), vec![(5, 3)]);
        // Deleting the link frees its old codes.
        db.delete_link("g0").unwrap();
        assert!(db.link_target("first").unwrap().is_none());
        assert_eq!(b.code, "bee");
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
