//! A migrated blog's old URLs, as pure functions: the key an alias is stored and looked up
//! under (so `/a/b`, `/a/b/`, `/a/b.html` and `/a/b/index.html` are one old URL), and the
//! site-wide `old_permalinks` pattern (`/:year/:month/:day/:slug/`), Jekyll's and Hugo's
//! placeholders, matched against a path no route claims. The handler that answers the
//! 301 is `handlers::site::old_url`; the database holds the aliases.

/// The key of an old URL path: without its leading and trailing slashes, a trailing
/// `index.html` or `.html`/`.htm`, and a query. `None` for the site root or a path with
/// an empty, `.` or `..` segment, which can be nobody's old URL.
pub(crate) fn alias_key(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    // A full URL (`https://old.example/a/`): only its path is an old URL of this site.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    };
    let mut p = path.trim_matches('/');
    for end in ["/index.html", "index.html", ".html", ".htm"] {
        if let Some(rest) = p.strip_suffix(end) {
            p = rest.trim_end_matches('/');
            break;
        }
    }
    if p.is_empty() || p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    Some(p.to_string())
}

/// One piece of an `old_permalinks` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// Four digits.
    Year,
    /// Two digits (`:month`, `:day`), or one or two (`:i_month`, `:i_day`).
    Month {
        padded: bool,
    },
    Day {
        padded: bool,
    },
    /// The post's slug (`:slug`, `:title`, Hugo's `:filename`): one or more characters
    /// of one segment.
    Slug,
    /// Anything within one segment, not checked (Hugo's `:section`).
    Segment,
    /// Jekyll's `:categories`: any number of segments (none included), not checked.
    Categories,
}

/// A parsed `old_permalinks` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pieces: Vec<Piece>,
}

/// What a path matched by a [`Pattern`] says about its post.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Matched {
    pub slug: String,
    pub year: Option<i64>,
    pub month: Option<u32>,
    pub day: Option<u32>,
}

/// The placeholders `old_permalinks` understands, longest first so `:i_month` is not read
/// as `:i` followed by text.
const PLACEHOLDERS: [(&str, Piece); 10] = [
    (":categories", Piece::Categories),
    (":filename", Piece::Slug),
    (":i_month", Piece::Month { padded: false }),
    (":section", Piece::Segment),
    (":i_day", Piece::Day { padded: false }),
    (":month", Piece::Month { padded: true }),
    (":title", Piece::Slug),
    (":year", Piece::Year),
    (":slug", Piece::Slug),
    (":day", Piece::Day { padded: true }),
];

impl Pattern {
    /// Parses a pattern such as `/:year/:month/:day/:slug/` or `/blog/:slug.html`. It must
    /// hold `:slug` (or `:title`, `:filename`) once; the error names what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Pattern, String> {
        let key = alias_key(text.trim())
            .ok_or_else(|| format!("{text:?} is not a path such as /:year/:month/:day/:slug/"))?;
        let mut pieces = Vec::new();
        let mut rest = key.as_str();
        let mut slugs = 0;
        while !rest.is_empty() {
            if rest.starts_with(':') {
                let Some((name, piece)) = PLACEHOLDERS.iter().find(|(n, _)| rest.starts_with(n))
                else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| *c != '/' && *c != '.')
                        .collect();
                    return Err(format!(
                        "{name} is not a placeholder nib knows (use :year :month :day :i_month :i_day :slug :title :filename :section :categories)"
                    ));
                };
                slugs += (*piece == Piece::Slug) as usize;
                pieces.push(piece.clone());
                rest = &rest[name.len()..];
            } else {
                let end = rest.find(':').unwrap_or(rest.len());
                pieces.push(Piece::Text(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        if slugs != 1 {
            return Err(format!("{text:?} must hold :slug (or :title) once"));
        }
        Ok(Pattern { pieces })
    }

    /// Matches a request path (any of its forms: with or without a trailing slash or
    /// `.html`), and says what it names.
    pub(crate) fn matches(&self, path: &str) -> Option<Matched> {
        let key = alias_key(path)?;
        let mut out = Matched::default();
        match_from(&self.pieces, &key, &mut out).then_some(out)
    }
}

/// Backtracking match of `pieces` against all of `s`. Patterns have a handful of pieces
/// and paths a handful of segments, so the search is tiny.
fn match_from(pieces: &[Piece], s: &str, out: &mut Matched) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return s.is_empty();
    };
    let digits = |min: usize, max: usize| -> Vec<(u32, usize)> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (min..=max.min(n))
            .rev()
            .filter_map(|len| Some((s[..len].parse().ok()?, len)))
            .collect()
    };
    match first {
        Piece::Text(t) => s
            .strip_prefix(t.as_str())
            .is_some_and(|r| match_from(rest, r, out)),
        Piece::Year => digits(4, 4).into_iter().any(|(v, len)| {
            out.year = Some(v as i64);
            match_from(rest, &s[len..], out)
        }),
        Piece::Month { padded } | Piece::Day { padded } => {
            let (min, max) = if *padded { (2, 2) } else { (1, 2) };
            let is_month = matches!(first, Piece::Month { .. });
            digits(min, max).into_iter().any(|(v, len)| {
                if is_month {
                    out.month = Some(v);
                } else {
                    out.day = Some(v);
                }
                match_from(rest, &s[len..], out)
            })
        }
        Piece::Slug | Piece::Segment => {
            let seg = s.find('/').unwrap_or(s.len());
            // Longest first, so a slug with dashes and dots keeps them.
            (1..=seg).rev().any(|len| {
                if *first == Piece::Slug {
                    out.slug = s[..len].to_string();
                }
                match_from(rest, &s[len..], out)
            })
        }
        Piece::Categories => {
            // No segment, or whole segments: the pattern's `/` after `:categories` then
            // matches the `/` after them, and is skipped when there are none.
            let mut ends: Vec<usize> = s.match_indices('/').map(|(i, _)| i).collect();
            ends.push(s.len());
            ends.into_iter()
                .rev()
                .any(|end| match_from(rest, &s[end..], out))
                || match_from(&strip_slash(rest), s, out)
        }
    }
}

/// `rest` with the leading `/` of its first text piece removed.
fn strip_slash(rest: &[Piece]) -> Vec<Piece> {
    let mut v = rest.to_vec();
    if let Some(Piece::Text(t)) = v.first_mut()
        && t.starts_with('/')
    {
        t.remove(0);
        if t.is_empty() {
            v.remove(0);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_keys_ignore_slashes_and_html() {
        let cases = [
            ("/2015/10/26/my-post/", Some("2015/10/26/my-post")),
            ("/2015/10/26/my-post", Some("2015/10/26/my-post")),
            ("2015/10/26/my-post.html", Some("2015/10/26/my-post")),
            ("/2015/10/26/my-post/index.html", Some("2015/10/26/my-post")),
            ("/old.htm", Some("old")),
            ("/old/?x=1", Some("old")),
            ("https://old.example.com/a/b/", Some("a/b")),
            ("/", None),
            ("", None),
            ("/index.html", None),
            ("/a//b/", None),
            ("/a/../b/", None),
        ];
        for (path, want) in cases {
            assert_eq!(alias_key(path).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn old_permalink_patterns_match_their_url_space() {
        // (pattern, path, slug, year, month, day)
        type Case = (
            &'static str,
            &'static str,
            Option<(&'static str, Option<i64>, Option<u32>, Option<u32>)>,
        );
        let cases: &[Case] = &[
            (
                "/:year/:month/:day/:slug/",
                "/2015/10/26/my-post/",
                Some(("my-post", Some(2015), Some(10), Some(26))),
            ),
            (
                "/:year/:month/:day/:slug/",
                "/2015/10/26/my-post.html",
                Some(("my-post", Some(2015), Some(10), Some(26))),
            ),
            ("/:year/:month/:day/:slug/", "/2015/10/my-post/", None),
            ("/:year/:month/:day/:slug/", "/2015/1/26/my-post/", None),
            (
                "/:year/:i_month/:i_day/:title.html",
                "/2015/1/6/hello.world.html",
                Some(("hello.world", Some(2015), Some(1), Some(6))),
            ),
            (
                "/:categories/:year/:month/:day/:title.html",
                "/rust/release/2015/10/26/hi.html",
                Some(("hi", Some(2015), Some(10), Some(26))),
            ),
            (
                "/:categories/:year/:month/:day/:title.html",
                "/2015/10/26/hi.html",
                Some(("hi", Some(2015), Some(10), Some(26))),
            ),
            ("/blog/:slug/", "/blog/x/", Some(("x", None, None, None))),
            ("/blog/:slug/", "/other/x/", None),
            (
                "/:section/:slug/",
                "/notes/x",
                Some(("x", None, None, None)),
            ),
            ("/:year/:slug/", "/2015/a/b/", None),
        ];
        for (pattern, path, want) in cases {
            let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            let got = p.matches(path);
            let want = want.map(|(slug, year, month, day)| Matched {
                slug: slug.to_string(),
                year,
                month,
                day,
            });
            assert_eq!(got, want, "{pattern} {path}");
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        let cases = [
            ("/:year/:month/", "must hold :slug"),
            ("/:year/:slug/:slug/", "must hold :slug"),
            ("/:yday/:slug/", ":yday is not a placeholder"),
            ("/", "is not a path"),
        ];
        for (pattern, want) in cases {
            let e = Pattern::parse(pattern).unwrap_err();
            assert!(e.contains(want), "{pattern}: {e}");
        }
    }
}
