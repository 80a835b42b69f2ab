//! The site's posts: turning one markdown file into a [`Post`] (front matter, slug, date,
//! title, summary, rendered HTML), walking the `posts/` tree ([`walk`]: posts in folders,
//! bundles, and what is not read and why), and keeping the SQLite index in step with it.
//! There is no watcher thread: before a request, at most every [`CHECK_EVERY`], the loop
//! asks an inotify descriptor (watching `posts/` and its folders), without blocking,
//! whether anything changed; only then does [`Index::refresh_if_due`] walk the tree, stat
//! the post files and re-read those that changed, a [`STEP_BUDGET`] at a time, so the loop
//! serves between steps. Start-up and `nib check` use [`Index::refresh`], which takes every
//! step at once. The index reads the standalone pages of `pages/` too (see `pages`), with a
//! watch of their own.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::dates;
use crate::db::{Db, FileStamp, Post};
use crate::hash::Fnv;
use crate::oldurls;
use crate::render;
use crate::routes::{slugify, tag_key};
use crate::shortcodes::Templates;
use crate::sys;

/// Every top-level front matter key nib reads, aliases included: `nib check` counts the
/// others, so a migrating owner sees what did not carry over. Keep it in step with
/// [`FrontMatter`] (a field or alias added there is added here).
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "title",
    "date",
    "updated",
    "lastmod",
    "last_modified_at",
    "slug",
    "tags",
    "categories",
    "category",
    "draft",
    "published",
    "description",
    "publishDate",
    "publishdate",
    "publish_date",
    "expiryDate",
    "expirydate",
    "expiry_date",
    "unpublishdate",
    "aliases",
    "redirect_from",
    "path",
    "taxonomies",
    "image",
    "images",
    "banner_image",
    "featured_image",
    "feature_image",
    "cover",
];

/// Front matter fields. Unknown fields are allowed (other generators' fields, `extra`).
#[derive(Debug, Default, Deserialize)]
struct FrontMatter {
    title: Option<String>,
    date: Option<DateValue>,
    /// Hugo's `publishDate` (and `publish_date`): hidden until then.
    #[serde(alias = "publishDate", alias = "publishdate")]
    publish_date: Option<DateValue>,
    /// Hugo's `expiryDate` (and `expiry_date`, `unpublishdate`): hidden from then on.
    #[serde(alias = "expiryDate", alias = "expirydate", alias = "unpublishdate")]
    expiry_date: Option<DateValue>,
    /// Hugo's and Zola's old URLs of the post.
    aliases: Option<Strings>,
    /// Jekyll's (the jekyll-redirect-from plugin's) old URLs of the post.
    redirect_from: Option<Strings>,
    /// Zola's URL path (`2022/04/07/slug`): an old URL, and the date when there is none.
    path: Option<String>,
    /// Zola's `[taxonomies] tags = [...]` and `categories`, merged into the tags.
    taxonomies: Option<Taxonomies>,
    /// Hugo writes `lastmod`, Jekyll `last_modified_at`.
    #[serde(alias = "lastmod", alias = "last_modified_at")]
    updated: Option<DateValue>,
    slug: Option<String>,
    tags: Option<Tags>,
    /// Jekyll's categories, merged into the tags.
    #[serde(alias = "category")]
    categories: Option<Tags>,
    draft: Option<Flag>,
    /// Jekyll's `published: false` hides a post as `draft: true` does.
    published: Option<Flag>,
    description: Option<String>,
    /// The picture for link previews: `image` (Jekyll's SEO tag, many Hugo and Zola
    /// themes), Hugo's `images` list, `banner_image`/`featured_image`, PaperMod's
    /// `cover.image`; else the post's first image.
    image: Option<ImageRef>,
    images: Option<Strings>,
    #[serde(alias = "featured_image", alias = "feature_image")]
    banner_image: Option<ImageRef>,
    cover: Option<Cover>,
}

/// An image in front matter: a path or URL, or a table holding one (`image: {path: x}`,
/// as jekyll-seo-tag writes it).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ImageRef {
    Url(String),
    Table {
        #[serde(alias = "url", alias = "src")]
        path: Option<String>,
    },
}

impl ImageRef {
    fn url(self) -> Option<String> {
        match self {
            ImageRef::Url(u) | ImageRef::Table { path: Some(u) } => Some(u),
            ImageRef::Table { path: None } => None,
        }
    }
}

/// PaperMod's `cover:` table.
#[derive(Debug, Default, Deserialize)]
struct Cover {
    image: Option<ImageRef>,
}

/// Zola's taxonomies; other taxonomies are ignored.
#[derive(Debug, Default, Deserialize)]
struct Taxonomies {
    tags: Option<Tags>,
    categories: Option<Tags>,
}

/// A list of strings, or one string (`aliases: /old/`, `redirect_from: /old.html`).
/// Read element by element, like [`Tags`], and bounded: a post has a few old URLs, and
/// more than [`MAX_ALIASES`] is a mistake that would only fill the table.
#[derive(Debug, Default)]
struct Strings(Vec<String>);

/// The most old URLs one post keeps.
const MAX_ALIASES: usize = 64;

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    if out.len() == MAX_ALIASES {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_ALIASES} old URLs"
                        )));
                    }
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                Ok(Strings(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A yes/no field as a boolean or as the strings "true" and "false" (`draft: "true"`).
#[derive(Debug, Clone, Copy)]
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Flag(true)),
                    "false" => Ok(Flag(false)),
                    _ => Err(E::custom(format!("{v:?} is not true or false"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Tags as a list, or as one string separated by commas (or, without commas, by spaces, as
/// Jekyll reads `tags: jekyll release`): trimmed, without empty ones, the first of each
/// key ([`tag_key`]: `Rust` and `rust` are one tag, `C++` and `c` two) kept.
///
/// Read element by element rather than as an untagged enum, which buffers the whole value
/// first: YAML aliases expand as they are read, and 21 KB of `tags: *b`, with `b` a list of
/// 3,000 aliases to a list of 3,000 strings, took 33 s and 300 MB before it was refused.
/// Now an alias to a list stops the read at its first element, and repeats of one string
/// are dropped as they come.
#[derive(Debug, Default)]
struct Tags(Vec<String>);

impl Tags {
    fn add(&mut self, seen: &mut HashSet<String>, tag: &str) {
        let tag = tag.trim();
        let slug = tag_key(tag);
        if !slug.is_empty() && seen.insert(slug) {
            self.0.push(tag.to_string());
        }
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of tags or one comma-separated string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Tags, E> {
                let (mut tags, mut seen) = (Tags::default(), HashSet::new());
                if v.contains(',') {
                    v.split(',').for_each(|t| tags.add(&mut seen, t));
                } else {
                    v.split_whitespace().for_each(|t| tags.add(&mut seen, t));
                }
                Ok(tags)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tags, A::Error> {
                let (mut tags, mut seen) = (Tags::default(), HashSet::new());
                while let Some(t) = seq.next_element::<String>()? {
                    tags.add(&mut seen, &t);
                }
                Ok(tags)
            }
        }
        d.deserialize_any(V)
    }
}

/// A date as text; TOML's native datetimes (`date = 2024-01-05`) arrive as a one-entry map,
/// which is how the toml crate hands a datetime to serde.
#[derive(Debug)]
struct DateValue(String);

impl<'de> Deserialize<'de> for DateValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DateValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a date such as 2024-01-05")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateValue, E> {
                Ok(DateValue(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DateValue, A::Error> {
                let (_, v): (String, String) = map
                    .next_entry()?
                    .ok_or_else(|| serde::de::Error::custom("empty date"))?;
                Ok(DateValue(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The extensions of post files: `.md`, and Jekyll's default `.markdown`.
const POST_EXTENSIONS: [&str; 2] = [".md", ".markdown"];

/// A post file's name without its extension, if it has one of [`POST_EXTENSIONS`].
pub(crate) fn post_stem(name: &str) -> Option<&str> {
    POST_EXTENSIONS
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .filter(|stem| !stem.is_empty())
}

/// Whether a file in `posts/` is a post: `.md` or `.markdown`, not hidden, not an editor's
/// leftover (`.#x.md` lock files, `x.md~` backups, `.x.md.swp` swap files are all caught
/// here), and not a Zola section file (`_index.md`), which describes a folder.
pub(crate) fn is_post_file(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && post_stem(name).is_some_and(|stem| stem != "_index")
}

/// How many folders deep `posts/` is read: `posts/a/b/c.md` is two deep. Hugo's
/// `content/posts/2020/05/slug/index.md` is four; eight leaves room and bounds a walk.
pub(crate) const MAX_DEPTH: usize = 8;

/// How many folders one walk of `posts/` reads; the rest are listed by `nib check`. A
/// bound on the walk's work however the folder is filled (a `node_modules` dropped in),
/// well above a site of 10,000 bundles (a folder each, and their year folders).
pub(crate) const MAX_FOLDERS: usize = 50_000;

/// Why a file or folder under `posts/` is not read as a post (`nib check` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    NotPost,
    Leftover,
    Hidden,
    Section,
    NotRegular,
    LinkedFolder,
    TooDeep,
    TooManyFolders,
    NotUtf8,
    Unreadable,
}

impl Skip {
    pub(crate) fn reason(self) -> String {
        match self {
            Skip::NotPost => "not a post (only .md and .markdown files are posts)".into(),
            Skip::Leftover => "an editor's backup or swap file".into(),
            Skip::Hidden => "hidden (its name starts with a dot or #)".into(),
            Skip::Section => "a section file (_index.md), never a post".into(),
            Skip::NotRegular => "not a regular file".into(),
            Skip::LinkedFolder => "a link to a folder, which is not followed".into(),
            Skip::TooDeep => format!("a folder more than {MAX_DEPTH} deep, not read"),
            Skip::TooManyFolders => format!("over {MAX_FOLDERS} folders, not read"),
            Skip::NotUtf8 => "its name is not UTF-8".into(),
            Skip::Unreadable => "a folder that cannot be read".into(),
        }
    }
}

/// What a walk of `posts/` meets, in the order of the folders as read (never sorted).
pub(crate) enum Walked<'a> {
    /// A post file by its path under `posts/` (`a.md`, `2020/a.md`, `bundle/index.md`),
    /// with its metadata (a link's target's), and whether it is a link.
    Post {
        rel: &'a str,
        meta: &'a fs::Metadata,
        link: bool,
    },
    /// A folder under `posts/` that holds posts (an ordinary one, or a bundle), before it
    /// is read: the watch follows it.
    Folder { path: &'a Path },
    /// Something that is not read as a post; `rel` ends with `/` for a folder.
    Skipped { rel: &'a str, why: Skip },
}

/// The post file that makes a folder a bundle (Hugo's leaf bundles, Zola's colocated
/// assets), if it holds one.
fn bundle_index(folder: &Path) -> Option<(&'static str, fs::Metadata, bool)> {
    ["index.md", "index.markdown"].into_iter().find_map(|name| {
        let path = folder.join(name);
        let meta = fs::symlink_metadata(&path).ok()?;
        let link = meta.file_type().is_symlink();
        let meta = if link {
            fs::metadata(&path).ok()?
        } else {
            meta
        };
        meta.is_file().then_some((name, meta, link))
    })
}

/// The folder of a bundle's post under `posts/` (`a/b` for `a/b/index.md`), if `rel` is
/// one: a folder's `index.md` is the post of the whole folder.
pub(crate) fn bundle_folder(rel: &str) -> Option<&str> {
    let (folder, name) = rel.rsplit_once('/')?;
    matches!(name, "index.md" | "index.markdown").then_some(folder)
}

/// The name a post's slug and date come from: a bundle's folder (`2024-01-05-trip` for
/// `2024-01-05-trip/index.md`), else the file's own name.
fn slug_name(rel: &str) -> &str {
    let own = bundle_folder(rel).unwrap_or(rel);
    own.rsplit('/').next().unwrap_or(own)
}

/// Walks `posts/` for post files, depth first, up to [`MAX_DEPTH`] folders deep and
/// [`MAX_FOLDERS`] folders in all. A folder with an `index.md` (or `index.markdown`) is one
/// post, whose other files are its assets and are not read; any other folder's post files
/// are posts of their own. Links to files are followed, links to folders are not (a loop
/// of them cannot be walked forever). Nothing is collected: `f` sees each thing as it is
/// found, and may stop the walk. Only an unreadable `posts/` itself is an error.
pub(crate) fn walk(
    root: &Path,
    f: &mut dyn FnMut(Walked<'_>) -> ControlFlow<()>,
) -> io::Result<()> {
    let entries = fs::read_dir(root)?;
    let mut rel = String::new();
    let mut folders = 0;
    let _ = walk_in(entries, &mut rel, 0, &mut folders, f);
    Ok(())
}

fn walk_in(
    entries: fs::ReadDir,
    rel: &mut String,
    depth: usize,
    folders: &mut usize,
    f: &mut dyn FnMut(Walked<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for entry in entries.flatten() {
        let mark = rel.len();
        let name = entry.file_name();
        let flow = match name.to_str() {
            Some(name) => {
                rel.push_str(name);
                visit(&entry, name, rel, depth, folders, f)
            }
            None => {
                rel.push_str(&name.to_string_lossy());
                f(Walked::Skipped {
                    rel,
                    why: Skip::NotUtf8,
                })
            }
        };
        rel.truncate(mark);
        flow?;
    }
    ControlFlow::Continue(())
}

fn visit(
    entry: &fs::DirEntry,
    name: &str,
    rel: &mut String,
    depth: usize,
    folders: &mut usize,
    f: &mut dyn FnMut(Walked<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let Ok(kind) = entry.file_type() else {
        return ControlFlow::Continue(());
    };
    let skip = |rel: &mut String, why, f: &mut dyn FnMut(Walked<'_>) -> ControlFlow<()>| {
        if kind.is_dir() {
            rel.push('/');
        }
        f(Walked::Skipped { rel, why })
    };
    if name.starts_with('.') || name.starts_with('#') {
        return skip(rel, Skip::Hidden, f);
    }
    if kind.is_dir() {
        if depth + 1 > MAX_DEPTH {
            return skip(rel, Skip::TooDeep, f);
        }
        if *folders >= MAX_FOLDERS {
            return skip(rel, Skip::TooManyFolders, f);
        }
        *folders += 1;
        let path = entry.path();
        if let Some((index, meta, link)) = bundle_index(&path) {
            f(Walked::Folder { path: &path })?;
            rel.push('/');
            rel.push_str(index);
            return f(Walked::Post {
                rel,
                meta: &meta,
                link,
            });
        }
        let Ok(entries) = fs::read_dir(&path) else {
            return skip(rel, Skip::Unreadable, f);
        };
        f(Walked::Folder { path: &path })?;
        rel.push('/');
        return walk_in(entries, rel, depth + 1, folders, f);
    }
    // A file's name is looked at before the file: the files that are not posts cost no
    // `stat` (a link's target must be looked at to tell a folder from a file).
    let link = kind.is_symlink();
    if !link && !is_post_file(name) {
        return skip(rel, not_a_post(name), f);
    }
    // DirEntry::metadata stats relative to the open folder (no path walk), which made
    // the scan of 10,000 files cheaper; a link is followed the slow way.
    let meta = if link {
        fs::metadata(entry.path())
    } else {
        entry.metadata()
    };
    match meta {
        Ok(m) if m.is_dir() => skip(rel, Skip::LinkedFolder, f),
        Ok(m) if m.is_file() && is_post_file(name) => f(Walked::Post {
            rel,
            meta: &m,
            link,
        }),
        Ok(m) if m.is_file() => skip(rel, not_a_post(name), f),
        _ => skip(rel, Skip::NotRegular, f),
    }
}

/// Why a file named `name` (not hidden) is not a post.
fn not_a_post(name: &str) -> Skip {
    match post_stem(name) {
        Some("_index") => Skip::Section,
        _ if name.ends_with('~') || name.ends_with(".swp") => Skip::Leftover,
        _ => Skip::NotPost,
    }
}

/// What [`still_a_post`] found in each folder of the last path it looked at: the folder's
/// path under `posts/`, and `None` when it is no real folder, else the name of its bundle's
/// post, if any. Paths come in order, so the next one mostly has the same folders, and a
/// folder costs its `stat`s once rather than once a file; it holds at most [`MAX_DEPTH`]
/// entries, whatever the site's size.
type SeenFolders = Vec<(String, Option<Option<&'static str>>)>;

/// Whether the file at `rel` under `posts/` is still a post as a walk would find it: a
/// post file, in real folders (not links) no deeper than [`MAX_DEPTH`], none of which is
/// a bundle but its own when it is that bundle's `index.md`. A flat `posts/` costs one
/// `stat` a file, as before folders were read.
fn still_a_post(root: &Path, rel: &str, seen: &mut SeenFolders) -> bool {
    let (folders, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if !is_post_file(name) {
        return false;
    }
    if !folders.is_empty() {
        let depth = folders.split('/').count();
        if depth > MAX_DEPTH {
            return false;
        }
        let own = bundle_folder(rel).is_some();
        let mut end = 0;
        for (i, seg) in folders.split('/').enumerate() {
            if seg.is_empty() || seg.starts_with(['.', '#']) {
                return false;
            }
            end += seg.len() + usize::from(i > 0);
            let prefix = &folders[..end];
            let found = match seen.get(i) {
                Some((p, found)) if p == prefix => *found,
                _ => {
                    seen.truncate(i);
                    let at = root.join(prefix);
                    let found = fs::symlink_metadata(&at)
                        .is_ok_and(|m| m.is_dir())
                        .then(|| bundle_index(&at).map(|(n, _, _)| n));
                    seen.push((prefix.to_string(), found));
                    found
                }
            };
            let Some(index) = found else {
                return false;
            };
            let last = i + 1 == depth;
            match (last, own) {
                (false, _) | (true, false) if index.is_some() => return false,
                (true, true) if index != Some(name) => return false,
                _ => {}
            }
        }
    }
    fs::metadata(root.join(rel)).is_ok_and(|m| m.is_file())
}

/// Splits `text` into (front matter, format, body). `---` opens YAML, `+++` opens TOML; the
/// closing fence is the same line. No opening fence: no front matter.
#[allow(clippy::type_complexity)] // A one-off shape; an alias would hide what it holds.
fn split_front_matter(text: &str) -> Result<(Option<(&str, bool)>, &str), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (fence, is_toml) in [("---", false), ("+++", true)] {
        let Some(rest) = text.strip_prefix(fence) else {
            continue;
        };
        let Some(rest) = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
        else {
            continue;
        };
        let mut pos = 0;
        for line in rest.split_inclusive('\n') {
            if line.trim_end() == fence {
                return Ok((Some((&rest[..pos], is_toml)), &rest[pos + line.len()..]));
            }
            pos += line.len();
        }
        return Err(format!("front matter opened with {fence} is never closed"));
    }
    Ok((None, text))
}

/// How deep front matter may nest. Real front matter nests two or three levels; YAML
/// nested 100,000 levels deep (200 KB of `[`) took the parser 58 s before it was accepted.
const MAX_FRONT_MATTER_DEPTH: usize = 64;

/// An upper bound on how deep `text` nests, found in one pass before any parser sees it,
/// and given up on as soon as it passes [`MAX_FRONT_MATTER_DEPTH`].
///
/// Every `[` and `{` counts as a level, in strings too, so a bound too high is possible
/// (65 unclosed brackets in a title) but one too low is not. So do, in YAML, each deeper
/// indentation and each `- ` or `? ` that opens a line (`- - - x` nests three sequences),
/// and in TOML each part of a dotted key or table name (`[a.b.c]` nests three tables).
fn nesting_depth(text: &str, is_toml: bool) -> usize {
    let mut flow: usize = 0;
    let mut indents: Vec<usize> = Vec::new();
    let mut table: usize = 0;
    let mut deepest: usize = 0;
    for line in text.lines() {
        let body = line.trim_start_matches([' ', '\t']);
        let mut rest = body;
        let mut block = 0;
        if body.is_empty() || body.starts_with('#') {
            continue;
        } else if is_toml {
            if flow == 0 && body.starts_with('[') {
                // A table header: its name's parts are levels, its brackets are not.
                let name = body.trim_start_matches('[');
                let name = &name[..name.find(']').unwrap_or(name.len())];
                table = name.matches('.').count() + 1;
                block = table;
                rest = "";
            } else if flow == 0
                && let Some(eq) = body.find('=')
            {
                block = table + body[..eq].matches('.').count() + 1;
                rest = &body[eq + 1..];
            }
        } else {
            if flow == 0 {
                let indent = line.len() - body.len();
                while indents.last().is_some_and(|&i| i > indent) {
                    indents.pop();
                }
                if indents.last().is_none_or(|&i| i < indent) {
                    indents.push(indent);
                }
            }
            block = indents.len();
            while let Some(r) = rest
                .strip_prefix(['-', '?'])
                .filter(|r| r.is_empty() || r.starts_with([' ', '\t']))
            {
                block += 1;
                rest = r.trim_start_matches([' ', '\t']);
            }
        }
        let mut line_deepest = flow;
        for b in rest.bytes() {
            match b {
                b'[' | b'{' => {
                    flow += 1;
                    line_deepest = line_deepest.max(flow);
                }
                b']' | b'}' => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        deepest = deepest.max(block + line_deepest);
        if deepest > MAX_FRONT_MATTER_DEPTH {
            break;
        }
    }
    deepest
}

fn parse_front_matter(text: &str, is_toml: bool) -> Result<FrontMatter, String> {
    if text.trim().is_empty() {
        return Ok(FrontMatter::default());
    }
    if nesting_depth(text, is_toml) > MAX_FRONT_MATTER_DEPTH {
        return Err(format!(
            "front matter nests deeper than {MAX_FRONT_MATTER_DEPTH} levels"
        ));
    }
    if is_toml {
        toml::from_str(text).map_err(|e| format!("TOML front matter: {}", e.message().trim()))
    } else {
        serde_norway::from_str(text).map_err(|e| format!("YAML front matter: {e}"))
    }
}

/// Makes a post from one file's name, text and modification time (Unix seconds). The error
/// is one line saying what is wrong, for the log and `nib check`. (The index reads files a
/// piece at a time through `parse_parts`; the tests take the whole post.)
#[cfg(test)]
pub(crate) fn parse(file_name: &str, text: &str, mtime: i64) -> Result<Post, String> {
    let (post, rendered) = parse_parts(file_name, text, mtime, &Templates::default(), None)?;
    Ok(finish(post, rendered))
}

/// [`parse`] for a file's text, which is dropped as soon as it is rendered: a large post
/// is then never held as text, page and summary at once. Given a `spill`, a long page is
/// handed to it in parts as it is written (see [`render::Spill`]), and the post is
/// `staged`. Pages are read with it too.
pub(crate) fn parse_file(
    file_name: &str,
    text: String,
    mtime: i64,
    shortcodes: &Templates,
    spill: Option<render::Spill<'_>>,
) -> Result<Post, String> {
    let (post, rendered) = parse_parts(file_name, &text, mtime, shortcodes, spill)?;
    drop(text);
    Ok(finish(post, rendered))
}

/// Everything of a post but its summary, HTML and hash, and its rendered body.
fn parse_parts(
    file_name: &str,
    text: &str,
    mtime: i64,
    shortcodes: &Templates,
    spill: Option<render::Spill<'_>>,
) -> Result<(Post, render::Rendered), String> {
    let (fm, body) = split_front_matter(text)?;
    let fm = match fm {
        Some((t, is_toml)) => parse_front_matter(t, is_toml)?,
        None => FrontMatter::default(),
    };
    let stem = post_stem(file_name).unwrap_or(file_name);
    let (name_date, name_slug) = match dates::split_date_prefix(stem) {
        Some((d, rest)) => (Some(d), rest),
        None => (None, stem),
    };
    let tz = dates::site_zone();
    let parse_date = |field: &str, v: &Option<DateValue>| -> Result<Option<(i64, i32)>, String> {
        match v {
            None => Ok(None),
            Some(DateValue(s)) => dates::parse_in(s, tz).map(Some).ok_or_else(|| {
                format!(
                    "{field}: {s:?} is not a date (use 2024-01-05, 2024-01-05 10:00 or RFC 3339)"
                )
            }),
        }
    };
    let dated = post_date(
        parse_date("date", &fm.date)?.or(parse_date("publish_date", &fm.publish_date)?),
        fm.path.as_deref(),
        name_date,
        mtime,
        tz,
    );
    let (date, offset) = (dated.ts, dated.offset);
    let updated = parse_date("updated", &fm.updated)?.map(|(ts, _)| ts);
    let publish = parse_date("publish_date", &fm.publish_date)?.map(|(ts, _)| ts);
    let expiry = parse_date("expiry_date", &fm.expiry_date)?.map(|(ts, _)| ts);
    // Pages, feeds and HTTP headers show four-digit years; a date outside them is a typo.
    let out_of_range = |field: &str, shown: Option<&DateValue>| {
        let what = match shown {
            Some(DateValue(s)) => format!("{s:?}"),
            None => dated.source.to_string(),
        };
        format!("{field}: {what} is outside the years 1 to 9998")
    };
    if !dates::in_range(date) {
        return Err(out_of_range(
            "date",
            fm.date.as_ref().or(fm.publish_date.as_ref()),
        ));
    }
    for (field, value, ts) in [
        ("updated", &fm.updated, updated),
        ("publish_date", &fm.publish_date, publish),
        ("expiry_date", &fm.expiry_date, expiry),
    ] {
        if ts.is_some_and(|t| !dates::in_range(t)) {
            return Err(out_of_range(field, value.as_ref()));
        }
    }

    // A leading `# Heading` becomes the title when front matter has none, and leaves the
    // body so the page does not show it twice.
    let mut body = body;
    let mut heading_title = None;
    if fm.title.is_none() {
        let trimmed = body.trim_start_matches(['\n', '\r']);
        if let Some(rest) = trimmed.strip_prefix("# ") {
            let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
            heading_title = Some(line.trim().trim_end_matches('#').trim().to_string());
            body = after;
        }
    }
    let slug_source = fm.slug.as_deref().unwrap_or(name_slug);
    let slug = slugify(slug_source);
    if slug.is_empty() {
        return Err(format!("no usable slug in {slug_source:?}"));
    }
    let title = fm
        .title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .or(heading_title.filter(|t| !t.is_empty()))
        .unwrap_or_else(|| slug.clone());
    let mut tags = fm.tags.unwrap_or_default();
    let taxonomies = fm.taxonomies.unwrap_or_default();
    let mut seen: HashSet<String> = tags.0.iter().map(|t| tag_key(t)).collect();
    for more in [fm.categories, taxonomies.tags, taxonomies.categories]
        .into_iter()
        .flatten()
    {
        for c in &more.0 {
            tags.add(&mut seen, c);
        }
    }
    let tags = tags.0;
    let description = fm
        .description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    let aliases = old_urls(
        [fm.aliases, fm.redirect_from]
            .into_iter()
            .flatten()
            .flat_map(|a| a.0)
            .chain(fm.path),
        &slug,
    );
    let image = [
        fm.image.and_then(ImageRef::url),
        fm.images.and_then(|i| i.0.into_iter().next()),
        fm.banner_image.and_then(ImageRef::url),
        fm.cover.and_then(|c| c.image).and_then(ImageRef::url),
    ]
    .into_iter()
    .flatten()
    .map(|i| i.trim().to_string())
    .find(|i| !i.is_empty());
    let post = Post {
        image,
        slug,
        title,
        date,
        updated,
        tags,
        draft: fm.draft.is_some_and(|f| f.0) || fm.published.is_some_and(|f| !f.0),
        offset,
        // Hugo and Jekyll publish a post at its date or its publishDate, whichever is later.
        publish_at: publish.map_or(date, |p| p.max(date)),
        expire_at: expiry,
        aliases,
        note: dated.note.map(str::to_string),
        description,
        summary: String::new(),
        html: String::new(),
        staged: None,
        page_hash: 0,
        hash: 0,
    };
    Ok((post, render::markdown_with(body, shortcodes, spill)?))
}

/// The shortcodes a post file shows as text, for `nib check`: (line in the file, problem).
/// A file whose front matter does not split has none to report (it is broken already).
pub(crate) fn shortcode_problems(text: &str, shortcodes: &Templates) -> Vec<(usize, String)> {
    let Ok((_, body)) = split_front_matter(text) else {
        return Vec::new();
    };
    // The body is the end of the text, so the lines before it are the front matter's.
    let before = text[..text.len() - body.len()].matches('\n').count();
    render::shortcode_problems(body, shortcodes)
        .into_iter()
        .map(|f| (before + f.line, f.problem))
        .collect()
}

/// Where a post's date came from.
struct Dated {
    ts: i64,
    /// The offset east of UTC it was written in (the site's for a date without one).
    offset: i32,
    /// What the date is, for a message about it.
    source: &'static str,
    /// A warning for `nib check` when the date is only the file's modification time.
    note: Option<&'static str>,
}

/// A post's date: the one written in front matter (`date`, else `publishDate`), else the
/// date Zola's `path` starts with, else the file name's `YYYY-MM-DD-`, else the file's
/// modification time, which copying a blog resets, so `nib check` warns about it. The
/// dates without a time are local midnights in the site's zone (`tz`).
fn post_date(
    written: Option<(i64, i32)>,
    path: Option<&str>,
    name_date: Option<i64>,
    mtime: i64,
    tz: &dates::Zone,
) -> Dated {
    let (ts, offset, source, note) = if let Some((ts, offset)) = written {
        (ts, offset, "the date", None)
    } else if let Some(d) = path.and_then(dates::path_date) {
        let (ts, offset) = tz.local(d);
        (ts, offset, "the path's date", None)
    } else if let Some(d) = name_date {
        let (ts, offset) = tz.local(d);
        (ts, offset, "the file name's date", None)
    } else {
        (
            mtime,
            tz.offset_at(mtime),
            "the file's modification time",
            Some(
                "no date in front matter, path or file name: dated by the file's modification time",
            ),
        )
    };
    Dated {
        ts,
        offset,
        source,
        note,
    }
}

/// The keys ([`oldurls::alias_key`]) of a post's old URLs, without its own URL, repeats
/// or paths that cannot be an old URL. An old URL written percent-encoded (`/caf%C3%A9/`)
/// is decoded, as request paths are before they are looked up.
fn old_urls(urls: impl Iterator<Item = String>, slug: &str) -> Vec<String> {
    let own = format!("posts/{slug}");
    let mut out: Vec<String> = Vec::new();
    let decoded = urls.map(
        |u| match percent_encoding::percent_decode_str(&u).decode_utf8() {
            Ok(d) => d.into_owned(),
            Err(_) => u,
        },
    );
    for key in decoded.filter_map(|u| oldurls::alias_key(&u)) {
        if key != own && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// Completes a post from its rendered body: the summary is what stands before
/// `<!-- more -->`, else the description, else the first paragraph.
fn finish(mut post: Post, rendered: render::Rendered) -> Post {
    let summary = rendered.summary().map(str::to_string);
    post.summary = match (summary, &post.description) {
        (Some(s), _) => s,
        (None, Some(d)) => format!("<p>{}</p>", render::escape(d)),
        (None, None) => rendered.first_paragraph,
    };
    if post.image.is_none() {
        post.image = rendered.first_image;
    }
    post.page_hash = rendered.hash;
    if rendered.handed_on {
        post.staged = Some(rendered.len);
    } else {
        post.html = rendered.html;
    }
    post.hash = post_hash(&post);
    post
}

fn post_hash(p: &Post) -> u64 {
    let mut h = Fnv::new();
    for s in [
        &p.slug,
        &p.title,
        &p.summary,
        p.description.as_deref().unwrap_or(""),
        p.image.as_deref().unwrap_or(""),
    ] {
        h.write(s.as_bytes());
        h.write(&[0]);
    }
    for t in &p.tags {
        h.write(t.as_bytes());
        h.write(&[1]);
    }
    for a in &p.aliases {
        h.write(a.as_bytes());
        h.write(&[2]);
    }
    h.write(&p.page_hash.to_le_bytes());
    h.write(&p.date.to_le_bytes());
    h.write(&p.updated.unwrap_or(-1).to_le_bytes());
    h.write(&[p.draft as u8]);
    h.write(&p.offset.to_le_bytes());
    h.write(&p.publish_at.to_le_bytes());
    h.write(&p.expire_at.unwrap_or(-1).to_le_bytes());
    h.finish()
}

/// A file's stamp for change detection: mtime in nanoseconds (an edit within the same second
/// is still seen) and size.
pub(crate) fn stamp_of(meta: &fs::Metadata) -> FileStamp {
    let mtime = dates::mtime(meta).as_nanos() as i64;
    FileStamp {
        mtime,
        size: meta.len() as i64,
    }
}

/// Keeps the database's post index in step with the files. Holds only a fingerprint of the
/// last scan, never the file list, so its memory does not grow with the site.
pub(crate) struct Index {
    fingerprint: Option<u64>,
    last_check: Option<Instant>,
    /// The watch on `posts/` that lets a check skip the scan; set up by the first
    /// [`Index::refresh_if_due`], and again after it is lost.
    watch: Option<Watch>,
    /// Whether the last scan followed a symlinked post: a change to its target is not
    /// seen by the watch, so every check scans.
    symlinks: bool,
    /// Whether the last scan met a folder the watch does not follow (past
    /// [`MAX_WATCHED`]): a change in it sends no event, so every check scans.
    unwatched: bool,
    /// Whether a failed watch has been logged already (once until one works again).
    watch_warned: bool,
    /// Set when a scan or an update of the index failed: the watch's events are used up,
    /// so the next check must scan anyway.
    must_scan: bool,
    /// When a check last scanned; see [`SCAN_AT_LEAST_EVERY`].
    last_scan_at: Option<Instant>,
    /// How long the last scan that found no change took, for the start-up log and bench.
    pub last_scan: Duration,
    /// Do not log broken files (`nib check` reports them itself).
    pub quiet: bool,
    /// The largest post file read, in bytes (`max_post_kb`); a larger one is broken.
    pub max_post_bytes: u64,
    /// Set while a pass over changed files is under way: the step that ran out of its
    /// [`STEP_BUDGET`] left files for the next, so the next check comes at once.
    pending: bool,
    /// Whether a step of the pass under way has changed the public site.
    pass_changed: bool,
    /// [`STEP_BUDGET`], but for tests.
    step_budget: Duration,
    /// The site's shortcode templates, which every post is rendered with; the index is
    /// stale when they differ from those it was rendered with (see [`Index::version`]).
    pub shortcodes: Templates,
    /// The watch on `pages/` (beside `posts/`, read flat, so one inotify watch): a check
    /// reads the folder only after an event, without a watch (no `pages/` yet), or after
    /// [`SCAN_AT_LEAST_EVERY`].
    pages_watch: Option<Watch>,
    /// When `pages/` was last read.
    pages_scan_at: Option<Instant>,
}

/// What a refresh, or one step of one, did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Refresh {
    pub parsed: usize,
    pub removed: usize,
    pub broken: usize,
    pub site_changed: bool,
}

/// How long one step of a refresh goes on reading changed files before it leaves the rest
/// for the next: the loop serves between steps, so a thousand changed posts (or one slow
/// one among them) never hold a request for more than about this long. A step always
/// reads at least one file, and `max_post_kb` bounds how long that takes.
/// How many files a pass indexes between drops of its code pages (see `reconcile`).
const CODE_DROP_EVERY: usize = 500;

pub(crate) const STEP_BUDGET: Duration = Duration::from_millis(50);

/// `max_post_kb`'s default, in bytes.
pub(crate) const DEFAULT_MAX_POST_BYTES: u64 = 1024 * 1024;

/// How often the request loop looks at `posts/`. A change is seen by the first check after
/// it, so any request made 1.5 s after a change sees it: inside the 2 s the contract (docs/contract.md) promises.
/// A check that scans stats every post file (about 20 ms for 10,000 posts on the bench
/// machine); without a watch every check scans, and this interval keeps that under 1.5%
/// of a busy loop's time.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(1500);

/// The longest a watched directory goes without a scan: a change the kernel does not
/// report (a write through a hard link in another directory, say) still shows within a
/// minute, and a scan a minute costs a 10,000-post site 0.03% of the loop's time.
const SCAN_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            fingerprint: None,
            last_check: None,
            watch: None,
            symlinks: false,
            unwatched: false,
            watch_warned: false,
            must_scan: false,
            last_scan_at: None,
            last_scan: Duration::ZERO,
            quiet: false,
            max_post_bytes: DEFAULT_MAX_POST_BYTES,
            pending: false,
            pass_changed: false,
            step_budget: STEP_BUDGET,
            shortcodes: Templates::default(),
            pages_watch: None,
            pages_scan_at: None,
        }
    }

    /// Brings the standalone pages of `pages/` (beside `dir`) up to date when its watch
    /// saw a change, when there is no watch, when a minute passed, or when `force`d.
    fn refresh_pages(&mut self, db: &Db, dir: &Path, force: bool) {
        let pages = crate::pages::pages_dir(dir);
        let due = force
            || match self.pages_watch.as_ref().map(|w| w.changed(&pages)) {
                Some(Ok(changed)) => {
                    changed
                        || self
                            .pages_scan_at
                            .is_none_or(|t| t.elapsed() >= SCAN_AT_LEAST_EVERY)
                }
                Some(Err(_)) => {
                    self.pages_watch = None;
                    true
                }
                None => true,
            };
        if !due {
            return;
        }
        if self.pages_watch.is_none() {
            // Set up before the read, so a change during it is an event for the next
            // check. No `pages/` (most sites) is no watch: each check then costs one
            // failed `stat` and `opendir`, and a folder made later is found.
            self.pages_watch = Watch::new(&pages).ok();
        }
        self.pages_scan_at = Some(Instant::now());
        if let Err(e) = crate::pages::reconcile(
            db,
            &pages,
            &self.version(),
            self.quiet,
            self.max_post_bytes,
            &self.shortcodes,
        ) {
            eprintln!("nib: indexing {}: {e}", pages.display());
            self.pages_scan_at = None;
        }
    }

    /// The version of the rendering the index holds: nib's, and the shortcode templates'.
    fn version(&self) -> String {
        match self.shortcodes.hash() {
            0 => INDEX_VERSION.to_string(),
            h => format!("{INDEX_VERSION}+{h:016x}"),
        }
    }

    /// Whether the request loop's next call to [`Index::refresh_if_due`] checks: always
    /// while a refresh has steps left.
    pub fn is_due(&self) -> bool {
        self.pending || self.last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY)
    }

    /// The request loop's check, at most every [`CHECK_EVERY`]: scans `posts/` when its
    /// watch saw an event since the last check, or when there is no watch to ask.
    ///
    /// A scan of 10,000 posts stalled the loop for 20 ms every check, which every request
    /// queued behind it waited out; with the watch, a check with nothing to find is one
    /// `read` that returns at once. A check that finds changes reads them a step of
    /// [`STEP_BUDGET`] at a time, one step per call.
    pub fn refresh_if_due(&mut self, db: &Db, dir: &Path) -> Refresh {
        if !self.is_due() {
            return Refresh::default();
        }
        if self.pending {
            // Events that came meanwhile wait in the watch for the check after the pass.
            return self.step(db, dir);
        }
        self.follow_shortcodes();
        self.refresh_pages(db, dir, false);
        let quiet = match self.watch.as_ref().map(|w| w.changed(dir)) {
            Some(Ok(changed)) => {
                !changed
                    && !self.symlinks
                    && !self.unwatched
                    && !self.must_scan
                    && self
                        .last_scan_at
                        .is_some_and(|t| t.elapsed() < SCAN_AT_LEAST_EVERY)
            }
            Some(Err(e)) => {
                eprintln!(
                    "nib: {}: {e}; scanning it and watching it afresh",
                    dir.display()
                );
                self.watch = None;
                self.watch_warned = false;
                false
            }
            None => false,
        };
        if quiet {
            self.last_check = Some(Instant::now());
            return Refresh::default();
        }
        if self.watch.is_none() {
            self.watch(dir);
        }
        self.step(db, dir)
    }

    /// Reads the site's shortcode templates again when their folder changed. When they
    /// differ, the index's version no longer matches the stored one, so the next step
    /// forgets every file's stamp and renders every post again.
    fn follow_shortcodes(&mut self) {
        let Some(fresh) = self.shortcodes.reloaded() else {
            return;
        };
        if fresh.hash() != self.shortcodes.hash() {
            self.fingerprint = None;
            self.must_scan = true;
        }
        self.shortcodes = fresh;
    }

    /// Sets up the watch on `dir` that lets [`Index::refresh_if_due`] skip scans. Called
    /// before a scan: a change during or after the scan is then an event for the next
    /// check, and one before it is found by the scan. Without a watch (inotify refused,
    /// the directory missing) every check scans, and the next check tries again.
    pub fn watch(&mut self, dir: &Path) {
        match Watch::new(dir) {
            Ok(w) => {
                self.watch = Some(w);
                self.watch_warned = false;
            }
            Err(e) if !self.watch_warned => {
                eprintln!(
                    "nib: watching {}: {e}; every check scans every post file",
                    dir.display()
                );
                self.watch_warned = true;
            }
            Err(_) => {}
        }
    }

    /// Brings the index fully up to date: for start-up and `nib check`, which must know
    /// every post before they serve or report. Its steps have no budget (a pass in steps
    /// walks the directory again at each), and it finishes a pass the loop began.
    pub fn refresh(&mut self, db: &Db, dir: &Path) -> Refresh {
        let budget = std::mem::replace(&mut self.step_budget, Duration::MAX);
        self.refresh_pages(db, dir, true);
        let mut total = self.step(db, dir);
        while self.pending {
            let r = self.step(db, dir);
            total.parsed += r.parsed;
            total.removed += r.removed;
            total.broken = r.broken;
            total.site_changed |= r.site_changed;
        }
        self.step_budget = budget;
        total
    }

    /// One step of a refresh. Stats every post file; when the combined fingerprint of
    /// names, mtimes and sizes differs from the last scan, re-reads what changed, for up to
    /// [`STEP_BUDGET`], and once nothing is left drops what is gone. Problems are logged,
    /// one line per file, and never stop the scan.
    ///
    /// The pass keeps no list of what is left: each step walks the directory again and
    /// skips the files whose stamps the index already holds, the ones read by the steps
    /// before it among them.
    fn step(&mut self, db: &Db, dir: &Path) -> Refresh {
        let started = Instant::now();
        self.last_check = Some(started);
        self.last_scan_at = Some(started);
        // Cleared again below once the index is known to match the directory.
        self.must_scan = true;
        if !self.pending {
            let mut unwatched = false;
            let mut watch = self.watch.take();
            if let Some(w) = watch.as_mut() {
                w.folders = 0;
            }
            let scanned = scan_fingerprint(dir, &mut |folder| {
                if let Some(w) = watch.as_mut() {
                    unwatched |= !w.follow(folder);
                }
            });
            self.watch = watch;
            self.unwatched = unwatched;
            let fingerprint = match scanned {
                Ok((f, symlinks)) => {
                    self.symlinks = symlinks;
                    f
                }
                // No directory, no posts: the update below removes them all.
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => {
                    eprintln!("nib: {}: {e}", dir.display());
                    // A directory that cannot be read for now (no descriptor to spare,
                    // say) says nothing about the posts: the index stays until a scan
                    // works.
                    return Refresh::default();
                }
            };
            if self.fingerprint.is_none() {
                // A fresh process starts from the last scan's fingerprint, so a warm start
                // with nothing changed re-reads nothing (and allocates nothing per file).
                self.fingerprint = stored_fingerprint(db, &self.version());
            }
            if self.fingerprint == Some(fingerprint) {
                self.last_scan = started.elapsed();
                self.must_scan = false;
                return Refresh::default();
            }
            self.pass_changed = false;
        }
        let limits = Limits {
            quiet: self.quiet,
            max_bytes: self.max_post_bytes,
            until: started.checked_add(self.step_budget),
            shortcodes: &self.shortcodes,
        };
        match reconcile(db, dir, &limits, self.pass_changed) {
            Ok((r, Some(fingerprint))) => {
                self.fingerprint = Some(fingerprint);
                self.pending = false;
                self.must_scan = false;
                if let Err(e) = db.meta_set(
                    FINGERPRINT_KEY,
                    &format!("{} {fingerprint}", self.version()),
                ) {
                    eprintln!("nib: saving the posts fingerprint: {e}");
                }
                r
            }
            Ok((r, None)) => {
                self.pending = true;
                self.pass_changed |= r.site_changed;
                r
            }
            Err(e) => {
                // The fingerprint is left as it was, so the next check tries again.
                eprintln!("nib: indexing {}: {e}", dir.display());
                self.pending = false;
                Refresh::default()
            }
        }
    }
}

/// Where the last scan's fingerprint is kept, with the version of the code that rendered
/// the index: a new nib renders differently, so its first start re-renders every post.
/// (`render-2`: posts dated outside the years 1 to 9998, or with front matter nested
/// deeper than 64, that an older nib stored are refused now; `render-3`: shortcodes and
/// math; `render-4`: a block too costly to parse breaks its post, and code blocks over
/// 64 KB are not highlighted; `render-5`: long tables are cut between rows, so a post
/// refused for one is published, and a post's hash takes its page's hash.) The site's
/// shortcode templates are part of the version too, so a change to them re-renders every
/// post at the next start or reload.
const FINGERPRINT_KEY: &str = "posts_fingerprint";
/// (`tree-1`: a file that lost its slug to another is published under a dated slug now,
/// and a bundle's summary has its relative URLs rebased.)
const INDEX_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "/render-5/tree-1");

/// The fingerprint the index was last brought up to date with, when it was by this
/// version of nib. A different version forgets every file's stamp, so each is parsed again.
fn stored_fingerprint(db: &Db, current: &str) -> Option<u64> {
    let stored = db.meta_get(FINGERPRINT_KEY).ok().flatten()?;
    match stored.split_once(' ') {
        Some((version, fp)) if version == current => fp.parse().ok(),
        _ => {
            if let Err(e) = db.forget_post_stamps() {
                eprintln!("nib: resetting the post index: {e}");
            }
            None
        }
    }
}

/// An order-independent hash of every post file's path, mtime and size, and whether any
/// of them is a link. `folder` is called with every folder that holds posts, before it is
/// read, so the watch can follow it.
fn scan_fingerprint(dir: &Path, folder: &mut dyn FnMut(&Path)) -> std::io::Result<(u64, bool)> {
    let mut sum: u64 = FINGERPRINT_SEED;
    let mut symlinks = false;
    walk(dir, &mut |found| {
        match found {
            Walked::Post { rel, meta, link } => {
                symlinks |= link;
                sum = sum.wrapping_add(file_hash(rel, stamp_of(meta)));
            }
            Walked::Folder { path } => folder(path),
            Walked::Skipped { .. } => {}
        }
        ControlFlow::Continue(())
    })?;
    Ok((sum, symlinks))
}

const FINGERPRINT_SEED: u64 = 0x9e37_79b9;

/// One file's part of the fingerprint: a sum of these is the same in any order.
fn file_hash(name: &str, s: FileStamp) -> u64 {
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    h.write(&s.mtime.to_le_bytes());
    h.write(&s.size.to_le_bytes());
    h.finish()
}

/// An inotify watch on the posts directory, asked without blocking whether anything in it
/// changed. Not a watcher thread: the descriptor only gathers events until the request
/// loop's next check reads them, and a check then scans as before, so the watch decides
/// when to look, never what is found.
struct Watch {
    fd: OwnedFd,
    /// The watched directory's device and inode. inotify watches an inode, not a path: a
    /// `posts/` reached through a symlink that is switched, or a site folder moved aside
    /// for a new one, sends the old inode no event, so each check compares the two.
    dir: (u64, u64),
    /// The watch descriptor of `posts/` itself, whose end is the end of the watch; the
    /// others are folders inside it.
    root: i32,
    /// How many folders under `posts/` the last scan asked the watch to follow; past
    /// [`MAX_WATCHED`] the rest are not, and every check scans.
    folders: usize,
}

/// How many folders under `posts/` the watch follows (each is an inotify watch, of which a
/// user has 8,192 on older kernels, shared with every other program). A site with more
/// folders is scanned at every check, as one without a watch.
const MAX_WATCHED: usize = 1_000;

/// File systems whose changes inotify reports whoever makes them. On others (NFS, SMB,
/// FUSE, 9p and the like) a change made by another machine or by the host sends no event,
/// so there every check scans.
const LOCAL_FILE_SYSTEMS: [i64; 9] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs (containers)
    0x2FC1_2FC1, // zfs
    0xF2F5_2010, // f2fs
    0x5265_4973, // reiserfs
    0x3153_464A, // jfs
];

/// The device and inode of `dir`, following symlinks as a scan does.
fn identity(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dir)?;
    Ok((m.dev(), m.ino()))
}

impl Watch {
    /// Every event that can change a post file's name, content or times, and the ends of
    /// the watch itself (the directory removed or moved away).
    const EVENTS: u32 = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_ATTRIB
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_ONLYDIR;

    fn new(dir: &Path) -> io::Result<Watch> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        let identity = identity(dir)?;
        let fs_type = sys::fs_type(&path)?;
        if !LOCAL_FILE_SYSTEMS.contains(&fs_type) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("its file system (type {fs_type:#x}) may not report changes"),
            ));
        }
        // Owned from here on, so closed on every path, and close-on-exec, so a restart
        // does not inherit it.
        let fd = sys::inotify_init()?;
        let root = sys::inotify_add_watch(fd.as_fd(), &path, Self::EVENTS)?;
        Ok(Watch {
            fd,
            root,
            dir: identity,
            folders: 0,
        })
    }

    /// Follows a folder under `posts/` too, so a post added, edited or removed in it is an
    /// event. Asking again for a folder already followed changes nothing (inotify keeps
    /// one watch per inode), so every scan asks for every folder it meets, new ones among
    /// them; a removed folder's watch ends by itself. False when the folder is not
    /// followed (past [`MAX_WATCHED`], or refused): then every check must scan.
    fn follow(&mut self, folder: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.folders += 1;
        if self.folders > MAX_WATCHED {
            return false;
        }
        let Ok(path) = std::ffi::CString::new(folder.as_os_str().as_bytes()) else {
            return false;
        };
        sys::inotify_add_watch(self.fd.as_fd(), &path, Self::EVENTS).is_ok()
    }

    /// Whether any event came since the last call (an overflowed queue counts as one).
    /// An error when the watch has ended, or `dir` is no longer the directory watched, and
    /// it must be set up again.
    fn changed(&self, dir: &Path) -> io::Result<bool> {
        if identity(dir).ok() != Some(self.dir) {
            return Err(io::Error::other("the directory was replaced"));
        }
        let mut buf = [0u8; 4096];
        let mut changed = false;
        loop {
            let n = match sys::read(self.fd.as_fd(), &mut buf) {
                Ok(0) => return Ok(changed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Each event: wd (4 bytes), mask (4), cookie (4), name length (4), name.
            let mut at = 0;
            while at + 16 <= n {
                let word =
                    |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                let mask = word(at + 4);
                // The end of `posts/`'s own watch is the end of the watch (a new folder
                // may even have its inode); the end of another is a folder inside it
                // going away, a change like any other.
                if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0
                    && word(at) as i32 == self.root
                {
                    return Err(io::Error::other("the directory was removed or moved"));
                }
                changed = true;
                at += 16 + word(at + 12) as usize;
            }
        }
    }
}

/// What one step of a refresh may do.
struct Limits<'a> {
    /// Whether to keep quiet about broken files.
    quiet: bool,
    /// The largest post file to read, in bytes.
    max_bytes: u64,
    /// When the step stops reading changed files (never, when `None`).
    until: Option<Instant>,
    /// The templates posts are rendered with.
    shortcodes: &'a Templates,
}

/// One step: reads the files whose stamps differ from the index until `limits.until`,
/// then stops at the next one. When none was left, it also drops the files that are
/// gone, and returns the directory's fingerprint to remember. `changed_before` says
/// whether earlier steps of this pass changed the site.
fn reconcile(
    db: &Db,
    dir: &Path,
    limits: &Limits,
    changed_before: bool,
) -> rusqlite::Result<(Refresh, Option<u64>)> {
    let mut out = Refresh::default();
    let now = dates::now();
    db.write_transaction(|| {
        let mut left = false;
        // The folder is walked as it comes, never collected: a sorted list of 10,000 names
        // cost 400 KB at every change. Which of two files claiming one slug wins is
        // settled by date and path in `index_file`, so the walk's order does not matter.
        // A missing folder has the fingerprint a scan gives it.
        let mut fingerprint = FINGERPRINT_SEED;
        let mut failed = None;
        let walked = walk(dir, &mut |found| {
            let Walked::Post { rel, meta, .. } = found else {
                return ControlFlow::Continue(());
            };
            let stamp = stamp_of(meta);
            fingerprint = fingerprint.wrapping_add(file_hash(rel, stamp));
            let mut step = || -> rusqlite::Result<ControlFlow<()>> {
                if db.post_stamp(rel)? == Some(stamp) {
                    return Ok(ControlFlow::Continue(()));
                }
                if out.parsed > 0 && limits.until.is_some_and(|t| Instant::now() >= t) {
                    left = true;
                    return Ok(ControlFlow::Break(()));
                }
                out.parsed += 1;
                // A long pass (the first index of a large site) drops the code pages it
                // ran now and then: what only started it (settings, migrations, the walk's
                // first folders) leaves, and what indexing runs comes back at once. Its
                // peak is then the code of one stretch, not of all of start-up.
                if out.parsed % CODE_DROP_EVERY == 0 {
                    sys::drop_code_pages();
                }
                if index_file(db, dir, rel, stamp, now, limits)? {
                    out.site_changed = true;
                }
                Ok(ControlFlow::Continue(()))
            };
            step().unwrap_or_else(|e| {
                failed = Some(e);
                ControlFlow::Break(())
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if walked.is_err() {
            fingerprint = 0;
        }
        if !left {
            let mut gone = Vec::new();
            let mut seen = SeenFolders::new();
            db.each_post_path(|p| {
                if !still_a_post(dir, p, &mut seen) {
                    gone.push(p.to_string());
                }
            })?;
            for p in gone {
                out.removed += 1;
                out.site_changed |= db.delete_post(&p)?;
            }
            // A file that lost its slug to another may be free to use it now, or must take
            // another. One round can set aside a file an earlier one of the round took,
            // so rounds go on while they change something, a few at most.
            let mut again = out.site_changed || changed_before;
            for _ in 0..4 {
                if !again {
                    break;
                }
                again = false;
                for p in db.contested_paths()? {
                    if let Ok(meta) = fs::metadata(dir.join(&p)) {
                        again |= index_file(db, dir, &p, stamp_of(&meta), now, limits)?;
                    }
                }
                out.site_changed |= again;
            }
        }
        if out.site_changed {
            // Each step that changed the site moves its version, so no page kept from
            // before the step is served as current.
            db.bump_site_version(now)?;
        }
        out.broken = db.count_broken()? as usize;
        Ok((out, (!left).then_some(fingerprint)))
    })
}

/// A post file's text, unless it is over `max_bytes` (by its stamp, before reading it, or
/// by what reading finds, should it have grown since) or not UTF-8.
pub(crate) fn read_post(path: &Path, stamp: FileStamp, max_bytes: u64) -> Result<String, String> {
    use std::io::Read;
    let too_big = |bytes: u64| {
        format!(
            "{} KB is over max_post_kb = {}",
            bytes.div_ceil(1024),
            max_bytes / 1024
        )
    };
    if stamp.size as u64 > max_bytes {
        return Err(too_big(stamp.size as u64));
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    // Sized from the stamp, so the text is not copied as it grows.
    let mut bytes = Vec::with_capacity(stamp.size.max(0) as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

/// Reads, parses and stores one file, by its path under `posts/`. Returns whether the
/// public site changed.
///
/// Of two public posts claiming one slug, both are published: the earlier (by date, then
/// by path) keeps the slug, whichever was seen first, and the later takes its day in
/// front (`2024-02-01-slug`), with a note naming the other file for `nib check`. Only
/// when that dated slug is taken too is the later one refused.
fn index_file(
    db: &Db,
    dir: &Path,
    rel: &str,
    stamp: FileStamp,
    now: i64,
    limits: &Limits,
) -> rusqlite::Result<bool> {
    let path = dir.join(rel);
    let quiet = limits.quiet;
    // A long page goes to the database in parts as it is rendered; the store's own error,
    // if any, is this function's, not the post's.
    let mut staged = false;
    let mut store_error = None;
    let mut spill = |part: &str| {
        staged = true;
        db.stage_page(part).map_err(|e| {
            let problem = format!("cannot store its page: {e}");
            store_error = Some(e);
            problem
        })
    };
    let parsed = read_post(&path, stamp, limits.max_bytes).and_then(|text| {
        parse_file(
            slug_name(rel),
            text,
            stamp.mtime.div_euclid(1_000_000_000),
            limits.shortcodes,
            Some(&mut spill),
        )
    });
    if let Some(e) = store_error {
        return Err(e);
    }
    let mut site_changed = false;
    let mut note = None;
    let post = match parsed {
        // A draft is served nowhere, so it competes for no slug.
        Ok(post) if post.draft => Ok(post),
        Ok(mut post) => {
            // The dated slug is made only when the slug is taken: most posts never need it.
            let mut dated = String::new();
            let mut taken = Vec::new();
            let mut chosen = None;
            for i in 0..2 {
                if i == 1 {
                    // The day written, as pages show it.
                    dated = format!("{}-{}", dates::ymd_at(post.date, post.offset), post.slug);
                }
                let slug = if i == 0 { &post.slug } else { &dated };
                match db.slug_owner(slug, rel)? {
                    Some((other, date)) if (date, other.as_str()) < (post.date, rel) => {
                        taken.push((slug.clone(), other));
                    }
                    Some((other, _)) => {
                        // The later post gives the slug up. It is set aside until the end
                        // of the pass, which indexes it again (see `Db::contested_paths`)
                        // and finds it another.
                        let problem = format!("duplicate slug {slug:?} (also used by {rel})");
                        let other_stamp = db
                            .post_stamp(&other)?
                            .unwrap_or(FileStamp { mtime: 0, size: 0 });
                        site_changed = db.mark_broken(&other, other_stamp, &problem)?;
                        db.set_post_note(&other, None)?;
                        chosen = Some(i);
                        break;
                    }
                    None => {
                        chosen = Some(i);
                        break;
                    }
                }
            }
            match chosen {
                Some(0) => Ok(post),
                Some(_) => {
                    note = Some(format!(
                        "published as /posts/{dated}/: slug {:?} is also used by {}",
                        post.slug, taken[0].1
                    ));
                    post.slug = dated;
                    post.hash = post_hash(&post);
                    Ok(post)
                }
                None => Err(format!(
                    "duplicate slug {:?} (also used by {}), and {:?} is used by {}",
                    taken[0].0, taken[0].1, taken[1].0, taken[1].1
                )),
            }
        }
        Err(problem) => Err(problem),
    };
    let changed = match post {
        Ok(mut post) => {
            if bundle_folder(rel).is_some() {
                // A bundle's page is at /posts/SLUG/, beside its files, so its relative
                // links work there; the summary is also shown on the front page, tag
                // pages and feeds, where they must name the post's folder.
                let base = format!("/posts/{}/", crate::routes::encode_component(&post.slug));
                if let Some(summary) = rebase_relative_urls(&post.summary, &base) {
                    post.summary = summary;
                    post.hash = post_hash(&post);
                }
            }
            let changed = db.upsert_post(rel, stamp, post, now)?;
            if changed
                && !quiet
                && let Some(note) = &note
            {
                eprintln!("nib: {}: {note}", path.display());
            }
            changed
        }
        Err(problem) => {
            if !quiet {
                eprintln!("nib: skipping {}: {problem}", path.display());
            }
            db.mark_broken(rel, stamp, &problem)?
        }
    };
    if staged {
        // Joined into the post's row by now, or not wanted: the post was refused.
        db.drop_staged()?;
    }
    db.set_post_note(rel, note.as_deref())?;
    Ok(changed || site_changed)
}

/// Makes every post be read again when the site's `timezone` is not the one the index was
/// built with: the instants of dates written without an offset depend on it. Called
/// before the first refresh of a process.
pub(crate) fn follow_timezone(db: &Db, zone: &str) -> rusqlite::Result<()> {
    const KEY: &str = "posts_timezone";
    let now = zone.to_string();
    if db.meta_get(KEY)?.as_deref() == Some(now.as_str()) {
        return Ok(());
    }
    if db.meta_get(KEY)?.is_some() {
        db.forget_post_stamps()?;
        // The stored fingerprint would otherwise say nothing changed, and skip the scan.
        db.meta_set(FINGERPRINT_KEY, "")?;
    }
    db.meta_set(KEY, &now)
}

/// The old URLs (`aliases`, `redirect_from`, `path`) that a route, a post, a file of
/// `static_dir` or a short link (in the live database at `live_db`) answers before them,
/// or that another file declared first, as (file, problem naming both), for `nib check`:
/// the old URL would never lead to the post.
pub(crate) fn alias_problems(
    db: &Db,
    live_db: &Path,
    static_dir: &Path,
) -> rusqlite::Result<Vec<(String, String)>> {
    use crate::routes::Route;
    let mut out = Vec::new();
    let aliases = db.aliases()?;
    let codes: Vec<&str> = aliases
        .iter()
        .filter_map(|(a, _)| match Route::parse(&format!("/{a}")) {
            Route::Short(_) => Some(a.as_str()),
            _ => None,
        })
        .collect();
    let links = Db::short_links_in(live_db, &codes);
    // Sorted by old URL, then file: the first file of each old URL answers it.
    let mut first: Option<&(String, String)> = None;
    for entry in &aliases {
        match first {
            Some((alias, path)) if *alias == entry.0 => out.push((
                entry.1.clone(),
                format!("old URL /{alias} is also declared by {path}, which it leads to"),
            )),
            _ => first = Some(entry),
        }
    }
    for (alias, path) in &aliases {
        let bare = format!("/{alias}");
        let slashed = format!("/{alias}/");
        let mut problem = None;
        for url in [&slashed, &bare] {
            problem = match Route::parse(url) {
                Route::NotFound | Route::Preview(_) => None,
                Route::Short(code) if links.iter().any(|l| l == code) => Some(format!(
                    "old URL {url} is the short link /{code}, which answers it instead"
                )),
                Route::Short(code) | Route::Page(code) if db.has_page(code)? => Some(format!(
                    "old URL {url} is the page /{code}/, which answers it instead"
                )),
                Route::Short(_) | Route::Page(_) => None,
                Route::Post(slug) if db.has_post(slug)? => Some(format!(
                    "old URL {url} is the post /posts/{slug}/, which answers it instead"
                )),
                Route::Post(_) | Route::Moved(_) if alias.starts_with("posts/") => None,
                _ => Some(format!(
                    "old URL {url} is nib's route {url}, which answers it instead"
                )),
            };
            if problem.is_some() {
                break;
            }
        }
        // `alias_key` made the key of plain segments, so the join stays inside the folder.
        // A file of the old site copied into `static/` (`old.html`, `old/index.html`).
        let files = [
            alias.clone(),
            format!("{alias}.html"),
            format!("{alias}/index.html"),
        ];
        if problem.is_none()
            && let Some(file) = files.iter().find(|f| static_dir.join(f).is_file())
        {
            problem = Some(format!(
                "old URL /{file} is the file static/{file}, which answers it instead"
            ));
        }
        if let Some(p) = problem {
            out.push((path.clone(), p));
        }
    }
    out.sort();
    Ok(out)
}

/// `html` with every relative `src` and `href` (`pic.png`, `img/a.png`, `../b/`) made to
/// start at `base` (`/posts/SLUG/`), or `None` when it has none. A value with a scheme
/// (`https:`, `mailto:`, `data:`), or that starts with `/`, `#` or `?`, is left alone. Only
/// for a bundle's summary, which is shown at other URLs than the post's.
pub(crate) fn rebase_relative_urls(html: &str, base: &str) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = html[at..].find(['s', 'h']) {
        let start = at + found;
        at = start + 1;
        let rest = &html[start..];
        let Some(attr) = ["src=", "href="].into_iter().find(|a| rest.starts_with(a)) else {
            continue;
        };
        // An attribute only: `src=` after a space, not inside another word (`data-src=`).
        if !html[..start].ends_with([' ', '\t', '\n']) {
            continue;
        }
        let value_at = start + attr.len();
        let quote = html[value_at..].chars().next();
        let value_at = match quote {
            Some('"' | '\'') => value_at + 1,
            _ => value_at,
        };
        let value = &html[value_at..];
        let relative = match value.chars().next() {
            None | Some('/' | '#' | '?' | '"' | '\'' | ' ' | '>') => false,
            Some(_) => {
                let end = value
                    .find(['/', '"', '\'', ' ', '>', '?', '#'])
                    .unwrap_or(value.len());
                let first = &value[..end];
                // A scheme: letters, digits, `+`, `-`, `.`, then `:` before any `/`.
                !first.split_once(':').is_some_and(|(scheme, _)| {
                    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                        && scheme
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                })
            }
        };
        if relative {
            out.push_str(&html[copied..value_at]);
            out.push_str(base);
            copied = value_at;
        }
        at = value_at;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&html[copied..]);
    Some(out)
}

/// Every top-level front matter key of `text` that nib does not read (not in
/// [`KNOWN_KEYS`]), for `nib check`. Read as a map of keys whose values are skipped, so it
/// knows nothing of [`FrontMatter`] but [`KNOWN_KEYS`]. An error when the front matter
/// does not read as a map.
pub(crate) fn ignored_keys(text: &str) -> Result<Vec<String>, String> {
    use std::collections::BTreeMap;
    type Keys = BTreeMap<String, serde::de::IgnoredAny>;
    let Some((fm, is_toml)) = split_front_matter(text)?.0 else {
        return Ok(Vec::new());
    };
    if fm.trim().is_empty() {
        return Ok(Vec::new());
    }
    if nesting_depth(fm, is_toml) > MAX_FRONT_MATTER_DEPTH {
        return Err("front matter nests too deep".into());
    }
    let keys: Keys = if is_toml {
        toml::from_str(fm).map_err(|e| e.message().to_string())?
    } else {
        serde_norway::from_str(fm).map_err(|e| e.to_string())?
    };
    Ok(keys
        .into_keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .collect())
}

/// `nib new "Title"`: writes `posts/YYYY-MM-DD-slug.md` and returns its path. Refuses to
/// overwrite an existing file.
pub(crate) fn new_post(
    posts_dir: &Path,
    title: &str,
    now: i64,
) -> Result<std::path::PathBuf, String> {
    let slug = slugify(title);
    if slug.is_empty() {
        return Err(format!(
            "{title:?} gives an empty slug; use some letters or digits"
        ));
    }
    fs::create_dir_all(posts_dir).map_err(|e| format!("{}: {e}", posts_dir.display()))?;
    let today = dates::ymd_at(now, dates::site_zone().offset_at(now));
    let path = posts_dir.join(format!("{today}-{slug}.md"));
    let quoted = serde_json::to_string(title.trim()).unwrap_or_else(|_| "\"\"".into());
    let text =
        format!("---\ntitle: {quoted}\ndate: {today}\ntags: []\ndraft: true\n---\n\nWrite here.\n");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_leftovers_are_not_posts() {
        let cases = [
            ("hello.md", true),
            ("2024-01-05-hello.md", true),
            (".hidden.md", false),
            (".#hello.md", false),
            ("hello.md~", false),
            (".hello.md.swp", false),
            ("#hello.md#", false),
            ("notes.txt", false),
            (".md", false),
            // Jekyll's default extension; Zola's section files are not posts.
            ("2015-10-26-hello.markdown", true),
            (".markdown", false),
            ("hello.markdown~", false),
            ("_index.md", false),
            ("_index.markdown", false),
            ("_indexes.md", true),
        ];
        for (name, want) in cases {
            assert_eq!(is_post_file(name), want, "{name}");
        }
    }

    #[test]
    fn slugs() {
        let cases = [
            ("Hello, World!", "hello-world"),
            ("  spaced   out  ", "spaced-out"),
            ("Café Crème", "café-crème"),
            ("snake_case", "snake_case"),
            ("--", ""),
        ];
        for (input, want) in cases {
            assert_eq!(slugify(input), want, "{input}");
        }
    }

    #[test]
    fn fields_come_from_front_matter_then_file_name_then_content() {
        let mtime = 1_000_000;
        // (file name, text, slug, title, date)
        let cases: &[(&str, &str, &str, &str, i64)] = &[
            (
                "2024-01-05-hello.md",
                "Body.",
                "hello",
                "hello",
                1_704_412_800,
            ),
            (
                "2024-01-05-hello.md",
                "# A Title\n\nBody.",
                "hello",
                "A Title",
                1_704_412_800,
            ),
            ("plain.md", "Body.", "plain", "plain", mtime),
            (
                "2024-01-05-x.md",
                "---\ntitle: YAML\nslug: Custom Slug\ndate: 2023-03-04 10:00\n---\nBody",
                "custom-slug",
                "YAML",
                1_677_924_000,
            ),
            (
                "x.md",
                "+++\ntitle = \"TOML\"\ndate = 2023-03-04\n+++\nBody",
                "x",
                "TOML",
                1_677_888_000,
            ),
            (
                "x.md",
                "+++\ndate = 2023-03-04T10:00:00Z\n+++\n# Head\nBody",
                "x",
                "Head",
                1_677_924_000,
            ),
            (
                "x.md",
                "---\r\ntitle: CRLF\r\n---\r\nBody",
                "x",
                "CRLF",
                mtime,
            ),
            ("x.md", "---\n---\nEmpty front matter", "x", "x", mtime),
        ];
        for (name, text, slug, title, date) in cases {
            let p = parse(name, text, mtime).unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
            assert_eq!(
                (p.slug.as_str(), p.title.as_str(), p.date),
                (*slug, *title, *date),
                "{text:?}"
            );
        }
    }

    #[test]
    fn broken_front_matter_names_the_problem() {
        let cases = [
            ("---\ntitle: [unclosed\n---\nx", "YAML"),
            ("+++\ntitle = \n+++\nx", "TOML"),
            ("---\ntitle: x\nno end", "never closed"),
            ("---\ndate: someday\n---\nx", "date"),
            ("---\ndraft: maybe\n---\nx", "YAML"),
            ("---\nslug: '!!!'\n---\nx", "slug"),
        ];
        for (text, needle) in cases {
            let err = parse("x.md", text, 0).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    /// Regression: `nib check` accepted a post dated `9999-12-31T20:00:00-05:00`, and then
    /// `/` answered 500 and the feed killed the server.
    #[test]
    fn a_post_dated_past_year_9998_is_refused() {
        // (file name, text, mtime, problem or None when accepted)
        let cases: &[(&str, &str, i64, Option<&str>)] = &[
            (
                "x.md",
                "---\ndate: 9999-12-31T20:00:00-05:00\n---\nx",
                0,
                Some("date: \"9999-12-31T20:00:00-05:00\" is outside the years 1 to 9998"),
            ),
            (
                "x.md",
                "+++\ndate = 0000-06-01\n+++\nx",
                0,
                Some("date: \"0000-06-01\""),
            ),
            (
                "x.md",
                "---\nupdated: 9999-01-01\n---\nx",
                0,
                Some("updated: \"9999-01-01\""),
            ),
            ("9999-01-01-x.md", "x", 0, Some("the file name's date")),
            ("x.md", "x", 300_000_000_000, Some("modification time")),
            ("x.md", "---\ndate: 9998-12-31\n---\nx", 0, None),
            ("x.md", "---\ndate: 0001-01-01\n---\nx", 0, None),
        ];
        for (name, text, mtime, want) in cases {
            match (parse(name, text, *mtime), want) {
                (Ok(_), None) => {}
                (Err(e), Some(needle)) => assert!(e.contains(needle), "{text:?}: {e}"),
                (got, _) => panic!("{name} {text:?}: {got:?}"),
            }
        }
    }

    /// Regression: YAML front matter nested 100,000 deep (200 KB) took 58 s to parse, and
    /// was accepted.
    #[test]
    fn front_matter_nested_deeper_than_64_is_refused_at_once() {
        let deep = |open: &str, close: &str, n: usize| open.repeat(n) + "x" + &close.repeat(n);
        let indented = |n: usize| {
            (0..n)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()
        };
        // (front matter, TOML?, depth refused)
        let cases: &[(String, bool, bool)] = &[
            ("title: a\ntags: [a, b]\n".into(), false, false),
            ("extra:\n  a:\n    b: [1, {c: 2}]\n".into(), false, false),
            (format!("x: {}\n", deep("[", "]", 60)), false, false),
            (format!("x: {}\n", deep("[", "]", 65)), false, true),
            (format!("x: {}\n", deep("[", "]", 100_000)), false, true),
            (format!("x: {}\n", deep("{a: ", "}", 100_000)), false, true),
            (format!("x:\n{}y\n", "- ".repeat(100_000)), false, true),
            (indented(60), false, false),
            (indented(70), false, true),
            (
                "title = 'a'\n[extra]\nb.c = [1, {d = 2}]\n".into(),
                true,
                false,
            ),
            (format!("x = {}\n", deep("[", "]", 100_000)), true, true),
            (format!("x = {}\n", deep("{a = ", "}", 100_000)), true, true),
            (format!("[{}]\n", vec!["a"; 100].join(".")), true, true),
            (format!("{} = 1\n", vec!["a"; 100].join(".")), true, true),
        ];
        for (text, is_toml, refused) in cases {
            let started = Instant::now();
            let got = parse_front_matter(text, *is_toml);
            let short = &text[..text.len().min(40)];
            assert!(started.elapsed() < Duration::from_secs(5), "{short:?}");
            match got {
                Err(e) if e.contains("nests deeper than 64") => assert!(*refused, "{short:?}"),
                _ => assert!(!*refused, "{short:?}: {:?}", got.err()),
            }
        }
        let err = parse(
            "x.md",
            &format!("---\nx: {}\n---\nbody", deep("[", "]", 100_000)),
            0,
        );
        assert_eq!(
            err.err().as_deref(),
            Some("front matter nests deeper than 64 levels")
        );
    }

    /// Regression: 21 KB of YAML aliases in `tags` (3,000 aliases to a list of 3,000)
    /// took 33 s and 300 MB while the untagged enum buffered their expansion.
    #[test]
    fn aliases_in_tags_are_not_expanded_into_memory() {
        let list = |item: &str| format!("[{}]", vec![item; 3000].join(", "));
        let started = Instant::now();
        let text = format!(
            "---\na: &a {}\nb: &b {}\ntags: *b\n---\nx",
            list("x"),
            list("*a")
        );
        let err = parse("x.md", &text, 0).expect_err("a list of lists is no list of tags");
        assert!(err.contains("YAML"), "{err}");
        let text = format!("---\na: &a rust\ntags: {}\n---\nx", list("*a"));
        assert_eq!(parse("x.md", &text, 0).unwrap().tags, vec!["rust"]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn summary_is_more_marker_then_description_then_first_paragraph() {
        let p = parse(
            "x.md",
            "First para.\n\nSecond.\n\n<!-- more -->\n\nRest.",
            0,
        )
        .unwrap();
        assert_eq!(p.summary.trim(), "<p>First para.</p>\n<p>Second.</p>");
        let p = parse(
            "x.md",
            "---\ndescription: Desc <b>\n---\nFirst.\n\nSecond.",
            0,
        )
        .unwrap();
        assert_eq!(p.summary, "<p>Desc &lt;b&gt;</p>");
        let p = parse("x.md", "# T\n\nFirst *para*.\n\nSecond.", 0).unwrap();
        assert_eq!(p.summary.trim(), "<p>First <em>para</em>.</p>");
    }

    #[test]
    fn tags_drafts_and_hash() {
        let p = parse(
            "x.md",
            "---\ntags: [Rust, web, rust, ' ']\ndraft: true\n---\nx",
            0,
        )
        .unwrap();
        assert_eq!(p.tags, vec!["Rust", "web"]);
        assert!(p.draft);
        let p2 = parse("x.md", "+++\ntags = \"a, b\"\n+++\nx", 0).unwrap();
        assert_eq!(p2.tags, vec!["a", "b"]);
        let a = parse("x.md", "same", 5).unwrap();
        let b = parse("x.md", "same", 5).unwrap();
        let c = parse("x.md", "other", 5).unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
    }

    /// The fields Jekyll and Hugo write for the same things nib reads, so their blogs move
    /// in as they are: their extension, dates, `lastmod`, categories, space-separated tags,
    /// `published: false` and drafts written as strings.
    #[test]
    fn the_card_image_comes_from_front_matter_then_the_first_picture() {
        // (front matter and body, image kept)
        let cases = [
            ("image: /a.png", "", Some("/a.png")),
            (
                "image:\n  path: /seo.png\n  height: 100",
                "",
                Some("/seo.png"),
            ),
            ("images: [one.jpg, two.jpg]", "", Some("one.jpg")),
            ("images: solo.jpg", "", Some("solo.jpg")),
            ("banner_image: /b.png", "", Some("/b.png")),
            ("featured_image: f.png", "", Some("f.png")),
            ("cover:\n  image: c.png\n  alt: x", "", Some("c.png")),
            ("image: /a.png\ncover:\n  image: c.png", "", Some("/a.png")),
            (
                "title: t",
                "![p](pic.png)\n\n![q](other.png)",
                Some("pic.png"),
            ),
            ("image: \"\"", "![p](pic.png)", Some("pic.png")),
            ("title: t", "no picture", None),
        ];
        for (fm, body, want) in cases {
            let text = format!("---\n{fm}\n---\n{body}\n");
            let post = parse("a.md", &text, 0).unwrap_or_else(|e| panic!("{fm}: {e}"));
            assert_eq!(post.image.as_deref(), want, "{fm} {body}");
        }
    }

    #[test]
    fn jekyll_and_hugo_fields_are_read() {
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], bool, Option<i64>);
        let cases: &[Case] = &[
            (
                "2015-10-26-hello.markdown",
                "---\ndate: 2015-10-26 15:37:30 -0700\ntags: jekyll release\ncategories: [news]\n---\nx",
                &["jekyll", "release", "news"],
                false,
                None,
            ),
            (
                "a.md",
                "---\ntags: [a]\ncategory: A\nlast_modified_at: 2024-01-06\n---\nx",
                &["a"],
                false,
                Some(1_704_499_200),
            ),
            (
                "b.md",
                "+++\ntags = [\"go\"]\nlastmod = 2024-01-06\ndraft = \"true\"\n+++\nx",
                &["go"],
                true,
                Some(1_704_499_200),
            ),
            ("c.md", "---\npublished: false\n---\nx", &[], true, None),
            (
                "d.md",
                "---\npublished: \"true\"\ndraft: \"false\"\n---\nx",
                &[],
                false,
                None,
            ),
        ];
        for (name, text, tags, draft, updated) in cases {
            let p = parse(name, text, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.tags, *tags, "{name}");
            assert_eq!(p.draft, *draft, "{name}");
            assert_eq!(p.updated, *updated, "{name}");
        }
        let p = parse("2015-10-26-hello.markdown", cases[0].1, 0).unwrap();
        assert_eq!((p.slug.as_str(), p.date), ("hello", 1_445_899_050));
        assert!(parse("e.md", "---\ndraft: maybe\n---\nx", 0).is_err());
    }

    /// Dates, schedules, old URLs and taxonomies as Jekyll, Hugo and Zola write them.
    #[test]
    fn migrated_dates_schedules_and_old_urls_are_read() {
        let mtime = 1_000_000;
        // (file name, text, date, offset, publish_at, expire_at, aliases, note?)
        type Case<'a> = (
            &'a str,
            &'a str,
            i64,
            i32,
            i64,
            Option<i64>,
            &'a [&'a str],
            bool,
        );
        let cases: &[Case] = &[
            // Jekyll: the offset is kept, the day shown is the day written.
            (
                "2013-09-06-x.markdown",
                "---\ndate: 2013-09-06 22:02:41 -0400\nredirect_from: /2013/09/06/x.html\n---\nx",
                1_378_519_361,
                -14_400,
                1_378_519_361,
                None,
                &["2013/09/06/x"],
                false,
            ),
            // Hugo: TOML datetimes with an offset, publishDate later than the date,
            // expiryDate, aliases as a list.
            (
                "x.md",
                "+++\ndate = 2024-01-05T10:00:00+02:00\npublishDate = 2024-02-01\nexpiryDate = 2025-01-01T00:00:00Z\naliases = [\"/old/x/\", \"/old/x.html\", \"/posts/x/\"]\n+++\nx",
                1_704_441_600,
                7_200,
                1_706_745_600,
                Some(1_735_689_600),
                &["old/x"],
                false,
            ),
            // Hugo: publishDate alone is the date too; old URLs as one string each, one
            // percent-encoded.
            (
                "x.md",
                "---\npublish_date: 2030-01-01\naliases: /y\nredirect_from: /caf%C3%A9/\n---\nx",
                1_893_456_000,
                0,
                1_893_456_000,
                None,
                &["y", "café"],
                false,
            ),
            // Zola: the date only in `path`, which is an old URL too.
            (
                "x.md",
                "+++\npath = \"2022/04/07/async\"\n[taxonomies]\ntags = [\"Rust\"]\n+++\nx",
                1_649_289_600,
                0,
                1_649_289_600,
                None,
                &["2022/04/07/async"],
                false,
            ),
            // TOML's local datetime (no offset): the site's zone, UTC here.
            (
                "x.md",
                "+++\ndate = 2020-01-02T10:00:00\n+++\nx",
                1_577_959_200,
                0,
                1_577_959_200,
                None,
                &[],
                false,
            ),
            // No date anywhere: the modification time, with a warning.
            ("x.md", "x", mtime, 0, mtime, None, &[], true),
        ];
        for (name, text, date, offset, publish_at, expire_at, aliases, note) in cases {
            let p = parse(name, text, mtime).unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
            assert_eq!(
                (p.date, p.offset, p.publish_at, p.expire_at),
                (*date, *offset, *publish_at, *expire_at),
                "{text:?}"
            );
            assert_eq!(p.aliases, *aliases, "{text:?}");
            assert_eq!(p.note.is_some(), *note, "{text:?}");
        }
        let p = parse(
            "x.md",
            "+++\ntags = [\"C++\", \"rust\"]\ncategories = [\"c\", \"Rust\"]\n[taxonomies]\ncategories = [\"Go\"]\n+++\nx",
            0,
        )
        .unwrap();
        assert_eq!(p.tags, vec!["C++", "rust", "c", "Go"]);
        assert!(
            parse("x.md", "---\nexpiryDate: soon\n---\nx", 0)
                .unwrap_err()
                .contains("expiry_date")
        );
    }

    /// An empty scratch `posts` folder inside a temporary one. The temporary folder (with
    /// the files tests put beside `posts`, and whatever a failed test left) is removed
    /// when the returned guard drops.
    fn scratch_posts() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("posts");
        fs::create_dir(&dir).unwrap();
        (tmp, dir)
    }

    #[test]
    fn index_follows_the_directory() {
        let (_tmp, dir) = scratch_posts();
        let db = Db::memory();
        let mut idx = Index::new();
        idx.quiet = true;
        fs::write(dir.join("2024-01-01-a.md"), "# A\n\nbody").unwrap();
        fs::write(dir.join("c.md~"), "leftover").unwrap();
        let r = idx.refresh(&db, &dir);
        assert_eq!((r.parsed, r.broken, r.site_changed), (1, 0, true));
        assert!(db.post_by_slug("a").unwrap().is_some());
        // Nothing changed: nothing parsed.
        assert_eq!(idx.refresh(&db, &dir), Refresh::default());
        fs::remove_file(dir.join("2024-01-01-a.md")).unwrap();
        let r = idx.refresh(&db, &dir);
        assert_eq!((r.removed, r.broken), (1, 0));
        assert!(db.post_by_slug("a").unwrap().is_none());
        // A fresh index over the same database finds nothing to do.
        let mut again = Index::new();
        assert_eq!(again.refresh(&db, &dir), Refresh::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression: two posts with one slug were one post and one refusal.
    /// Both are published now, whatever order they are found or written in: the earlier
    /// keeps the slug, the later takes its day in front, and only a third on the same day
    /// is refused. Each case writes its files in order, refreshing after each.
    #[test]
    fn duplicate_slugs_are_both_published_the_later_under_its_date() {
        let a = ("a.md", "---\ndate: 2024-01-01\n---\nA");
        let b = ("2020/a.md", "---\ndate: 2024-02-01\n---\nB");
        let c = ("c/index.md", "---\nslug: a\ndate: 2024-02-01\n---\nC");
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], usize);
        // (files in the order written, slug → file, broken)
        let cases: &[Case] = &[
            (&[a, b], &[("a", "A"), ("2024-02-01-a", "B")], 0),
            (&[b, a], &[("a", "A"), ("2024-02-01-a", "B")], 0),
            (&[c, b, a], &[("a", "A"), ("2024-02-01-a", "B")], 1),
            (&[a, c, b], &[("a", "A"), ("2024-02-01-a", "B")], 1),
        ];
        for (files, want, broken) in cases {
            let (_tmp, dir) = scratch_posts();
            let db = Db::memory();
            let mut idx = Index::new();
            idx.quiet = true;
            for (name, text) in *files {
                fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
                fs::write(dir.join(name), text).unwrap();
                idx.refresh(&db, &dir);
            }
            let order: Vec<_> = files.iter().map(|f| f.0).collect();
            for (slug, body) in *want {
                let row = db.post_by_slug(slug).unwrap();
                let html = row.map(|r| r.html).unwrap_or_default();
                assert!(html.contains(body), "{order:?}: {slug} is {html:?}");
            }
            assert_eq!(db.count_broken().unwrap() as usize, *broken, "{order:?}");
            let note = db.post_status("2020/a.md").unwrap().unwrap().note;
            assert_eq!(
                note.as_deref(),
                Some("published as /posts/2024-02-01-a/: slug \"a\" is also used by a.md"),
                "{order:?}"
            );
            // The earlier goes away: the later takes the slug back, and the note goes.
            fs::remove_file(dir.join("a.md")).unwrap();
            idx.refresh(&db, &dir);
            let row = db.post_by_slug("a").unwrap().unwrap();
            assert!(
                row.html.contains("B") || row.html.contains("C"),
                "{order:?}"
            );
            assert_eq!(db.count_broken().unwrap(), 0, "{order:?}");
        }
    }

    /// The shapes of real blogs' `posts/` folders, walked: Hugo's leaf bundles and year
    /// folders, Zola's sections, and what is never read.
    #[test]
    fn the_walk_finds_posts_in_folders_and_bundles() {
        let (_tmp, dir) = scratch_posts();
        let files = [
            "top.md",
            "notes.txt",
            "x.md~",
            "_index.md",
            ".hidden.md",
            "2020/old.md",
            "2020/_index.md",
            "2020/05/deep.markdown",
            "trip/index.md",
            "trip/pic.png",
            "trip/img/a.png",
            "trip/notes.md",
            "both/index.md",
            "both/index.markdown",
            ".git/x.md",
            "a/b/c/d/e/f/g/h/eight.md",
            "a/b/c/d/e/f/g/h/i/nine.md",
        ];
        for f in files {
            fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            fs::write(dir.join(f), "# x").unwrap();
        }
        std::os::unix::fs::symlink(dir.join("2020"), dir.join("linked")).unwrap();
        let mut found = Vec::new();
        walk(&dir, &mut |w| {
            match w {
                Walked::Post { rel, .. } => found.push(format!("post {rel}")),
                Walked::Skipped { rel, why } => found.push(format!("skip {rel} {why:?}")),
                Walked::Folder { .. } => {}
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        found.sort();
        let want = [
            "post 2020/05/deep.markdown",
            "post 2020/old.md",
            "post a/b/c/d/e/f/g/h/eight.md",
            "post both/index.md",
            "post top.md",
            "post trip/index.md",
            "skip .git/ Hidden",
            "skip .hidden.md Hidden",
            "skip 2020/_index.md Section",
            "skip _index.md Section",
            "skip a/b/c/d/e/f/g/h/i/ TooDeep",
            "skip linked LinkedFolder",
            "skip notes.txt NotPost",
            "skip x.md~ Leftover",
        ];
        assert_eq!(found, want);
        // What the walk finds is what stays in the index, and nothing else.
        for f in files {
            let post = want.contains(&format!("post {f}").as_str());
            // Each alone, and all in order through one memory of the folders seen.
            assert_eq!(still_a_post(&dir, f, &mut Vec::new()), post, "{f}");
        }
        let mut sorted = files.to_vec();
        sorted.sort();
        let mut seen = SeenFolders::new();
        for f in sorted {
            let post = want.contains(&format!("post {f}").as_str());
            assert_eq!(still_a_post(&dir, f, &mut seen), post, "{f} after others");
        }
        assert!(seen.len() <= MAX_DEPTH);
        assert!(!still_a_post(&dir, "linked/old.md", &mut Vec::new()));
        // A folder that becomes a bundle takes its posts with it.
        fs::write(dir.join("2020/index.md"), "# 2020").unwrap();
        assert!(!still_a_post(&dir, "2020/old.md", &mut Vec::new()));
        assert!(still_a_post(&dir, "2020/index.md", &mut Vec::new()));
        assert_eq!(slug_name("2020/index.md"), "2020");
        assert_eq!(slug_name("2020/05/deep.markdown"), "deep.markdown");
        assert_eq!(slug_name("top.md"), "top.md");
        assert_eq!(slug_name("index.md"), "index.md");
    }

    #[test]
    fn relative_urls_of_bundle_summaries_start_at_the_post() {
        let base = "/posts/trip/";
        let cases = [
            (
                r#"<img src="pic.png" alt="p">"#,
                Some(r#"<img src="/posts/trip/pic.png" alt="p">"#),
            ),
            (
                r#"<a href="img/a.png">a</a>"#,
                Some(r#"<a href="/posts/trip/img/a.png">a</a>"#),
            ),
            (
                r#"<a href='x.pdf'>"#,
                Some(r#"<a href='/posts/trip/x.pdf'>"#),
            ),
            (
                r#"<img src=pic.png>"#,
                Some(r#"<img src=/posts/trip/pic.png>"#),
            ),
            (
                r#"<img src="a.png"> and <img src="b.png">"#,
                Some(r#"<img src="/posts/trip/a.png"> and <img src="/posts/trip/b.png">"#),
            ),
            (r#"<img src="/static/a.png">"#, None),
            (r#"<a href="https://example.com/">"#, None),
            (r#"<a href="mailto:a@b.c">"#, None),
            (r#"<img src="data:image/png;base64,xx">"#, None),
            (r##"<a href="#top">"##, None),
            (r#"<a href="?q=1">"#, None),
            (r#"<a href="//cdn.example/x.js">"#, None),
            (r#"<img data-src="x.png">"#, None),
            ("<p>src=x.png said</p>", None),
            ("<p>no links</p>", None),
        ];
        for (html, want) in cases {
            assert_eq!(rebase_relative_urls(html, base).as_deref(), want, "{html}");
        }
    }

    #[test]
    fn ignored_keys_are_the_ones_nib_does_not_read() {
        let cases: &[(&str, &[&str])] = &[
            ("no front matter", &[]),
            ("---\n---\nx", &[]),
            (
                "---\ntitle: T\naliases: [/old/]\nlayout: post\ntags: [a]\n---\nx",
                &["layout"],
            ),
            (
                "+++\ntitle = \"T\"\n[extra]\nimage = \"x.png\"\n[taxonomies]\ntags = [\"a\"]\n+++\nx",
                &["extra"],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ignored_keys(text).unwrap(), *want, "{text}");
        }
        assert!(ignored_keys("---\n- a list\n---\nx").is_err());
    }

    /// Every field `FrontMatter` reads, under every name, is in `KNOWN_KEYS`, so `nib
    /// check` never calls a key it reads ignored. The names come from serde itself: a
    /// deserializer that only records the fields a struct asks for.
    #[test]
    fn every_front_matter_field_is_a_known_key() {
        struct Fields(Vec<&'static str>);
        impl<'de> serde::Deserializer<'de> for &mut Fields {
            type Error = serde::de::value::Error;
            fn deserialize_any<V: serde::de::Visitor<'de>>(
                self,
                _: V,
            ) -> Result<V::Value, Self::Error> {
                Err(serde::de::Error::custom("a struct only"))
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0.extend(fields);
                Err(serde::de::Error::custom("recorded"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields = Fields(Vec::new());
        let _ = FrontMatter::deserialize(&mut fields);
        assert!(fields.0.len() > 10, "{:?}", fields.0);
        for f in fields.0 {
            assert!(KNOWN_KEYS.contains(&f), "{f} is read but not in KNOWN_KEYS");
        }
    }

    /// Regression: a refresh read every changed file in one call on the request loop, so
    /// a thousand changed posts held every request behind them. Each check now reads
    /// files for at most a step's budget (here none: one file a step), and the next check
    /// is due at once until the pass is over.
    #[test]
    fn a_refresh_reads_changed_files_a_step_at_a_time() {
        let (_tmp, dir) = scratch_posts();
        let db = Db::memory();
        let mut idx = Index::new();
        idx.step_budget = Duration::ZERO;
        for i in 0..5 {
            fs::write(dir.join(format!("p{i}.md")), format!("# P{i}\n\nbody")).unwrap();
        }
        let mut steps = Vec::new();
        while steps.is_empty() || idx.pending {
            assert!(idx.is_due(), "a pass with files left is due at once");
            let r = idx.refresh_if_due(&db, &dir);
            steps.push((r.parsed, r.site_changed));
            assert_eq!(db.count_public().unwrap() as usize, steps.len());
            assert!(steps.len() <= 5, "{steps:?}");
        }
        assert_eq!(steps, vec![(1, true); 5]);
        assert!(!idx.is_due(), "the pass is over");
        // The pass ended with the fingerprint of what it read: nothing more to do.
        assert_eq!(idx.refresh(&db, &dir), Refresh::default());
        // A removal waits for the pass's last step; start-up's refresh finishes a pass the
        // loop began, in one go.
        fs::remove_file(dir.join("p0.md")).unwrap();
        for i in 1..4 {
            fs::write(dir.join(format!("p{i}.md")), "# P\n\nedited, longer").unwrap();
        }
        idx.last_check = None;
        let r = idx.refresh_if_due(&db, &dir);
        assert_eq!((r.parsed, r.removed, idx.pending), (1, 0, true));
        let r = idx.refresh(&db, &dir);
        assert_eq!((r.parsed, r.removed, r.site_changed), (2, 1, true));
        assert!(!idx.pending);
        assert_eq!(db.count_public().unwrap(), 4);
        // A folder that goes away empties the index once, and then stays quiet.
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(idx.refresh(&db, &dir).removed, 4);
        assert_eq!(idx.refresh(&db, &dir), Refresh::default());
        assert_eq!(
            stored_fingerprint(&db, INDEX_VERSION),
            Some(0),
            "what a scan of no folder gives"
        );
    }

    /// Regression: a 1.3 MB post peaked at 48 times its size while indexed (a 50 MB one at
    /// 2.4 GB). A file over `max_post_kb` is skipped before it is read.
    #[test]
    fn a_post_over_max_post_kb_is_skipped_unread() {
        let (_tmp, dir) = scratch_posts();
        let db = Db::memory();
        let mut idx = Index::new();
        idx.quiet = true;
        idx.max_post_bytes = 4 * 1024;
        fs::write(dir.join("big.md"), "x".repeat(4 * 1024 + 1)).unwrap();
        fs::write(dir.join("fits.md"), "x".repeat(4 * 1024)).unwrap();
        let r = idx.refresh(&db, &dir);
        assert_eq!((r.parsed, r.broken), (2, 1));
        let broken = db.broken_posts().unwrap();
        assert_eq!(
            broken,
            vec![(
                "big.md".to_string(),
                "5 KB is over max_post_kb = 4".to_string()
            )]
        );
        assert!(db.post_by_slug("fits").unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Each step changes the directory (or not) and says whether the watch must report a
    /// change; the watch then has nothing more to report.
    #[test]
    fn the_watch_reports_every_kind_of_change() {
        let (_tmp, dir) = scratch_posts();
        let w = match Watch::new(&dir) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("skipping: {} cannot be watched here: {e}", dir.display());
                return;
            }
        };
        let at = |name: &str| dir.join(name);
        type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, bool);
        let steps: Vec<Step> = vec![
            ("nothing", Box::new(|| {}), false),
            (
                "create",
                Box::new(|| fs::write(at("a.md"), "# A").unwrap()),
                true,
            ),
            (
                "edit in place",
                Box::new(|| {
                    use std::io::Write;
                    let mut f = fs::OpenOptions::new()
                        .append(true)
                        .open(at("a.md"))
                        .unwrap();
                    f.write_all(b"\nmore").unwrap();
                }),
                true,
            ),
            (
                "read",
                Box::new(|| drop(fs::read(at("a.md")).unwrap())),
                false,
            ),
            (
                "touch",
                Box::new(|| {
                    // Opened to read, so only the new time itself is an event.
                    let f = fs::File::open(at("a.md")).unwrap();
                    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1))
                        .unwrap();
                }),
                true,
            ),
            (
                "save by rename",
                Box::new(|| {
                    // Written elsewhere, so only the rename itself is an event.
                    let tmp = dir.with_extension("tmp");
                    fs::write(&tmp, "# A2").unwrap();
                    fs::rename(&tmp, at("a.md")).unwrap();
                }),
                true,
            ),
            (
                "remove",
                Box::new(|| fs::remove_file(at("a.md")).unwrap()),
                true,
            ),
        ];
        for (what, step, want) in &steps {
            step();
            assert_eq!(w.changed(&dir).unwrap(), *want, "{what}");
            assert!(!w.changed(&dir).unwrap(), "{what}: reported twice");
        }
        // The directory itself goes away: the watch says it is over.
        fs::remove_dir_all(&dir).unwrap();
        assert!(w.changed(&dir).is_err());
        // So does one replaced under the same name, which sends the old one no event.
        fs::create_dir_all(&dir).unwrap();
        let w = Watch::new(&dir).unwrap();
        let aside = dir.with_extension("old");
        fs::rename(&dir, &aside).unwrap();
        fs::create_dir_all(&dir).unwrap();
        assert!(w.changed(&dir).is_err());
        fs::remove_dir_all(&aside).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression: the watch followed `posts/` alone, so a post in a
    /// folder changed unseen. Now a new folder is an event, the scan it brings follows it,
    /// and a change deep inside is seen; a folder removed ends its own watch only.
    #[test]
    fn checks_see_changes_in_folders() {
        let (_tmp, dir) = scratch_posts();
        let db = Db::memory();
        let mut idx = Index::new();
        idx.quiet = true;
        if Watch::new(&dir).is_err() {
            eprintln!("skipping: {} cannot be watched here", dir.display());
            return;
        }
        let check = |idx: &mut Index| {
            idx.last_check = None;
            let r = idx.refresh_if_due(&db, &dir);
            assert!(idx.watch.is_some());
            r
        };
        let quiet = |idx: &mut Index| {
            // Pushes the minute's scan away, so only an event makes a check scan.
            idx.last_check = None;
            idx.last_scan_at = Some(Instant::now());
            idx.refresh_if_due(&db, &dir)
        };
        fs::write(dir.join("a.md"), "# A").unwrap();
        assert_eq!(check(&mut idx).parsed, 1);
        assert_eq!(quiet(&mut idx), Refresh::default());
        fs::create_dir_all(dir.join("2020/05")).unwrap();
        fs::write(dir.join("2020/05/b.md"), "# B").unwrap();
        assert_eq!(quiet(&mut idx).parsed, 1);
        fs::write(dir.join("2020/05/b.md"), "# B\n\nedited, longer").unwrap();
        assert_eq!(quiet(&mut idx).parsed, 1);
        fs::create_dir_all(dir.join("trip")).unwrap();
        assert_eq!(quiet(&mut idx).parsed, 0);
        fs::write(dir.join("trip/index.md"), "# Trip").unwrap();
        assert_eq!(quiet(&mut idx).parsed, 1);
        assert!(db.post_by_slug("trip").unwrap().is_some());
        fs::remove_dir_all(dir.join("2020")).unwrap();
        assert_eq!(quiet(&mut idx).removed, 1);
        assert!(idx.watch.is_some(), "a folder inside went, not posts/");
        fs::write(dir.join("trip/index.md"), "# Trip\n\nedited, longer").unwrap();
        assert_eq!(quiet(&mut idx).parsed, 1);
        assert_eq!(quiet(&mut idx), Refresh::default());
    }

    /// The loop's check: a due check with no event scans nothing; an edit, however it is
    /// made, is found by the next due check; a directory that is replaced is watched again.
    #[test]
    fn checks_find_changes_through_the_watch() {
        let (_tmp, dir) = scratch_posts();
        let db = Db::memory();
        let mut idx = Index::new();
        // Where the temporary folder cannot be watched, every check scans: the same
        // answers, without the watch.
        let watching = Watch::new(&dir).is_ok();
        fs::write(dir.join("a.md"), "# A\n\none").unwrap();
        let check = |idx: &mut Index| {
            idx.last_check = None;
            idx.refresh_if_due(&db, &dir)
        };
        assert_eq!(check(&mut idx).parsed, 1);
        assert_eq!(idx.watch.is_some(), watching);
        assert_eq!(check(&mut idx), Refresh::default());
        // A different length, so the change shows even within one mtime tick.
        fs::write(dir.join("a.md"), "# A\n\ntwo, longer").unwrap();
        assert_eq!(check(&mut idx).parsed, 1);
        assert_eq!(check(&mut idx), Refresh::default());
        // Replaced: the lost watch is noticed, the directory scanned and watched again.
        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("b.md"), "# B").unwrap();
        let r = check(&mut idx);
        assert_eq!((r.parsed, r.removed), (1, 1));
        assert_eq!(idx.watch.is_some(), watching);
        fs::write(dir.join("b.md"), "# B\n\nedited").unwrap();
        assert_eq!(check(&mut idx).parsed, 1);
        // A symlinked post's target changes without an event in posts/: with one, every
        // check scans.
        let target = dir.with_extension("target.md");
        fs::write(&target, "# C").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("c.md")).unwrap();
        assert_eq!(check(&mut idx).parsed, 1);
        fs::write(&target, "# C\n\nedited elsewhere").unwrap();
        assert_eq!(check(&mut idx).parsed, 1);
        fs::remove_file(&target).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
