//! The page cache: the HTML pages rendered last (posts, standalone pages, listing pages, the tag list and tag pages), kept whole
//! so that a page read again and again, a post on the front page of a news site, is written
//! from memory without a database transaction or a template render. Measured on the bench
//! machine, that is most of the request loop's own work for a post page.
//!
//! An entry is found by its route and must carry the page's current strong ETag, which
//! names the route, the site's content version, the settings and the binary: the same
//! ETag already promises the same bytes to every HTTP cache, so a hit can be neither
//! another page nor a stale one. The cache is bounded in bytes and emptied when the site
//! changes; the loop alone uses it, one request at a time (a writer thread holds a kept
//! page's bytes, shared, while it sends them).

use std::collections::VecDeque;
use std::sync::Arc;

/// The most bytes the cache holds, counting each entry's route and ETag. A post page of
/// the example theme is 5 to 8 KB and a listing page of ten summaries 4 to 15 KB, so this
/// keeps the last few hot pages. Measured with `bench/bench.py` under mixed pages (so the cache is full
/// and churning), peak RSS rose by about 70 KB at this size and 110 KB at 64 KiB, against
/// 3.2 MB without it.
pub(crate) const MAX_BYTES: usize = 32 * 1024;
/// A page larger than this is not kept: it would push out every other.
pub(crate) const MAX_PAGE: usize = 16 * 1024;

struct Entry {
    path: String,
    etag: String,
    body: Arc<Vec<u8>>,
}

impl Entry {
    fn size(&self) -> usize {
        self.path.len() + self.etag.len() + self.body.capacity()
    }
}

/// The pages, least recently used first.
#[derive(Default)]
pub(crate) struct PageCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl PageCache {
    /// Whether the page at `path` is kept under `etag`.
    pub fn contains(&self, path: &str, etag: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.path == path && e.etag == etag)
    }

    /// The page at `path` if it is kept under `etag`; it becomes the most recently used.
    /// A copy under another ETag is out of date and is dropped.
    pub fn get(&mut self, path: &str, etag: &str) -> Option<Arc<Vec<u8>>> {
        let i = self.entries.iter().position(|e| e.path == path)?;
        let entry = self.entries.remove(i)?;
        if entry.etag != etag {
            self.bytes -= entry.size();
            return None;
        }
        let body = Arc::clone(&entry.body);
        self.entries.push_back(entry);
        Some(body)
    }

    /// Keeps a page, replacing any older copy of it, and drops the least recently used
    /// pages until the cache is within [`MAX_BYTES`]. The page is shared, not copied: the
    /// caller trims its spare capacity first, which counts against the budget.
    pub fn put(&mut self, path: &str, etag: &str, body: Arc<Vec<u8>>) {
        if body.capacity() > MAX_PAGE {
            return;
        }
        if let Some(i) = self.entries.iter().position(|e| e.path == path)
            && let Some(old) = self.entries.remove(i)
        {
            self.bytes -= old.size();
        }
        let entry = Entry {
            path: path.to_string(),
            etag: etag.to_string(),
            body,
        };
        self.bytes += entry.size();
        self.entries.push_back(entry);
        while self.bytes > MAX_BYTES {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.size();
        }
    }

    /// Drops every page, as when the site changes: none of them is current any more.
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }

    /// The bytes held, as counted against [`MAX_BYTES`] (the tests check the count).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![b'x'; n])
    }

    /// Steps: ("put", path, etag, size) or ("get", path, etag, expected size or 0 for a
    /// miss); after each, the routes kept, least recently used first.
    #[test]
    fn keeps_the_recent_pages_under_their_etags() {
        let big = MAX_BYTES / 3;
        let cases: &[(&str, &str, &str, usize, &[&str])] = &[
            ("put", "/a/", "e1", 100, &["/a/"]),
            ("get", "/a/", "e1", 100, &["/a/"]),
            // Another page never answers for this one.
            ("get", "/b/", "e1", 0, &["/a/"]),
            ("put", "/b/", "e1", 100, &["/a/", "/b/"]),
            ("get", "/a/", "e1", 100, &["/b/", "/a/"]),
            // A new ETag (the site changed) finds nothing, and the old copy is dropped.
            ("get", "/a/", "e2", 0, &["/b/"]),
            ("put", "/a/", "e2", 200, &["/b/", "/a/"]),
            // A newer copy replaces the older one.
            ("put", "/b/", "e2", 300, &["/a/", "/b/"]),
            ("get", "/b/", "e2", 300, &["/a/", "/b/"]),
            // Too large to keep.
            ("put", "/huge/", "e2", MAX_PAGE + 1, &["/a/", "/b/"]),
            // Over the budget, the least recently used go first.
            ("put", "/c/", "e2", big, &["/a/", "/b/", "/c/"]),
            ("put", "/d/", "e2", big, &["/a/", "/b/", "/c/", "/d/"]),
            ("put", "/e/", "e2", big, &["/d/", "/e/"]),
        ];
        let mut cache = PageCache::default();
        for (i, &(op, path, etag, size, kept)) in cases.iter().enumerate() {
            match op {
                "put" => cache.put(path, etag, page(size)),
                _ => {
                    let got = cache.get(path, etag).map_or(0, |b| b.len());
                    assert_eq!(got, size, "step {i}: get {path} {etag}");
                }
            }
            let routes: Vec<&str> = cache.entries.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(routes, kept, "step {i}: {op} {path}");
            let counted: usize = cache.entries.iter().map(Entry::size).sum();
            assert_eq!(cache.bytes(), counted, "step {i}");
            assert!(cache.bytes() <= MAX_BYTES, "step {i}");
            assert_eq!(
                cache.contains(path, etag),
                routes.contains(&path) && (op == "put" || size > 0),
                "step {i}"
            );
        }
        cache.clear();
        assert_eq!((cache.entries.len(), cache.bytes()), (0, 0));
    }
}
