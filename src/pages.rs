//! Standalone pages: the markdown files of `pages/` (beside `posts/`), each served at
//! `/SLUG/` and never in a list, feed or tag page. They have the front matter of posts and
//! go through the same render path (shortcodes, markdown, highlighting), once per file
//! change; their rows live in a table of their own (`pages`, see the migration in `db`),
//! so no post query can show one. `pages/` is read flat: a site has a handful of pages,
//! and a folder in it is listed by `nib check` rather than read. The post index
//! ([`crate::posts::Index`]) calls [`reconcile`] when its watch on `pages/` saw a change.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::dates;
use crate::db::{Db, FileStamp};
use crate::posts;
use crate::routes::{self, Route};
use crate::shortcodes::Templates;

/// The most files of `pages/` read: a bound on a check's work whatever is dropped there.
pub(crate) const MAX_PAGES: usize = 1_000;

/// The folder of a site's pages: `pages/` beside `posts/`.
pub(crate) fn pages_dir(posts_dir: &Path) -> PathBuf {
    posts_dir
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("pages")
}

/// Why a page with this slug cannot be served at `/SLUG/`, if it cannot: a name of the
/// route table (`/tags/`, `/admin/`...) or a slug that is not one path segment.
pub(crate) fn slug_problem(slug: &str) -> Option<String> {
    if !routes::page_may_take(slug) {
        return Some(format!(
            "slug {slug:?} is one of nib's own paths (/{slug}/): the page is not served"
        ));
    }
    let path = format!("/{slug}/");
    if Route::parse(&path) != Route::Page(slug) {
        return Some(format!(
            "slug {slug:?} cannot be served at {path}: the page is not served"
        ));
    }
    None
}

/// What is in `pages/`: each page file by name with its stamp (or `None` for a file that
/// vanished meanwhile), and what is not read, with why.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub pages: Vec<(String, FileStamp)>,
    pub skipped: Vec<(String, &'static str)>,
}

/// Lists `pages/` (flat, at most [`MAX_PAGES`] page files). A missing folder is no pages.
pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut out = Listing::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            out.skipped
                .push((name.to_string_lossy().into_owned(), "its name is not UTF-8"));
            continue;
        };
        if name.starts_with('.') || name.starts_with('#') {
            continue;
        }
        // Links are followed (a page kept elsewhere), folders are not read.
        let meta = match fs::metadata(entry.path()) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.is_dir() {
            out.skipped.push((
                format!("{name}/"),
                "a folder: pages/ is read flat, its folders are not",
            ));
        } else if !posts::is_post_file(name) {
            if !name.ends_with('~') && !name.ends_with(".swp") {
                out.skipped.push((
                    name.to_string(),
                    "not a page (only .md and .markdown files are pages)",
                ));
            }
        } else if out.pages.len() >= MAX_PAGES {
            out.skipped
                .push((name.to_string(), "over 1000 pages, not read"));
        } else if meta.is_file() {
            out.pages.push((name.to_string(), posts::stamp_of(&meta)));
        }
    }
    Ok(out)
}

/// The meta key of the rendering the stored pages were made with.
const VERSION_KEY: &str = "pages_version";

/// Brings the `pages` table in step with `pages/`: reads the files whose stamps differ
/// (or all of them, when `version`, the rendering's, changed), forgets the ones gone.
/// Touches the database only when something differs, so a check with nothing to do
/// costs one folder read and two queries. Returns whether the public site changed.
pub(crate) fn reconcile(
    db: &Db,
    dir: &Path,
    version: &str,
    quiet: bool,
    max_bytes: u64,
    shortcodes: &Templates,
) -> rusqlite::Result<bool> {
    let listing = match list(dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nib: {}: {e}", dir.display());
            return Ok(false);
        }
    };
    let fresh = db.meta_get(VERSION_KEY)?.as_deref() == Some(version);
    let stored: HashMap<String, FileStamp> = db.page_stamps()?.into_iter().collect();
    let work = !fresh
        || stored.len() != listing.pages.len()
        || listing.pages.iter().any(|(n, s)| stored.get(n) != Some(s));
    if !work {
        return Ok(false);
    }
    db.write_transaction(|| {
        let mut changed = false;
        if !fresh {
            db.meta_set(VERSION_KEY, version)?;
        }
        for (name, stamp) in &listing.pages {
            if fresh && stored.get(name) == Some(stamp) {
                continue;
            }
            let path = dir.join(name);
            let parsed = posts::read_post(&path, *stamp, max_bytes)
                .and_then(|text| {
                    posts::parse_file(
                        name,
                        text,
                        stamp.mtime.div_euclid(1_000_000_000),
                        shortcodes,
                        None,
                    )
                })
                .and_then(|page| match slug_problem(&page.slug) {
                    Some(problem) => Err(problem),
                    None => Ok(page),
                });
            changed |= match parsed {
                Ok(page) => db.upsert_page(name, *stamp, &page)?,
                Err(problem) => {
                    if !quiet {
                        eprintln!("nib: skipping {}: {problem}", path.display());
                    }
                    db.mark_page_broken(name, *stamp, &problem)?
                }
            };
        }
        for name in stored.keys() {
            if !listing.pages.iter().any(|(n, _)| n == name) {
                changed |= db.delete_page(name)?;
            }
        }
        if changed {
            db.bump_site_version(dates::now())?;
        }
        Ok(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_slug_may_not_be_a_name_of_the_route_table() {
        // (slug, served)
        let cases = [
            ("about", true),
            ("colophon", true),
            ("now", true),
            ("café", true),
            ("tags", false),
            ("posts", false),
            ("admin", false),
            ("api", false),
            ("static", false),
            ("feed.xml", false),
            ("page", false),
            ("healthz", false),
            ("a/b", false),
            ("", false),
        ];
        for (slug, served) in cases {
            assert_eq!(slug_problem(slug).is_none(), served, "{slug}");
        }
    }

    fn site() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pages");
        fs::create_dir(&dir).unwrap();
        (tmp, dir)
    }

    #[test]
    fn pages_are_indexed_again_only_when_their_files_change() {
        let (_tmp, dir) = site();
        let db = Db::memory();
        let t = Templates::default();
        fs::write(
            dir.join("about.md"),
            "---\ntitle: About me\n---\nHello *there*.\n",
        )
        .unwrap();
        fs::write(dir.join("tags.md"), "---\ntitle: Tags\n---\nNo.\n").unwrap();
        fs::write(dir.join("notes.txt"), "not a page").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        assert!(reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap());
        let about = db.page_by_slug("about").unwrap().unwrap();
        assert_eq!(about.title, "About me");
        assert!(about.html.contains("<em>there</em>"), "{}", about.html);
        assert!(db.page_by_slug("tags").unwrap().is_none());
        assert_eq!(db.page_slugs().unwrap(), ["about"]);
        // Pages are never posts.
        assert_eq!(db.count_public().unwrap(), 0);
        assert!(db.post_by_slug("about").unwrap().is_none());
        // Nothing changed: nothing to do.
        assert!(!reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap());
        let problems = db.page_problems().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "tags.md");
        assert!(problems[0].1.contains("nib's own paths"), "{problems:?}");
        let listing = list(&dir).unwrap();
        let mut skipped: Vec<_> = listing.skipped.iter().map(|(n, _)| n.as_str()).collect();
        skipped.sort();
        assert_eq!(skipped, ["notes.txt", "sub/"]);
        // A draft is not served; a removed page goes.
        fs::write(dir.join("about.md"), "---\ndraft: true\n---\nLater.\n").unwrap();
        assert!(reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap());
        assert!(db.page_by_slug("about").unwrap().is_none());
        fs::remove_file(dir.join("about.md")).unwrap();
        reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap();
        assert!(
            db.page_stamps()
                .unwrap()
                .iter()
                .all(|(n, _)| n != "about.md")
        );
    }

    #[test]
    fn of_two_pages_with_one_slug_the_first_file_answers_and_the_other_is_a_problem() {
        let (_tmp, dir) = site();
        let db = Db::memory();
        fs::write(dir.join("a.md"), "---\nslug: same\ntitle: A\n---\nA\n").unwrap();
        fs::write(dir.join("b.md"), "---\nslug: same\ntitle: B\n---\nB\n").unwrap();
        reconcile(&db, &dir, "v1", true, 1 << 20, &Templates::default()).unwrap();
        assert_eq!(db.page_by_slug("same").unwrap().unwrap().title, "A");
        let problems = db.page_problems().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "b.md");
        assert!(
            problems[0]
                .1
                .contains("duplicate slug \"same\" (also used by a.md)")
        );
        assert!(problems[0].2);
    }

    #[test]
    fn a_new_rendering_reads_every_page_again() {
        let (_tmp, dir) = site();
        let db = Db::memory();
        let t = Templates::default();
        fs::write(dir.join("about.md"), "About\n").unwrap();
        reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap();
        assert!(!reconcile(&db, &dir, "v1", true, 1 << 20, &t).unwrap());
        // The same page again: stored, the site unchanged, but the version is recorded.
        reconcile(&db, &dir, "v2", true, 1 << 20, &t).unwrap();
        assert_eq!(db.meta_get(VERSION_KEY).unwrap().as_deref(), Some("v2"));
    }
}
