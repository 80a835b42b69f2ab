//! Shortcodes, Liquid tags and template calls in post bodies, turned into plain HTML or
//! markdown before the body is parsed: Hugo's built-ins (`{{< figure >}}`, `youtube`,
//! `vimeo`, `x`/`tweet`, `gist`, `highlight`, `ref`/`relref`), Jekyll's `{% highlight %}`,
//! `{% raw %}`, `{% post_url %}` and `{% link %}`, Zola's built-in calls, and the site's
//! own templates (`shortcodes/NAME.html`), which any of the three syntaxes may call
//! (Jekyll's as `{% include NAME.html %}` or a plugin's `{% NAME %}`).
//!
//! The scanner is hand-written and linear: it walks the body once, skipping fenced and
//! indented code and inline code spans (posts that document shortcodes show them there),
//! and every search for a closing tag that fails is remembered, so it is never repeated.
//! A tag spans at most [`TAG_MAX`] bytes and paired tags nest at most [`DEPTH_MAX`] deep.
//! Anything it cannot read as a tag is text; a tag it does not know is shown as the
//! literal text it was (escaped, so smart punctuation leaves it alone) and reported, with
//! its line, for `nib check`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::hash::Fnv;

/// The most bytes one tag may span, its arguments included: past that, `{{<` is text.
const TAG_MAX: usize = 4096;

/// How deep paired shortcodes may nest in one another; deeper ones are shown as text.
const DEPTH_MAX: usize = 8;

/// The most site templates read, and the largest one.
const TEMPLATES_MAX: usize = 256;
const TEMPLATE_BYTES_MAX: u64 = 64 * 1024;

/// The site's own shortcodes: `shortcodes/NAME.html` in the site folder, each a piece of
/// HTML with `{{ arg }}` placeholders (values HTML-escaped) and `{{ body }}` for the
/// rendered body of a paired call. Loaded once per index; they override the built-ins.
#[derive(Default)]
pub(crate) struct Templates {
    map: HashMap<String, String>,
    hash: u64,
    /// The folder they were read from (none in tests), and its files' stamp then.
    dir: Option<PathBuf>,
    stamp: u64,
}

impl Templates {
    /// Reads `site_dir/shortcodes/*.html`. A folder that is missing holds no templates; a
    /// file that cannot be read is logged, one line naming it, and left out.
    pub fn load(site_dir: &Path) -> Templates {
        Templates::load_dir(site_dir.join("shortcodes"))
    }

    fn load_dir(dir: PathBuf) -> Templates {
        let stamp = folder_stamp(&dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Templates {
                dir: Some(dir),
                stamp,
                ..Templates::default()
            };
        };
        let mut list = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".html") else {
                continue;
            };
            if stem.is_empty() || !stem.bytes().all(is_name_byte) {
                continue;
            }
            if list.len() == TEMPLATES_MAX {
                eprintln!(
                    "nib: {}: more than {TEMPLATES_MAX} templates; the rest are ignored",
                    dir.display()
                );
                break;
            }
            let path = entry.path();
            match read_template(&path) {
                Ok(text) => list.push((stem.to_string(), text)),
                Err(e) => eprintln!("nib: skipping {}: {e}", path.display()),
            }
        }
        list.sort();
        let mut h = Fnv::new();
        for (name, text) in &list {
            h.write(name.as_bytes());
            h.write(&[0]);
            h.write(text.as_bytes());
            h.write(&[1]);
        }
        Templates {
            hash: if list.is_empty() { 0 } else { h.finish() },
            map: list.into_iter().collect(),
            dir: Some(dir),
            stamp,
        }
    }

    /// The templates read again when a file in their folder was added, removed or
    /// changed since they were read: `None` when nothing changed. A stat of each file, so
    /// the request loop can ask at every check of `posts/`.
    pub fn reloaded(&self) -> Option<Templates> {
        let dir = self.dir.as_ref()?;
        (folder_stamp(dir) != self.stamp).then(|| Templates::load_dir(dir.clone()))
    }

    /// A hash of every template's name and text (0 for none), so an index rendered with
    /// other templates is known to be stale.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    #[cfg(test)]
    fn with(list: &[(&str, &str)]) -> Templates {
        Templates {
            map: list
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            hash: 1,
            ..Templates::default()
        }
    }
}

/// An order-independent hash of the names, sizes and modification times of the
/// templates in `dir` (0 when there is no folder).
fn folder_stamp(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut sum = 1u64;
    for entry in entries.flatten().take(TEMPLATES_MAX + 1) {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.ends_with(".html")) else {
            continue;
        };
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        let mut h = Fnv::new();
        h.write(name.as_bytes());
        h.write(&meta.len().to_le_bytes());
        h.write(&crate::dates::mtime(&meta).as_nanos().to_le_bytes());
        sum = sum.wrapping_add(h.finish());
    }
    sum
}

fn read_template(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(TEMPLATE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > TEMPLATE_BYTES_MAX {
        return Err(format!(
            "a shortcode template is at most {} KB",
            TEMPLATE_BYTES_MAX / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}

/// How a shortcode shown as text opens: a paragraph of its own (see [`Scan::emit`]).
pub(crate) const SHOWN_OPEN: &str = "<p class=\"shortcode\">";

/// A shortcode left as text, for `nib check`: its line in the body (from 1) and what is
/// wrong, e.g. `unknown shortcode "gallery"`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub line: usize,
    pub problem: String,
}

/// Expands every shortcode of `body` outside code. `md` renders markdown to HTML, for the
/// bodies of paired site templates and figure captions (this module renders nothing
/// itself). The body comes back borrowed when it holds nothing that could be a tag.
pub(crate) fn expand<'a>(
    body: &'a str,
    templates: &Templates,
    md: &dyn Fn(&str) -> String,
) -> (Cow<'a, str>, Vec<Found>) {
    if !body.contains("{{") && !body.contains("{%") {
        return (Cow::Borrowed(body), Vec::new());
    }
    let mut scan = Scan {
        templates,
        md,
        out: String::with_capacity(body.len() + body.len() / 8),
        found: Vec::new(),
        depth: 0,
    };
    scan.run(body, 0, false);
    (Cow::Owned(scan.out), scan.found)
}

/// The URL of the post a reference names: `other-post.md`, `posts/2020-01-02-name.md`,
/// `/blog/name/index.md`, `name#section` → `/posts/name/` (plus the anchor). The slug is
/// the file's (or its folder's) name without a date prefix, as nib gives it when front
/// matter sets none.
pub(crate) fn post_url(reference: &str) -> String {
    let reference = reference.trim();
    let (path, anchor) = match reference.find('#') {
        Some(at) => reference.split_at(at),
        None => (reference, ""),
    };
    let path = path.trim_end_matches('/');
    let path = [".md", ".markdown", ".html"]
        .iter()
        .find_map(|ext| path.strip_suffix(ext))
        .unwrap_or(path);
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let mut stem = segments.next().unwrap_or("");
    if stem == "index" || stem == "_index" {
        stem = segments.next().unwrap_or("");
    }
    let stem = crate::dates::split_date_prefix(stem)
        .map(|(_, rest)| rest)
        .unwrap_or(stem);
    let slug = crate::routes::slugify(stem);
    if slug.is_empty() {
        return format!("/{anchor}");
    }
    format!("/posts/{slug}/{anchor}")
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Hugo names may also hold `/` and `.` (a template in a subfolder).
fn is_hugo_name_byte(b: u8) -> bool {
    is_name_byte(b) || b == b'/' || b == b'.'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A shortcode's arguments: positional and named, in order.
#[derive(Debug, Default, PartialEq)]
struct Args {
    pos: Vec<String>,
    named: Vec<(String, String)>,
}

impl Args {
    fn get(&self, key: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn nth(&self, i: usize) -> Option<&str> {
        self.pos.get(i).map(String::as_str)
    }

    /// A named argument, else the positional one at `i` (Hugo takes either).
    fn either(&self, key: &str, i: usize) -> Option<&str> {
        self.get(key)
            .or_else(|| self.nth(i))
            .filter(|v| !v.is_empty())
    }

    /// What a template's `{{ key }}` stands for: a named argument, or by number a
    /// positional one (`{{ 0 }}`). Jekyll's `{{ include.key }}` is `{{ key }}`, so an
    /// include file works as a template unchanged when it only shows its arguments.
    fn placeholder(&self, key: &str) -> Option<&str> {
        let key = key.strip_prefix("include.").unwrap_or(key);
        self.get(key)
            .or_else(|| key.parse().ok().and_then(|i| self.nth(i)))
    }
}

/// The kinds of tags the scanner reads.
#[derive(Debug, PartialEq)]
enum Kind<'s> {
    /// `{{< name args >}}` or `{{% name args %}}`; `closed` when it ends in `/>}}`.
    HugoOpen {
        name: &'s str,
        args: Args,
        closed: bool,
    },
    /// `{{< /name >}}`.
    HugoClose { name: &'s str },
    /// `{{</* name */>}}`: Hugo's way of showing a shortcode as text; this is the text.
    HugoShown(String),
    /// `{{ name(args) }}` (Zola).
    Call { name: &'s str, args: Args },
    /// `{% name(args) %}` (Zola, with a body up to `{% end %}`).
    BodyCall { name: &'s str, args: Args },
    /// `{% end %}`.
    End,
    /// `{% name words %}` (Liquid).
    Liquid {
        name: &'s str,
        words: Vec<&'s str>,
        /// What follows the name, as written.
        rest: &'s str,
    },
    /// `{{ expression }}` (a Liquid output).
    Output(&'s str),
}

/// One tag: what it is, and where it ends.
#[derive(Debug)]
struct Tag<'s> {
    kind: Kind<'s>,
    end: usize,
}

/// Skips blanks (spaces, tabs and line breaks) from `i`.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A quoted string starting at `i` (`"`, `'` or a backtick): its text (backslash escapes
/// read inside double quotes) and where it ends.
fn quoted(s: &str, i: usize, limit: usize) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let q = b[i];
    let mut out = String::new();
    let mut j = i + 1;
    let mut from = j;
    while j < limit {
        match b[j] {
            c if c == q => {
                out.push_str(&s[from..j]);
                return Some((out, j + 1));
            }
            b'\\' if q == b'"' && j + 1 < limit && matches!(b[j + 1], b'"' | b'\\') => {
                out.push_str(&s[from..j]);
                from = j + 1;
                j += 2;
            }
            _ => j += 1,
        }
    }
    None
}

/// Reads the tag that starts at `at` (a `{`), if one does.
fn parse_tag(s: &str, at: usize) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let limit = (at + TAG_MAX).min(s.len());
    match b.get(at + 1..at + 3)? {
        [b'{', b'<'] | [b'{', b'%'] => parse_hugo(s, at, limit),
        [b'{', _] => parse_call_or_output(s, at, limit),
        [b'%', _] => parse_liquid(s, at, limit),
        _ => None,
    }
}

fn parse_hugo(s: &str, at: usize, limit: usize) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let (open, close) = if b[at + 2] == b'<' {
        ("{{<", ">}}")
    } else {
        ("{{%", "%}}")
    };
    let mut i = skip_ws(b, at + 3);
    if b[i..].starts_with(b"/*") {
        let end = find_bytes(&b[i..limit], format!("*/{close}").as_bytes())? + i;
        let inner = &s[i + 2..end];
        return Some(Tag {
            kind: Kind::HugoShown(format!("{open}{inner}{close}")),
            end: end + 2 + close.len(),
        });
    }
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i = skip_ws(b, i + 1);
    }
    let name_at = i;
    while i < limit && is_hugo_name_byte(b[i]) {
        i += 1;
    }
    let name = &s[name_at..i];
    if name.is_empty() || name.starts_with('/') {
        return None;
    }
    let mut args = Args::default();
    loop {
        i = skip_ws(b, i);
        if i >= limit {
            return None;
        }
        if b[i..limit].starts_with(close.as_bytes()) {
            let kind = if closing {
                Kind::HugoClose { name }
            } else {
                Kind::HugoOpen {
                    name,
                    args,
                    closed: false,
                }
            };
            return Some(Tag {
                kind,
                end: i + close.len(),
            });
        }
        if b[i] == b'/' && b[i + 1..limit].starts_with(close.as_bytes()) && !closing {
            return Some(Tag {
                kind: Kind::HugoOpen {
                    name,
                    args,
                    closed: true,
                },
                end: i + 1 + close.len(),
            });
        }
        // `key=value`, or a value alone.
        let mut key = None;
        let mut j = i;
        while j < limit && (is_name_byte(b[j]) || b[j] == b'.') {
            j += 1;
        }
        if j > i && b.get(j) == Some(&b'=') {
            key = Some(s[i..j].to_string());
            i = j + 1;
        }
        let value = if i < limit && matches!(b[i], b'"' | b'`') {
            let (v, end) = quoted(s, i, limit)?;
            i = end;
            v
        } else {
            let from = i;
            let ends = |i: usize| {
                b[i].is_ascii_whitespace()
                    || b[i..limit].starts_with(close.as_bytes())
                    || (b[i] == b'/' && b[i + 1..limit].starts_with(close.as_bytes()))
            };
            while i < limit && !ends(i) {
                i += 1;
            }
            if i >= limit {
                return None;
            }
            s[from..i].to_string()
        };
        match key {
            Some(k) => args.named.push((k, value)),
            None => args.pos.push(value),
        }
    }
}

/// Zola's arguments, from just past `(`: `key = value` pairs separated by commas, to `)`.
fn parse_call_args(s: &str, mut i: usize, limit: usize) -> Option<(Args, usize)> {
    let b = s.as_bytes();
    let mut args = Args::default();
    loop {
        i = skip_ws(b, i);
        while i < limit && b[i] == b',' {
            i = skip_ws(b, i + 1);
        }
        if i >= limit {
            return None;
        }
        if b[i] == b')' {
            return Some((args, i + 1));
        }
        let key_at = i;
        while i < limit && is_ident_byte(b[i]) {
            i += 1;
        }
        if i == key_at {
            return None;
        }
        let key = s[key_at..i].to_string();
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if i >= limit {
            return None;
        }
        let value = if matches!(b[i], b'"' | b'\'' | b'`') {
            let (v, end) = quoted(s, i, limit)?;
            i = end;
            v
        } else {
            let from = i;
            let mut brackets = 0usize;
            while i < limit {
                match b[i] {
                    b'[' => brackets += 1,
                    b']' => brackets = brackets.saturating_sub(1),
                    b',' | b')' if brackets == 0 => break,
                    c if c.is_ascii_whitespace() && brackets == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            if i >= limit {
                return None;
            }
            s[from..i].to_string()
        };
        args.named.push((key, value));
    }
}

fn parse_call_or_output(s: &str, at: usize, limit: usize) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let mut i = at + 2;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let spaced = b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t');
    i = skip_ws(b, i);
    let name_at = i;
    while i < limit && is_ident_byte(b[i]) {
        i += 1;
    }
    let name = &s[name_at..i];
    let j = skip_ws(b, i);
    if !name.is_empty() && !name.as_bytes()[0].is_ascii_digit() && b.get(j) == Some(&b'(') {
        let (args, mut k) = parse_call_args(s, j + 1, limit)?;
        k = skip_ws(b, k);
        if b.get(k) == Some(&b'-') {
            k += 1;
        }
        return b[k.min(limit)..limit].starts_with(b"}}").then_some(Tag {
            kind: Kind::Call { name, args },
            end: k + 2,
        });
    }
    // A Liquid output, `{{ page.title }}` or `{{ "/x" | relative_url }}`: spaced after the
    // braces and on one line, so TeX's `{{a}}` in math is never taken for one.
    let first = *b.get(name_at)?;
    if !spaced || !(first.is_ascii_alphabetic() || first == b'"' || first == b'\'') {
        return None;
    }
    let line_end = b[name_at..limit]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(limit, |n| name_at + n);
    let close = find_bytes(&b[name_at..line_end], b"}}")? + name_at;
    let expr = s[name_at..close]
        .trim_end()
        .trim_end_matches('-')
        .trim_end();
    Some(Tag {
        kind: Kind::Output(expr),
        end: close + 2,
    })
}

fn parse_liquid(s: &str, at: usize, limit: usize) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let mut i = at + 2;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = skip_ws(b, i);
    let name_at = i;
    while i < limit && is_ident_byte(b[i]) {
        i += 1;
    }
    let name = &s[name_at..i];
    if name.is_empty() {
        return None;
    }
    let j = skip_ws(b, i);
    if b.get(j) == Some(&b'(') {
        let (args, mut k) = parse_call_args(s, j + 1, limit)?;
        k = skip_ws(b, k);
        if b.get(k) == Some(&b'-') {
            k += 1;
        }
        return b[k.min(limit)..limit].starts_with(b"%}").then_some(Tag {
            kind: Kind::BodyCall { name, args },
            end: k + 2,
        });
    }
    let close = find_bytes(&b[i..limit], b"%}")? + i;
    let rest = s[i..close].trim_end().trim_end_matches('-');
    let kind = if name == "end" && rest.trim().is_empty() {
        Kind::End
    } else {
        Kind::Liquid {
            name,
            words: rest.split_whitespace().collect(),
            rest,
        }
    };
    Some(Tag {
        kind,
        end: close + 2,
    })
}

/// The kinds of closing tags searched for, for remembering failed searches.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Closer {
    Hugo,
    LiquidEnd,
    ZolaEnd,
}

/// Finds the tag that closes one opened just before `from`: `{{< /name >}}`,
/// `{% endNAME %}` or `{% end %}`, counting nested openings of the same name. Returns
/// where the body ends and where the closing tag does.
fn find_closer(s: &str, from: usize, closer: Closer, name: &str) -> Option<(usize, usize)> {
    let pattern = match closer {
        Closer::Hugo => "{{",
        Closer::LiquidEnd | Closer::ZolaEnd => "{%",
    };
    let mut depth = 0usize;
    let mut at = from;
    let mut ahead = Ahead::default();
    while let Some(n) = s[at..].find(pattern) {
        let start = at + n;
        let tag = match ahead.may_close(s, start) {
            true => parse_tag(s, start),
            false => None,
        };
        let Some(tag) = tag else {
            at = start + 1;
            continue;
        };
        match (&tag.kind, closer) {
            (Kind::HugoClose { name: n }, Closer::Hugo) if *n == name => {
                if depth == 0 {
                    return Some((start, tag.end));
                }
                depth -= 1;
            }
            (
                Kind::HugoOpen {
                    name: n, closed, ..
                },
                Closer::Hugo,
            ) if *n == name && !closed => depth += 1,
            (Kind::Liquid { name: n, .. }, Closer::LiquidEnd)
                if n.strip_prefix("end") == Some(name) =>
            {
                return Some((start, tag.end));
            }
            (Kind::End, Closer::ZolaEnd) => {
                if depth == 0 {
                    return Some((start, tag.end));
                }
                depth -= 1;
            }
            (Kind::BodyCall { .. }, Closer::ZolaEnd) => depth += 1,
            _ => {}
        }
        at = tag.end;
    }
    None
}

/// Where each closing delimiter (`>}}`, `%}}`, `}}`, `%}`) next occurs, remembered from
/// one search to the next: a tag is read only when its delimiter comes within
/// [`TAG_MAX`], so a body of openings that never close costs one search per delimiter,
/// not one per opening.
#[derive(Default)]
struct Ahead {
    /// Per delimiter: where a search started, and the first occurrence at or after it.
    memo: [Option<(usize, Option<usize>)>; 4],
}

impl Ahead {
    const DELIMITERS: [&'static str; 4] = [">}}", "%}}", "}}", "%}"];

    /// Whether the tag that may start at `at` could end within [`TAG_MAX`].
    fn may_close(&mut self, s: &str, at: usize) -> bool {
        let which = match s.as_bytes().get(at + 1..at + 3) {
            Some([b'{', b'<']) => 0,
            Some([b'{', b'%']) => 1,
            Some([b'{', _]) => 2,
            Some([b'%', _]) => 3,
            _ => return false,
        };
        let next = match self.memo[which] {
            Some((from, None)) if from <= at => None,
            Some((from, Some(p))) if from <= at && p >= at => Some(p),
            _ => {
                let found = s[at..].find(Self::DELIMITERS[which]).map(|n| at + n);
                self.memo[which] = Some((at, found));
                found
            }
        };
        next.is_some_and(|p| p - at < TAG_MAX)
    }
}

/// Counts lines up to a position that only moves forward.
struct Lines {
    at: usize,
    line: usize,
}

impl Lines {
    fn line_of(&mut self, s: &str, pos: usize) -> usize {
        if pos > self.at {
            self.line += s.as_bytes()[self.at..pos]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.at = pos;
        }
        self.line
    }
}

/// Where a tag stands on its line: alone (only blanks around it), or first on a line that
/// starts a paragraph.
#[derive(Clone, Copy)]
struct Place {
    alone: bool,
    starts_paragraph: bool,
}

fn place(s: &str, start: usize, end: usize) -> Place {
    // Each look goes only as far as the blanks around the tag, so a line of many tags
    // costs no more than its length.
    let b = s.as_bytes();
    let blank = |c: &u8| *c == b' ' || *c == b'\t' || *c == b'\r';
    let indent = b[..start].iter().rev().take_while(|c| blank(c)).count();
    let line_start = start - indent;
    let first = line_start == 0 || b[line_start - 1] == b'\n';
    let trailing = b[end..].iter().take_while(|c| blank(c)).count();
    let alone = first && b.get(end + trailing).is_none_or(|c| *c == b'\n');
    let after_blank = first
        && (line_start == 0 || {
            let before = &b[..line_start - 1];
            let gap = before.iter().rev().take_while(|c| blank(c)).count();
            gap == before.len() || before[before.len() - gap - 1] == b'\n'
        });
    Place {
        alone,
        starts_paragraph: after_blank,
    }
}

/// Where `needle` first occurs in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// HTML-escapes an attribute value or text; line breaks become spaces, so an HTML block
/// made of it stays one line.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text that markdown shows as it is: every ASCII punctuation character as a numeric
/// character reference, so no emphasis, link or smart quote is made of it.
fn literal_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_ascii_punctuation() => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// HTML with no blank line in it: a blank line would end the HTML block it is put in, and
/// the parser would read what follows as markdown. The line break before a blank line
/// becomes a character reference, which shows the same inside `<pre>` and is blank space
/// elsewhere.
fn one_block(html: &str) -> String {
    // Leading blanks too: four of them would make the first line indented code.
    let html = html.trim();
    let mut out = String::with_capacity(html.len());
    let mut lines = html.split('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        if let Some(next) = lines.peek() {
            if next.trim().is_empty() {
                out.push_str("&#10;");
            } else {
                out.push('\n');
            }
        }
    }
    out
}

/// What a tag becomes.
enum Output {
    /// HTML that stands as a block when the tag stands alone on its line.
    Block(String),
    /// HTML or text that goes where the tag was.
    Inline(String),
    /// A link: a paragraph of its own (an HTML block, so no summary starts with it)
    /// when the tag stands alone on its line.
    Link(String),
    /// Markdown that starts on a line of its own (a fenced code block).
    Markdown(String),
    /// The tag's text, shown as it was.
    Literal(String),
}

struct Scan<'t> {
    templates: &'t Templates,
    md: &'t dyn Fn(&str) -> String,
    out: String,
    found: Vec<Found>,
    depth: usize,
}

impl Scan<'_> {
    /// Copies `s` to `out`, expanding the tags outside code. `base` is the line `s` starts
    /// on, less one; with `literal`, every tag is shown as text (Jekyll's `{% raw %}`).
    fn run(&mut self, s: &str, base: usize, literal: bool) {
        let b = s.as_bytes();
        let mut lines = Lines { at: 0, line: 1 };
        // Searches for a closing tag that failed: a later search would fail too.
        let mut no_closer: HashSet<(Closer, String)> = HashSet::new();
        // Code span searches that failed: a run of this many backticks has no partner
        // before this position (the paragraph's end).
        let mut no_span: HashMap<usize, usize> = HashMap::new();
        let mut ahead = Ahead::default();
        let mut fence: Option<(u8, usize)> = None;
        let (mut prev_blank, mut in_list, mut in_code) = (true, false, false);
        let (mut pos, mut copied) = (0, 0);
        while pos < b.len() {
            if pos == 0 || b[pos - 1] == b'\n' {
                let line_end = s[pos..].find('\n').map_or(s.len(), |n| pos + n + 1);
                let text = s[pos..line_end].trim_end_matches(['\n', '\r']);
                let t = text.trim_start_matches([' ', '\t']);
                // Columns, a tab reaching the next multiple of four.
                let indent = text[..text.len() - t.len()].bytes().fold(0, |col, c| {
                    if c == b'\t' { col / 4 * 4 + 4 } else { col + 1 }
                });
                let blank = t.trim_end().is_empty();
                if let Some((c, n)) = fence {
                    let closes = fence_open(t).is_some_and(|(tc, tn)| tc == c && tn >= n)
                        && t.trim_start_matches(c as char).trim().is_empty();
                    if closes {
                        fence = None;
                    }
                    pos = line_end;
                    continue;
                }
                // In a list, a fence is indented as deep as the item's text.
                if (indent <= 3 || in_list)
                    && let Some(f) = fence_open(t)
                {
                    fence = Some(f);
                    prev_blank = false;
                    pos = line_end;
                    continue;
                }
                if !blank && indent >= 4 && (prev_blank || in_code) && !in_list {
                    in_code = true;
                    prev_blank = false;
                    pos = line_end;
                    continue;
                }
                if !blank {
                    in_code = false;
                    if indent <= 3 && is_list_item(t) {
                        in_list = true;
                    } else if indent == 0 && prev_blank {
                        in_list = false;
                    }
                }
                prev_blank = blank;
            }
            match b[pos] {
                b'`' => {
                    let n = b[pos..].iter().take_while(|c| **c == b'`').count();
                    let skip_to = match no_span.get(&n) {
                        Some(until) if *until > pos => None,
                        _ => match code_span_end(s, pos + n, n) {
                            Ok(end) => Some(end),
                            Err(paragraph_end) => {
                                no_span.insert(n, paragraph_end);
                                None
                            }
                        },
                    };
                    pos = skip_to.unwrap_or(pos + n);
                }
                b'{' => {
                    let tag = match ahead.may_close(s, pos) {
                        true => parse_tag(s, pos),
                        false => None,
                    };
                    let Some(tag) = tag else {
                        pos += 1;
                        continue;
                    };
                    self.out.push_str(&s[copied..pos]);
                    let line = base + lines.line_of(s, pos);
                    let end = self.tag(s, pos, tag, line, literal, &mut no_closer);
                    pos = end;
                    copied = end;
                }
                b'\n' => pos += 1,
                _ => {
                    // On to the next byte that matters.
                    pos += 1;
                    while pos < b.len() && !matches!(b[pos], b'`' | b'{' | b'\n') {
                        pos += 1;
                    }
                }
            }
        }
        self.out.push_str(&s[copied..]);
    }

    /// Writes what the tag at `start` becomes and returns where the text after it (and
    /// after its closing tag, for a paired one) begins.
    fn tag(
        &mut self,
        s: &str,
        start: usize,
        tag: Tag<'_>,
        line: usize,
        literal: bool,
        no_closer: &mut HashSet<(Closer, String)>,
    ) -> usize {
        let mut end = tag.end;
        if literal {
            let text = match tag.kind {
                Kind::HugoShown(t) => t,
                _ => s[start..end].to_string(),
            };
            self.emit(s, start, end, Output::Literal(text));
            return end;
        }
        // A paired tag: its body, and where its closing tag ends.
        let mut paired = |closer: Closer, name: &str| -> Option<(usize, usize)> {
            let key = (closer, name.to_string());
            if no_closer.contains(&key) {
                return None;
            }
            let found = find_closer(s, tag.end, closer, name);
            if found.is_none() {
                no_closer.insert(key);
            }
            found
        };
        let unknown = |name: &str| Found {
            line,
            problem: format!("unknown shortcode {name:?}"),
        };
        let output = match tag.kind {
            Kind::HugoShown(text) => Output::Literal(text),
            Kind::HugoOpen { name, args, closed } => {
                let template = self.templates.map.get(name);
                let takes_body = template.is_some_and(|t| mentions(t, "body"));
                if let Some(t) = template {
                    let body = match (takes_body && !closed)
                        .then(|| paired(Closer::Hugo, name))
                        .flatten()
                    {
                        Some((body_end, close_end)) => {
                            end = close_end;
                            Some(self.body(s, tag.end, body_end, base_of(s, tag.end, line, start)))
                        }
                        None => None,
                    };
                    Output::Block(fill(t, &args, body.as_deref()))
                } else if name == "highlight" && !closed {
                    match paired(Closer::Hugo, name) {
                        Some((body_end, close_end)) => {
                            end = close_end;
                            Output::Markdown(fenced(args.nth(0), &s[tag.end..body_end]))
                        }
                        None => {
                            self.found.push(Found {
                                line,
                                problem: "highlight without {{< /highlight >}}".into(),
                            });
                            Output::Literal(s[start..end].to_string())
                        }
                    }
                } else {
                    match self.builtin(name, &args) {
                        Ok(out) => out,
                        Err(problem) => {
                            self.found.push(match problem {
                                Some(p) => Found {
                                    line,
                                    problem: format!("{name}: {p}"),
                                },
                                None => unknown(name),
                            });
                            Output::Literal(s[start..end].to_string())
                        }
                    }
                }
            }
            Kind::Call { name, args } => match self.templates.map.get(name) {
                Some(t) => Output::Block(fill(t, &args, None)),
                None => match self.zola_builtin(name, &args) {
                    Some(out) => out,
                    None => {
                        self.found.push(unknown(name));
                        Output::Literal(s[start..end].to_string())
                    }
                },
            },
            Kind::BodyCall { name, args } => match self.templates.map.get(name) {
                Some(t) => {
                    let body = match paired(Closer::ZolaEnd, "") {
                        Some((body_end, close_end)) => {
                            end = close_end;
                            Some(self.body(s, tag.end, body_end, base_of(s, tag.end, line, start)))
                        }
                        None => None,
                    };
                    Output::Block(fill(t, &args, body.as_deref()))
                }
                None => {
                    self.found.push(unknown(name));
                    Output::Literal(s[start..end].to_string())
                }
            },
            Kind::Liquid { name, words, rest } => match name {
                "highlight" => match paired(Closer::LiquidEnd, "highlight") {
                    Some((body_end, close_end)) => {
                        end = close_end;
                        Output::Markdown(fenced(words.first().copied(), &s[tag.end..body_end]))
                    }
                    None => {
                        self.found.push(Found {
                            line,
                            problem: "highlight without {% endhighlight %}".into(),
                        });
                        Output::Literal(s[start..end].to_string())
                    }
                },
                "raw" => {
                    // Without `{% endraw %}`, Jekyll refuses the page; the rest is raw here.
                    let (body_end, close_end) =
                        paired(Closer::LiquidEnd, "raw").unwrap_or((s.len(), s.len()));
                    let mut inner = Scan {
                        templates: self.templates,
                        md: self.md,
                        out: String::new(),
                        found: Vec::new(),
                        depth: self.depth,
                    };
                    inner.run(&s[tag.end..body_end], 0, true);
                    self.out.push_str(&inner.out);
                    return close_end;
                }
                "post_url" if !words.is_empty() => Output::Inline(post_url(words[0])),
                "link" if !words.is_empty() => {
                    let target = words[0];
                    Output::Inline(if is_post_path(target) {
                        post_url(target)
                    } else {
                        format!("/{}", target.trim_start_matches('/'))
                    })
                }
                // `{% include image.html url="..." %}`: the site's `shortcodes/image.html`.
                "include" if !words.is_empty() => {
                    let file = words[0];
                    let template = self
                        .templates
                        .map
                        .get(file.strip_suffix(".html").unwrap_or(file));
                    match template {
                        Some(t) => {
                            let args =
                                liquid_args(rest.trim_start().get(file.len()..).unwrap_or(""));
                            Output::Block(fill(t, &args, None))
                        }
                        None => {
                            self.found.push(Found {
                                line,
                                problem: format!("unknown include {file:?}"),
                            });
                            Output::Literal(s[start..end].to_string())
                        }
                    }
                }
                // A Liquid tag from a plugin, `{% youtube id %}`, as a site template.
                name if self.templates.map.contains_key(name) => {
                    Output::Block(fill(&self.templates.map[name], &liquid_args(rest), None))
                }
                _ => {
                    self.found.push(unknown(name));
                    Output::Literal(s[start..end].to_string())
                }
            },
            Kind::Output(expr) => match liquid_output(expr) {
                Some(v) => Output::Inline(v),
                None => {
                    let name = expr.split([' ', '|']).next().unwrap_or(expr);
                    self.found.push(Found {
                        line,
                        problem: format!("unknown Liquid output {name:?}"),
                    });
                    Output::Literal(s[start..end].to_string())
                }
            },
            Kind::HugoClose { .. } | Kind::End => Output::Literal(s[start..end].to_string()),
        };
        self.emit(s, start, end, output);
        end
    }

    /// Expands and renders the body of a paired site template; too deep, it is text.
    fn body(&mut self, s: &str, from: usize, to: usize, base: usize) -> String {
        let body = &s[from..to];
        if self.depth >= DEPTH_MAX {
            return esc(body);
        }
        let saved = std::mem::take(&mut self.out);
        self.depth += 1;
        self.run(body, base, false);
        self.depth -= 1;
        let expanded = std::mem::replace(&mut self.out, saved);
        (self.md)(&expanded)
    }

    /// Hugo's built-ins. `Err(None)`: not one; `Err(Some(problem))`: one, wrongly called.
    fn builtin(&self, name: &str, args: &Args) -> Result<Output, Option<&'static str>> {
        Ok(match name {
            "figure" => {
                let src = args.either("src", 0).ok_or(Some("no src"))?;
                Output::Block(self.figure(src, args))
            }
            "youtube" => {
                let id = args.either("id", 0).ok_or(Some("no video id"))?;
                let mut url = format!("https://www.youtube.com/watch?v={id}");
                if let Some(t) = args
                    .get("start")
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                {
                    url.push_str(&format!("&t={t}"));
                }
                video(&url, args.get("title"), "YouTube")
            }
            "vimeo" => {
                let id = args.either("id", 0).ok_or(Some("no video id"))?;
                video(
                    &format!("https://vimeo.com/{id}"),
                    args.get("title"),
                    "Vimeo",
                )
            }
            "x" | "tweet" | "twitter" => {
                let id = args
                    .get("id")
                    .or_else(|| args.pos.last().map(String::as_str))
                    .filter(|id| !id.is_empty())
                    .ok_or(Some("no post id"))?;
                let user = args
                    .get("user")
                    .or_else(|| (args.pos.len() > 1).then(|| args.pos[0].as_str()));
                let (url, text) = match user {
                    Some(u) => (
                        format!("https://x.com/{u}/status/{id}"),
                        format!("A post by @{u} on X"),
                    ),
                    None => (format!("https://x.com/i/status/{id}"), "A post on X".into()),
                };
                link(&url, &text)
            }
            "gist" => {
                let (user, id) = match (args.either("user", 0), args.either("id", 1)) {
                    (Some(u), Some(i)) => (u, i),
                    _ => return Err(Some("needs a user and a gist id")),
                };
                gist(
                    &format!("https://gist.github.com/{user}/{id}"),
                    args.either("file", 2),
                )
            }
            "ref" | "relref" => {
                let target = args.either("path", 0).ok_or(Some("no page named"))?;
                Output::Inline(post_url(target))
            }
            _ => return Err(None),
        })
    }

    /// Zola's built-in calls (`youtube(id=...)`, `vimeo(id=...)`, `gist(url=...)`).
    fn zola_builtin(&self, name: &str, args: &Args) -> Option<Output> {
        match name {
            "youtube" => Some(video(
                &format!("https://www.youtube.com/watch?v={}", args.get("id")?),
                None,
                "YouTube",
            )),
            "vimeo" => Some(video(
                &format!("https://vimeo.com/{}", args.get("id")?),
                None,
                "Vimeo",
            )),
            "gist" => Some(gist(args.get("url")?, args.get("file"))),
            _ => None,
        }
    }

    /// Hugo's figure: an image, maybe linked, with a title and a caption (markdown).
    fn figure(&self, src: &str, args: &Args) -> String {
        let mut html = String::from("<figure");
        if let Some(c) = args.get("class") {
            html.push_str(&format!(" class=\"{}\"", esc(c)));
        }
        html.push('>');
        let link = args.get("link");
        if let Some(l) = link {
            html.push_str(&format!("<a href=\"{}\">", esc(l)));
        }
        let caption = args.get("caption").filter(|c| !c.is_empty());
        // Without `alt`, the caption's text stands for the image (its tags left out).
        let alt = match args.get("alt") {
            Some(a) => a.to_string(),
            None => without_tags(caption.unwrap_or("")),
        };
        html.push_str(&format!("<img src=\"{}\" alt=\"{}\"", esc(src), esc(&alt)));
        for attr in ["width", "height"] {
            if let Some(v) = args.get(attr) {
                html.push_str(&format!(" {attr}=\"{}\"", esc(v)));
            }
        }
        html.push_str(" loading=\"lazy\">");
        if link.is_some() {
            html.push_str("</a>");
        }
        let title = args.get("title").filter(|t| !t.is_empty());
        if title.is_some() || caption.is_some() {
            html.push_str("<figcaption>");
            if let Some(t) = title {
                html.push_str(&format!("<h4>{}</h4>", esc(t)));
            }
            if let Some(c) = caption {
                let rendered = (self.md)(c);
                let rendered = rendered.trim();
                // One paragraph is shown without its `<p>`, as Hugo does.
                let inner = rendered
                    .strip_prefix("<p>")
                    .and_then(|r| r.strip_suffix("</p>"))
                    .filter(|r| !r.contains("<p>"))
                    .unwrap_or(rendered);
                html.push_str(&format!("<p>{}</p>", one_block(inner)));
            }
            html.push_str("</figcaption>");
        }
        html.push_str("</figure>");
        html
    }

    /// Writes an output where the tag from `start` to `end` stood.
    fn emit(&mut self, s: &str, start: usize, end: usize, output: Output) {
        let place = place(s, start, end);
        match output {
            Output::Inline(text) => self.out.push_str(&text),
            Output::Block(html) => {
                self.out.push_str(&one_block(&html));
                if place.alone {
                    // A blank line after it ends the HTML block before the next line.
                    self.out.push('\n');
                }
            }
            Output::Link(html) if place.alone => {
                self.out.push_str("<p class=\"embed\">");
                self.out.push_str(&html);
                self.out.push_str("</p>\n");
            }
            Output::Link(html) => self.out.push_str(&html),
            Output::Markdown(md) => {
                if !self.out.is_empty() && !self.out.ends_with('\n') {
                    self.out.push('\n');
                }
                self.out.push_str(&md);
                if !matches!(s.as_bytes().get(end), None | Some(b'\n' | b'\r')) {
                    self.out.push('\n');
                }
            }
            Output::Literal(text) if place.alone || place.starts_paragraph => {
                // An HTML block of its own: nothing in it is read as markdown, and it is
                // no paragraph, so no summary starts with it.
                self.out.push_str(SHOWN_OPEN);
                self.out.push_str(&esc(&text));
                self.out.push_str("</p>\n");
                if !place.alone {
                    self.out.push('\n');
                }
            }
            Output::Literal(text) => self.out.push_str(&literal_inline(&text)),
        }
    }
}

/// The line, less one, that the text at `at` stands on, given the line of the tag at
/// `start` (which is at or before `at`).
fn base_of(s: &str, at: usize, line: usize, start: usize) -> usize {
    line - 1 + s[start..at].bytes().filter(|b| *b == b'\n').count()
}

/// `html` without its tags: `<b>A</b> cat` → `A cat`.
fn without_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// A link to a video, kept to a link so the page makes no request to the video site.
fn video(url: &str, title: Option<&str>, site: &str) -> Output {
    let text = match title.filter(|t| !t.trim().is_empty()) {
        Some(t) => format!("{t} (video on {site})"),
        None => format!("Watch the video on {site}"),
    };
    link(url, &text)
}

fn gist(url: &str, file: Option<&str>) -> Output {
    let (url, text) = match file.filter(|f| !f.is_empty()) {
        Some(f) => (
            format!("{url}#file-{}", f.replace('.', "-").to_lowercase()),
            format!("{f} (a gist)"),
        ),
        None => (url.to_string(), "A gist on GitHub".to_string()),
    };
    link(&url, &text)
}

fn link(url: &str, text: &str) -> Output {
    Output::Link(format!("<a href=\"{}\">{}</a>", esc(url), esc(text)))
}

/// Whether a template mentions `{{ key }}`.
fn mentions(template: &str, key: &str) -> bool {
    let mut found = false;
    placeholders(template, |piece| found |= piece == Piece::Key(key));
    found
}

/// A piece of a template: text, or a placeholder's key.
#[derive(PartialEq)]
enum Piece<'t> {
    Text(&'t str),
    Key(&'t str),
}

/// Walks a template's pieces in order.
fn placeholders<'t>(template: &'t str, mut f: impl FnMut(Piece<'t>)) {
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        let after = &rest[at + 2..];
        let key = after.find("}}").map(|close| (after[..close].trim(), close));
        match key {
            Some((key, close))
                if !key.is_empty() && key.bytes().all(|b| is_name_byte(b) || b == b'.') =>
            {
                f(Piece::Text(&rest[..at]));
                f(Piece::Key(key));
                rest = &after[close + 2..];
            }
            _ => {
                f(Piece::Text(&rest[..at + 2]));
                rest = after;
            }
        }
    }
    f(Piece::Text(rest));
}

/// A site template filled in: `{{ arg }}` with its value, escaped (empty when not given),
/// `{{ body }}` with the rendered body.
fn fill(template: &str, args: &Args, body: Option<&str>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    placeholders(template, |piece| match piece {
        Piece::Text(t) => out.push_str(t),
        Piece::Key("body") => out.push_str(body.unwrap_or("")),
        Piece::Key(k) => out.push_str(&esc(args.placeholder(k).unwrap_or(""))),
    });
    out
}

/// A fenced code block of `code` in `lang`, with a fence longer than any backtick run in it.
fn fenced(lang: Option<&str>, code: &str) -> String {
    let code = code
        .strip_prefix("\r\n")
        .or_else(|| code.strip_prefix('\n'))
        .unwrap_or(code);
    let code = code.trim_end_matches([' ', '\t']);
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    // Only a run of three or more could close the fence early.
    let fence = "`".repeat(if longest >= 3 { longest + 1 } else { 3 });
    let lang = lang
        .filter(|l| {
            l.bytes()
                .all(|b| is_name_byte(b) || b == b'+' || b == b'#' || b == b'.')
        })
        .unwrap_or("");
    let mut out = format!("{fence}{lang}\n{code}");
    if !code.is_empty() && !code.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out
}

/// A Liquid tag's arguments: `key="value"`, `key=value`, `key: value` and positional
/// words, quoted or not.
fn liquid_args(rest: &str) -> Args {
    let b = rest.as_bytes();
    let mut args = Args::default();
    let mut i = 0;
    // A value, quoted or up to the next blank or comma.
    let value = |i: &mut usize| -> String {
        if *i < b.len()
            && matches!(b[*i], b'"' | b'\'')
            && let Some((v, end)) = quoted(rest, *i, b.len())
        {
            *i = end;
            return v;
        }
        let from = *i;
        while *i < b.len() && !b[*i].is_ascii_whitespace() && b[*i] != b',' {
            *i += 1;
        }
        rest[from..*i].to_string()
    };
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return args;
        }
        let key_at = i;
        while i < b.len() && (is_name_byte(b[i]) || b[i] == b'.') {
            i += 1;
        }
        if i > key_at && matches!(b.get(i), Some(b'=' | b':')) {
            let key = rest[key_at..i].to_string();
            i = skip_ws(b, i + 1);
            let v = value(&mut i);
            args.named.push((key, v));
        } else {
            i = key_at;
            let v = value(&mut i);
            if i == key_at {
                // A character no value starts with (a stray quote): skip it.
                i += rest[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
            args.pos.push(v);
        }
    }
}

/// Jekyll's `{{ site.baseurl }}` and `{{ site.url }}` (nothing: nib's links are rooted)
/// and `{{ "/path" | relative_url }}` (the path).
fn liquid_output(expr: &str) -> Option<String> {
    let expr = expr.trim();
    match expr {
        "site.baseurl" | "site.url" => return Some(String::new()),
        _ => {}
    }
    let (value, filter) = expr.split_once('|')?;
    let value = value.trim();
    if !matches!(filter.trim(), "relative_url" | "absolute_url") {
        return None;
    }
    let q = value.chars().next()?;
    (matches!(q, '"' | '\'') && value.len() >= 2 && value.ends_with(q))
        .then(|| value[1..value.len() - 1].to_string())
}

fn is_post_path(target: &str) -> bool {
    let path = target.split('#').next().unwrap_or(target);
    path.ends_with(".md") || path.ends_with(".markdown")
}

/// A list item's marker at the start of `t`: `-`, `*`, `+` or a number with `.` or `)`,
/// followed by a blank or the line's end.
fn is_list_item(t: &str) -> bool {
    let b = t.as_bytes();
    let marker = match b.first() {
        Some(b'-' | b'*' | b'+') => 1,
        Some(c) if c.is_ascii_digit() => {
            let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
            if n <= 9 && matches!(b.get(n), Some(b'.' | b')')) {
                n + 1
            } else {
                return false;
            }
        }
        _ => return false,
    };
    matches!(b.get(marker), None | Some(b' ' | b'\t'))
}

/// A fence opening a fenced code block (a run of three or more backticks or tildes; a
/// backtick fence's info string has no backtick): its character and length.
pub(crate) fn fence_open(t: &str) -> Option<(u8, usize)> {
    let c = *t.as_bytes().first().filter(|c| matches!(c, b'`' | b'~'))?;
    let n = t.bytes().take_while(|b| *b == c).count();
    (n >= 3 && (c == b'~' || !t[n..].contains('`'))).then_some((c, n))
}

/// Where the code span opened by `n` backticks just before `from` ends: past its closing
/// run of exactly `n` backticks, searched up to the paragraph's end (a blank line or a
/// fence). When there is none, that end.
fn code_span_end(s: &str, from: usize, n: usize) -> Result<usize, usize> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'`' => {
                let run = b[i..].iter().take_while(|c| **c == b'`').count();
                if run == n {
                    return Ok(i + run);
                }
                i += run;
            }
            b'\n' => {
                let next = s[i + 1..].find('\n').map_or(s.len(), |k| i + 1 + k);
                let line = s[i + 1..next].trim();
                // A blank line ends the paragraph, and so does a fence.
                if line.is_empty() || fence_open(line).is_some() {
                    return Err(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Err(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the markdown renderer: marks what it was given.
    fn md(s: &str) -> String {
        format!("<md>{}</md>", s.trim())
    }

    fn run(body: &str, templates: &Templates) -> (String, Vec<Found>) {
        let (out, found) = expand(body, templates, &md);
        (out.into_owned(), found)
    }

    #[test]
    fn every_form_expands() {
        let t = Templates::with(&[
            ("img", "<img src=\"{{ src }}\" alt=\"{{ caption }}\">"),
            ("jk", "<img src=\"{{ include.url }}\">"),
            (
                "note",
                "<aside class=\"{{ kind }}\">\n\n{{ body }}\n</aside>",
            ),
            ("pos", "<b>{{ 0 }}-{{ 1 }}</b>"),
        ]);
        let cases: &[(&str, &str)] = &[
            // Hugo built-ins.
            (
                "{{< figure src=\"/a.png\" alt=\"An A\" caption=\"The *A*\" title=\"T\" link=\"/big.png\" >}}",
                "<figure><a href=\"/big.png\"><img src=\"/a.png\" alt=\"An A\" loading=\"lazy\"></a><figcaption><h4>T</h4><p><md>The *A*</md></p></figcaption></figure>",
            ),
            (
                "{{< figure src=\"c.png\" caption=\"<span class=\\\"n\\\">Figure 1: </span>Main\" >}}",
                "<img src=\"c.png\" alt=\"Figure 1: Main\" loading=\"lazy\"><figcaption><p><md><span class=\"n\">Figure 1: </span>Main</md></p>",
            ),
            (
                "{{% figure src=\"b.jpg\" %}}",
                "<figure><img src=\"b.jpg\" alt=\"\" loading=\"lazy\"></figure>",
            ),
            (
                "{{< youtube dQw4w9WgXcQ >}}",
                "<a href=\"https://www.youtube.com/watch?v=dQw4w9WgXcQ\">Watch the video on YouTube</a>",
            ),
            (
                "{{< youtube id=\"abc\" title=\"Talk\" >}}",
                "<a href=\"https://www.youtube.com/watch?v=abc\">Talk (video on YouTube)</a>",
            ),
            (
                "{{< vimeo 146022717 >}}",
                "href=\"https://vimeo.com/146022717\"",
            ),
            (
                "{{< x user=\"SanDiegoZoo\" id=\"1453110110599868418\" >}}",
                "<a href=\"https://x.com/SanDiegoZoo/status/1453110110599868418\">A post by @SanDiegoZoo on X</a>",
            ),
            (
                "{{< tweet 877500564405444608 >}}",
                "https://x.com/i/status/877500564405444608",
            ),
            (
                "{{< tweet user=\"u\" id=\"7\" >}}",
                "https://x.com/u/status/7",
            ),
            (
                "{{< gist spf13 7896402 >}}",
                "href=\"https://gist.github.com/spf13/7896402\"",
            ),
            (
                "{{< gist spf13 7896402 \"img.html\" >}}",
                "https://gist.github.com/spf13/7896402#file-img-html",
            ),
            (
                "{{< highlight go \"linenos=table\" >}}\nfunc main() {}\n{{< /highlight >}}",
                "```go\nfunc main() {}\n```",
            ),
            (
                "[x]({{< ref \"other-post.md\" >}})",
                "[x](/posts/other-post/)",
            ),
            (
                "[x]({{< relref \"/blog/2020-01-02-b.md#s\" >}})",
                "[x](/posts/b/#s)",
            ),
            ("{{< ref \"bundle/index.md\" >}}", "/posts/bundle/"),
            // Hugo's way of showing a shortcode.
            (
                "{{</* figure src=\"x\" */>}}",
                "{{&lt; figure src=&quot;x&quot; &gt;}}",
            ),
            // Jekyll.
            (
                "{% highlight ruby linenos %}\ndef x; end\n{% endhighlight %}",
                "```ruby\ndef x; end\n```",
            ),
            (
                "{%- highlight md -%}\n```\nfenced\n```\n{%- endhighlight -%}",
                "````md\n```\nfenced\n```\n````",
            ),
            ("{% post_url 2010-07-21-name %}", "/posts/name/"),
            ("{% post_url /2010/2010-07-21-name %}", "/posts/name/"),
            ("{% link _posts/2016-07-26-name.md %}", "/posts/name/"),
            ("{% link assets/a.pdf %}", "/assets/a.pdf"),
            ("![a]({{ site.baseurl }}/img/a.png)", "![a](/img/a.png)"),
            (
                "![a]({{ \"/img/a.png\" | relative_url }})",
                "![a](/img/a.png)",
            ),
            (
                "{% raw %}{{< figure src=\"x\" >}} {% post_url a %}{% endraw %}",
                "{{&lt; figure src=&quot;x&quot; &gt;}}",
            ),
            // Site templates, in all three syntaxes; they override built-ins.
            (
                "{{< img src=\"a.png\" caption=\"<b>&\" >}}",
                "<img src=\"a.png\" alt=\"&lt;b&gt;&amp;\">",
            ),
            (
                "{{ img(src=\"z.svg\", caption='Zed') }}",
                "<img src=\"z.svg\" alt=\"Zed\">",
            ),
            ("{{img(src=\"z.svg\")}}", "<img src=\"z.svg\" alt=\"\">"),
            (
                "{{< note kind=\"warn\" >}}Be *careful*{{< /note >}}",
                "<aside class=\"warn\">&#10;\n<md>Be *careful*</md>\n</aside>",
            ),
            (
                "{% note(kind=\"tip\") %}\nA {{< img src=\"i\" >}} tip\n{% end %}",
                "<aside class=\"tip\">&#10;\n<md>A <img src=\"i\" alt=\"\"> tip</md>\n</aside>",
            ),
            ("{{< pos a b >}}", "<b>a-b</b>"),
            // Jekyll includes and plugin tags, as site templates.
            (
                "{% include img.html src=\"a b.png\" caption='C' %}",
                "<img src=\"a b.png\" alt=\"C\">",
            ),
            ("{% include pos %}", "<b>-</b>"),
            (
                "{% include jk.html url=\"/u.png\" %}",
                "<img src=\"/u.png\">",
            ),
            ("{% pos one \"two three\" %}", "<b>one-two three</b>"),
            (
                "{% img src: x.png, caption: y %}",
                "<img src=\"x.png\" alt=\"y\">",
            ),
            ("{{< img src=\"a\" />}}", "<img src=\"a\" alt=\"\">"),
            // Zola built-ins.
            (
                "{{ youtube(id=\"xyz\") }}",
                "https://www.youtube.com/watch?v=xyz",
            ),
            (
                "{{ gist(url=\"https://gist.github.com/a/b\") }}",
                "https://gist.github.com/a/b",
            ),
            // Unknown: shown as text, as a block when alone on a line.
            (
                "{{< gallery dir=\"x\" >}}",
                "<p class=\"shortcode\">{{&lt; gallery dir=&quot;x&quot; &gt;}}</p>",
            ),
            (
                "a {{< gallery \"x\" >}} b",
                "a &#123;&#123;&#60; gallery &#34;x&#34; &#62;&#125;&#125; b",
            ),
            (
                "{% include newsletter.html %}",
                "<p class=\"shortcode\">{% include newsletter.html %}</p>",
            ),
            (
                "Go {{ page.title }} now",
                "Go &#123;&#123; page&#46;title &#125;&#125; now",
            ),
            // Not tags at all.
            (
                "$x^{{2}}$ and {{2}} and { {< a >}}",
                "$x^{{2}}$ and {{2}} and { {< a >}}",
            ),
            ("`{{< figure src=\"x\" >}}`", "`{{< figure src=\"x\" >}}`"),
            (
                "```\n{{< youtube x >}}\n```\n",
                "```\n{{< youtube x >}}\n```\n",
            ),
            ("    {{< youtube x >}}\n", "    {{< youtube x >}}\n"),
            ("``a ` {{< youtube x >}} ``", "``a ` {{< youtube x >}} ``"),
            (
                "1. Step\n\n    ```\n    {{< youtube x >}}\n\n    ```\n",
                "    {{< youtube x >}}\n",
            ),
            (
                "A ` tick\n```\n{{< youtube x >}}\n```\n",
                "```\n{{< youtube x >}}\n```",
            ),
        ];
        for (body, want) in cases {
            let (out, _) = run(body, &t);
            assert!(out.contains(want), "{body:?}\n got {out:?}\nwant {want:?}");
        }
        // A site template overrides the built-in of its name, in either syntax.
        let t = Templates::with(&[(
            "figure",
            "<figure class=\"mine\"><img src=\"{{ src }}\" alt=\"{{ caption }}\"></figure>",
        )]);
        for body in [
            "{{ figure(src=\"a.svg\", caption=\"A \\\"quoted\\\" one\") }}",
            "{{< figure src=\"a.svg\" caption=\"A \\\"quoted\\\" one\" >}}",
        ] {
            let (out, _) = run(body, &t);
            assert_eq!(
                out,
                "<figure class=\"mine\"><img src=\"a.svg\" alt=\"A &quot;quoted&quot; one\"></figure>\n"
            );
        }
    }

    #[test]
    fn unknown_tags_are_found_with_their_lines() {
        let body = "intro\n\n{{< gallery >}}\n\n```\n{{< hidden >}}\n```\n\ntext {% include x %} and\n{{ widget(a=1) }}\n{{< youtube >}}\n{{< highlight go >}}\nno end\n{{ page.x }}";
        let (_, found) = run(body, &Templates::default());
        let got: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.problem.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, "unknown shortcode \"gallery\""),
                (9, "unknown include \"x\""),
                (10, "unknown shortcode \"widget\""),
                (11, "youtube: no video id"),
                (12, "highlight without {{< /highlight >}}"),
                (14, "unknown Liquid output \"page.x\""),
            ]
        );
        // Inside a paired body, lines count from the file's start.
        let t = Templates::with(&[("note", "<div>{{ body }}</div>")]);
        let (_, found) = run("{{< note >}}\n\n{{< nope >}}\n{{< /note >}}", &t);
        assert_eq!(found[0].line, 3);
    }

    #[test]
    fn a_standalone_block_ends_before_the_next_line() {
        let (out, _) = run(
            "{{< figure src=\"a\" >}}\nText after\n",
            &Templates::default(),
        );
        assert!(out.contains("</figure>\n\nText after"), "{out:?}");
        // A literal opening a paragraph becomes a block of its own.
        let (out, _) = run("{{< nope >}} then text", &Templates::default());
        assert!(
            out.starts_with("<p class=\"shortcode\">{{&lt; nope &gt;}}</p>\n\n then"),
            "{out:?}"
        );
    }

    #[test]
    fn nothing_to_expand_is_borrowed() {
        let (out, found) = expand("plain { text } here", &Templates::default(), &md);
        assert!(matches!(out, Cow::Borrowed(_)) && found.is_empty());
    }

    #[test]
    fn post_urls() {
        for (r, want) in [
            ("other-post.md", "/posts/other-post/"),
            ("2010-07-21-name", "/posts/name/"),
            ("_posts/2016-07-26-Name Here.markdown", "/posts/name-here/"),
            ("/blog/my-post/index.md", "/posts/my-post/"),
            ("/posts/x/", "/posts/x/"),
            ("a.md#part", "/posts/a/#part"),
            ("", "/"),
        ] {
            assert_eq!(post_url(r), want, "{r}");
        }
    }

    #[test]
    fn tags_parse() {
        let t = parse_tag("{{< x a=\"1 >}}\" b `c d` e >}}", 0).unwrap();
        assert_eq!(
            t.kind,
            Kind::HugoOpen {
                name: "x",
                args: Args {
                    pos: vec!["b".into(), "c d".into(), "e".into()],
                    named: vec![("a".into(), "1 >}}".into())],
                },
                closed: false,
            }
        );
        for text in [
            "{{<",
            "{{< >}}",
            "{{< x",
            "{{< x \"open >}}",
            "{{ x(a=1 }}",
            "{% %}",
            "{%",
            "{{ 'a' }",
        ] {
            assert!(parse_tag(text, 0).is_none(), "{text}");
        }
    }

    /// User input: random and unbalanced strings of tag pieces never panic, and run in
    /// time linear in their length.
    #[test]
    fn random_and_unbalanced_input_never_panics() {
        const PIECES: &[&str] = &[
            "{{<",
            ">}}",
            "{{%",
            "%}}",
            "{{",
            "}}",
            "{%",
            "%}",
            "{%-",
            "-%}",
            " ",
            "\n",
            "\n\n",
            "figure",
            "highlight",
            "/highlight",
            "raw",
            "endraw",
            "endhighlight",
            "note",
            "/note",
            "end",
            "img(",
            ")",
            "src=",
            "\"",
            "'",
            "`",
            "```",
            "    ",
            "- ",
            "é",
            "/*",
            "*/",
            "youtube",
            "x",
            "a=1",
            "[",
            "]",
            ",",
            "\\",
            "$",
            "{",
            "}",
            "<",
            ">",
            "%",
            "{{< note >}}",
            "{{< /note >}}",
            "{% note() %}",
            "{% end %}",
            "{% raw %}",
            "{{< highlight go >}}",
            "{% highlight r %}",
            "\r\n",
            "~~~",
            "{{ page.x }}",
            "日本",
            "(",
            "=",
            "\t",
            "1. ",
        ];
        // Long runs, so tags reach the length limit at every byte of a character.
        let long = [" ".repeat(4090), "é".repeat(2047), "x".repeat(4093)];
        let t = Templates::with(&[
            ("note", "<div>{{ body }}</div>"),
            ("img", "<i>{{ src }}</i>"),
        ]);
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut body = String::new();
            for _ in 0..(1 + next(60)) {
                match next(PIECES.len() + 1) {
                    n if n < PIECES.len() => body.push_str(PIECES[n]),
                    _ => body.push_str(&long[next(long.len())]),
                }
            }
            let _ = expand(&body, &t, &|s| md(s));
        }
        // Many unclosed openings, deep nesting and long unmatched backtick runs stay quick.
        let limit =
            std::time::Duration::from_millis(if cfg!(debug_assertions) { 5000 } else { 500 });
        for body in [
            "{{< note >}} ".repeat(20_000),
            "{{< highlight go >}} ".repeat(20_000),
            "{% raw %}{{< x >}}".repeat(20_000),
            "{% note() %}".repeat(20_000),
            format!(
                "{}{}",
                "{{< note >}}".repeat(50),
                "{{< /note >}}".repeat(50)
            ),
            (1..300)
                .map(|n| format!("{} {{{{< x >}}}} ", "`".repeat(n)))
                .collect(),
            "{{< x a=\"".repeat(20_000),
        ] {
            let started = std::time::Instant::now();
            let _ = expand(&body, &t, &|s| md(s));
            assert!(
                started.elapsed() < limit,
                "{:?} for {}",
                started.elapsed(),
                &body[..40]
            );
        }
    }
}
