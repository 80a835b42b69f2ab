//! The rules of short links, as pure functions: how codes are generated (a keyed
//! permutation of a counter, written in base62), which custom slugs are allowed, how a
//! target URL is checked and normalised, which user agents are link-preview bots that must
//! not count as clicks, the in-memory click batch, the 30-day sparkline, the service a
//! `share_url` posts to, what a phone's share target sent, and the plain words the owner's
//! forms show for a refused field. Nothing here touches the network or the database, so
//! every rule has a table-driven test beside it.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use url::Url;

/// The largest target nib accepts, in bytes, before and after normalisation.
pub(crate) const MAX_URL: usize = 2048;
/// Generated codes are permutations of `[0, 62^6)`, so each fits in six base62 characters.
const CODE_SPACE: u64 = 62u64.pow(6);
/// The Feistel network works on 36 bits (two halves of 18), the smallest even width that
/// covers `CODE_SPACE`; values that land outside are walked again (cycle walking), which
/// keeps the mapping a permutation of `CODE_SPACE` itself.
const HALF_BITS: u32 = 18;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const ROUNDS: u8 = 8;

pub(crate) use crate::routes::{MAX_SLUG, encode_component, is_code_like, is_reserved};

/// A keyed, reversible scramble of the link counter: the n-th generated link gets
/// `code(key, n)`. Consecutive counters give unrelated codes, and without the key (random,
/// kept in the database) the next code cannot be predicted from earlier ones.
pub(crate) struct Codes {
    key: [u8; 32],
}

impl Codes {
    pub fn new(key: [u8; 32]) -> Codes {
        Codes { key }
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update([round]);
        h.update(half.to_le_bytes());
        let d = h.finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) & HALF_MASK
    }

    fn encrypt_once(&self, v: u64) -> u64 {
        let (mut l, mut r) = (v >> HALF_BITS, v & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF_BITS) | r
    }

    #[cfg(test)]
    fn decrypt_once(&self, v: u64) -> u64 {
        let (mut l, mut r) = (v >> HALF_BITS, v & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << HALF_BITS) | r
    }

    /// The permuted number for counter `n` (taken modulo the code space).
    pub fn permute(&self, n: u64) -> u64 {
        let mut v = self.encrypt_once(n % CODE_SPACE);
        while v >= CODE_SPACE {
            v = self.encrypt_once(v);
        }
        v
    }

    #[cfg(test)]
    fn unpermute(&self, v: u64) -> u64 {
        let mut n = self.decrypt_once(v);
        while n >= CODE_SPACE {
            n = self.decrypt_once(n);
        }
        n
    }

    /// The code of the n-th generated link: at most six characters of `[0-9A-Za-z]`.
    pub fn code(&self, n: u64) -> String {
        base62::encode(self.permute(n))
    }
}

/// Checks a custom slug: `[0-9A-Za-z_-]{1,64}` and not a reserved name.
pub(crate) fn check_slug(slug: &str) -> Result<(), String> {
    if slug.is_empty() {
        return Err("slug is empty".into());
    }
    if slug.len() > MAX_SLUG {
        return Err(format!("slug is longer than {MAX_SLUG} characters"));
    }
    if !is_code_like(slug) {
        return Err("slug may only contain letters, digits, _ and -".into());
    }
    if is_reserved(slug) {
        return Err(format!("slug {slug:?} is reserved by the site"));
    }
    Ok(())
}

/// Checks and normalises a link target. Leading and trailing whitespace is dropped (forms
/// add it); any control character left is refused. The result is the URL crate's
/// serialisation: IDN hosts in punycode and the path percent-encoded, so it is ASCII and
/// safe in a `Location` header. `base` is the site's own base URL.
pub(crate) fn normalize_target(input: &str, base: &str) -> Result<String, String> {
    let s = input.trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        return Err("url is required".into());
    }
    if s.len() > MAX_URL {
        return Err(format!("url is longer than {MAX_URL} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("url contains control characters".into());
    }
    let url = Url::parse(s).map_err(|e| format!("url is not valid ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("url has no host".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not contain a user name or password".into());
    }
    if let Ok(own) = Url::parse(base)
        && own.host_str().is_some_and(|h| same_host(h, host))
    {
        let prefix = own.path().trim_end_matches('/');
        let path = url.path().strip_prefix(prefix).unwrap_or(url.path());
        let path = if path.is_empty() { "/" } else { path };
        // Only the blog's pages and files may be shortened: every other path there is the
        // short-link space (or the admin and API), and a short link to a short link would
        // be a loop or a way to hide one link behind another.
        if !crate::routes::is_public(path) {
            return Err("url points into this site's own short links".into());
        }
    }
    let out = url.to_string();
    if out.len() > MAX_URL {
        return Err(format!("url is longer than {MAX_URL} bytes once encoded"));
    }
    Ok(out)
}

/// What a refusal of [`normalize_target`] or [`check_slug`] (or a taken slug) says to a
/// person filling in a form: the API keeps the short technical message, the owner's forms
/// show this one next to the field. Matched on the start of the technical message, which
/// names its field first.
pub(crate) fn plainly(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("url is required", "Type or paste the address to shorten."),
        (
            "url is longer",
            "That address is too long: at most 2,048 characters.",
        ),
        (
            "url contains control",
            "That address has characters an address cannot have (a tab or a line break?).",
        ),
        (
            "url is not valid",
            "That address needs to start with http:// or https://",
        ),
        (
            "url must be http",
            "That address needs to start with http:// or https://",
        ),
        (
            "url has no host",
            "That address needs a site name after http:// or https://",
        ),
        (
            "url must not contain a user",
            "Take the user name and password out of that address.",
        ),
        (
            "url points into",
            "That address is one of this site's own short links; shorten where it leads instead.",
        ),
        (
            "slug is empty",
            "Type a short name, or leave the field empty for a generated one.",
        ),
        (
            "slug is longer",
            "That short name is too long: at most 64 characters.",
        ),
        (
            "slug may only",
            "A short name may only use letters, digits, - and _ (no spaces).",
        ),
    ];
    for (start, plain) in WORDS {
        if message.starts_with(start) {
            return (*plain).to_string();
        }
    }
    if message.contains("is reserved") {
        return "That short name is one of the site's own pages; choose another.".into();
    }
    if message.contains("is taken") {
        return "That short name is taken by another link; choose another.".into();
    }
    message.to_string()
}

/// Which form field a refusal from [`plainly`]'s list is about: `url` or `slug`.
pub(crate) fn field_of(message: &str) -> &'static str {
    if message.starts_with("slug") {
        "slug"
    } else {
        "url"
    }
}

/// Whether two hosts as the URL parser gives them (lowercase, IDN already in punycode) name
/// the same site. A trailing dot makes a name fully qualified and changes nothing else, so
/// it is ignored.
///
/// Regression: `https://example.org./abc` was taken for another site, so a short link
/// could point at one of the site's own short links.
fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.') == b.trim_end_matches('.')
}

/// Cleans a title: control characters become spaces, runs of space collapse, and it is cut
/// to 300 characters (titles come from arbitrary pages through the bookmarklet).
pub(crate) fn clean_title(t: &str) -> String {
    let mut out = String::new();
    for word in t
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(300) {
        Some((i, _)) => out[..i].to_string(),
        None => out,
    }
}

/// Link-preview fetchers and crawlers, matched case-insensitively anywhere in the
/// User-Agent. They fetch a link when it is posted, not when a person follows it.
const BOTS: &[&str] = &[
    "twitterbot",
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalagent",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "linkedinbot",
    "whatsapp",
    "mastodon",
    "cardyb",
    "bluesky",
    "skypeuripreview",
    "redditbot",
    "pinterest",
    "embedly",
    "iframely",
    "vkshare",
    "googlebot",
    "google-inspectiontool",
    "bingbot",
    "applebot",
    "duckduckbot",
    "yandexbot",
    "baiduspider",
    "petalbot",
    "ahrefsbot",
    "semrushbot",
    "crawler",
    "spider",
];

pub(crate) fn is_bot(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    BOTS.iter().any(|b| ua.contains(b))
}

/// Clicks counted since the last write, per link id. The request loop adds to it and
/// drains it into one transaction at most once a second.
#[derive(Debug, Default)]
pub(crate) struct ClickBatch {
    pending: HashMap<i64, u64>,
}

impl ClickBatch {
    pub fn add(&mut self, id: i64) {
        *self.pending.entry(id).or_insert(0) += 1;
    }

    pub fn pending(&self, id: i64) -> u64 {
        self.pending.get(&id).copied().unwrap_or(0)
    }

    pub fn forget(&mut self, id: i64) {
        self.pending.remove(&id);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many links have clicks waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// The counts to write, in a stable order; the batch keeps them until [`commit`] says
    /// they are stored, so a failed write (a busy database) loses nothing.
    pub fn snapshot(&self) -> Vec<(i64, u64)> {
        let mut v: Vec<(i64, u64)> = self.pending.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_unstable();
        v
    }

    /// Subtracts what was written (clicks that arrived meanwhile stay pending).
    pub fn commit(&mut self, written: &[(i64, u64)]) {
        for (id, n) in written {
            if let Some(p) = self.pending.get_mut(id) {
                *p = p.saturating_sub(*n);
                if *p == 0 {
                    self.pending.remove(id);
                }
            }
        }
        // Give back the table's memory after a burst over many links.
        if self.pending.is_empty() && self.pending.capacity() > 64 {
            self.pending = HashMap::new();
        }
    }
}

/// The day number (days since 1970-01-01, UTC) of a Unix time.
pub(crate) fn day_of(ts: i64) -> i64 {
    ts.div_euclid(86_400)
}

pub(crate) const SPARK_DAYS: i64 = 30;

/// A 30-day sparkline as an inline SVG of bars, one a day, on a baseline (no script, no
/// style attribute, so the admin page's CSP allows it). Bars read at 96×24 px where a line
/// of a few clicks stayed a faint flat stroke. `days` are (day number, clicks); `today` is
/// the last day.
pub(crate) fn sparkline(days: &[(i64, i64)], today: i64) -> String {
    let first = today - SPARK_DAYS + 1;
    let mut counts = [0i64; SPARK_DAYS as usize];
    for (d, n) in days {
        if (first..=today).contains(d) {
            counts[(d - first) as usize] += n;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (96.0f64, 24.0f64);
    let step = w / SPARK_DAYS as f64;
    let mut bars = String::new();
    for (i, n) in counts.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        // A day with any click is at least 3 px tall, so one click among hundreds shows.
        let bar = ((*n as f64 / max as f64) * (h - 2.0)).max(3.0);
        bars.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\"/>",
            i as f64 * step,
            h - 1.0 - bar,
            step - 1.0
        ));
    }
    let total: i64 = counts.iter().sum();
    let label = if total == 1 { "click" } else { "clicks" };
    format!(
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"96\" height=\"24\" viewBox=\"0 0 96 24\" role=\"img\" aria-label=\"{total} {label} in the last 30 days\"><title>{total} {label} in the last 30 days</title><rect class=\"base\" x=\"0\" y=\"23\" width=\"96\" height=\"1\"/><g fill=\"currentColor\">{bars}</g></svg>"
    )
}

/// The service a `share_url` posts to, by its host: its name for the button ("Post to
/// X") and its length limit for the character count, if nib knows it. X and Mastodon count
/// every link as 23 characters; Bluesky counts the link as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Service {
    pub name: &'static str,
    pub limit: Option<usize>,
    /// How many characters a link counts for, when the service shortens links itself.
    pub link_counts_as: Option<usize>,
}

pub(crate) fn share_service(share_url: &str) -> Service {
    let host = Url::parse(share_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches("www.").to_string())
        })
        .unwrap_or_default();
    let path = Url::parse(share_url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let known = |name, limit, link| Service {
        name,
        limit: Some(limit),
        link_counts_as: link,
    };
    match host.as_str() {
        "twitter.com" | "x.com" | "mobile.twitter.com" => known("X", 280, Some(23)),
        "bsky.app" => known("Bluesky", 300, None),
        h if h.contains("mastodon") || h.contains("toot") || path == "/share" => {
            known("Mastodon", 500, Some(23))
        }
        _ => Service {
            name: if host.is_empty() {
                "the share page"
            } else {
                ""
            },
            limit: None,
            link_counts_as: None,
        },
    }
}

/// What the web app's share target got: Android apps often put the page's address in
/// `text` and leave `url` empty, so an http(s) URL is taken from the end of the text then,
/// and the text keeps the rest.
pub(crate) fn url_from_shared(url: &str, text: &str) -> (String, String) {
    let url = url.trim();
    if !url.is_empty() {
        return (url.to_string(), text.trim().to_string());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match words
        .iter()
        .rposition(|w| w.starts_with("https://") || w.starts_with("http://"))
    {
        Some(i) => {
            let mut rest = words.clone();
            let found = rest.remove(i).to_string();
            (found, rest.join(" "))
        }
        None => (String::new(), text.trim().to_string()),
    }
}

/// A short URL without its scheme, as people write it: `nib.example/abc`.
pub(crate) fn short_label(short_url: &str) -> &str {
    short_url
        .strip_prefix("https://")
        .or_else(|| short_url.strip_prefix("http://"))
        .unwrap_or(short_url)
}

/// Fills `{text}` and `{url}` of the configured `share_url`, both encoded.
pub(crate) fn share_target(template: &str, text: &str, url: &str) -> String {
    template
        .replace("{text}", &encode_component(text))
        .replace("{url}", &encode_component(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn codes() -> Codes {
        Codes::new(*b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn codes_are_unique_short_and_not_sequential() {
        let c = codes();
        let mut seen = HashSet::new();
        let mut prev: Option<u64> = None;
        let mut close = 0;
        for n in 0..100_000u64 {
            let v = c.permute(n);
            assert!(v < CODE_SPACE);
            assert!(seen.insert(v), "duplicate at {n}");
            if let Some(p) = prev
                && p.abs_diff(v) < 1000
            {
                close += 1;
            }
            prev = Some(v);
        }
        // Neighbouring counters land far apart almost always.
        assert!(close < 10, "{close} neighbouring codes were close");
        // Across the first 50 million the codes stay within six characters and map back
        // (a bijection, so no two ids share a code).
        for n in (0..50_000_000u64).step_by(499_979).chain([49_999_999]) {
            let code = c.code(n);
            assert!(code.len() <= 6 && !code.is_empty(), "{n}: {code}");
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(c.unpermute(c.permute(n)), n);
        }
        // A different key gives different codes.
        let other = Codes::new([7; 32]);
        assert_ne!(
            (0..5).map(|n| c.code(n)).collect::<Vec<_>>(),
            (0..5).map(|n| other.code(n)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn slug_rules() {
        let cases: &[(&str, bool)] = &[
            ("hello", true),
            ("a", true),
            ("A-b_9", true),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
            ("", false),
            ("has space", false),
            ("dot.ted", false),
            ("slash/y", false),
            ("plus+", false),
            ("ünï", false),
            ("posts", false),
            ("Admin", false),
            ("API", false),
            ("healthz", false),
            ("well-known", false),
            ("login", false),
        ];
        for (slug, ok) in cases {
            assert_eq!(check_slug(slug).is_ok(), *ok, "{slug:?}");
        }
    }

    #[test]
    fn own_short_links_are_found_after_idna_and_trailing_dot() {
        let cases = [
            ("https://example.org", "https://example.org./abc", false),
            ("https://example.org", "https://EXAMPLE.ORG../abc", false),
            ("https://example.org.", "https://example.org/abc", false),
            (
                "https://example.org",
                "https://ｅｘａｍｐｌｅ.org/abc",
                false,
            ),
            (
                "https://bücher.example",
                "https://xn--bcher-kva.example/abc",
                false,
            ),
            (
                "https://xn--bcher-kva.example",
                "https://BÜCHER.example./abc",
                false,
            ),
            ("https://example.org", "https://example.org./posts/a/", true),
            ("https://example.org", "https://www.example.org/abc", true),
            (
                "https://example.org",
                "https://example.org.evil.example/abc",
                true,
            ),
            ("https://example.org", "https://example.orgx/abc", true),
        ];
        for (base, target, ok) in cases {
            let got = normalize_target(target, base);
            assert_eq!(got.is_ok(), ok, "{base} {target}: {got:?}");
        }
    }

    #[test]
    fn url_normalisation() {
        let base = "https://nib.example";
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("https://example.com", Ok("https://example.com/")),
            ("  http://example.com/a b\n", Ok("http://example.com/a%20b")),
            (
                "HTTPS://EXAMPLE.com/Path?q=1#f",
                Ok("https://example.com/Path?q=1#f"),
            ),
            (
                "https://bücher.example/straße",
                Ok("https://xn--bcher-kva.example/stra%C3%9Fe"),
            ),
            (
                "https://example.com/?q=ü",
                Ok("https://example.com/?q=%C3%BC"),
            ),
            (
                "https://nib.example/posts/hello/",
                Ok("https://nib.example/posts/hello/"),
            ),
            ("https://nib.example/", Ok("https://nib.example/")),
            (
                "https://nib.example/feed.xml",
                Ok("https://nib.example/feed.xml"),
            ),
            ("ftp://example.com/", Err("http or https")),
            ("javascript:alert(1)", Err("http or https")),
            ("data:text/html,x", Err("http or https")),
            ("example.com", Err("not valid")),
            ("", Err("required")),
            ("https://exa\u{7}mple.com", Err("control")),
            ("https://example.com/a\tb", Err("control")),
            ("https://example.com/\u{85}", Err("control")),
            ("https://user:pw@example.com/", Err("user name")),
            ("https://nib.example/abc", Err("own short links")),
            ("http://nib.example/abc+", Err("own short links")),
            ("https://nib.example/admin/", Err("own short links")),
            ("https://nib.example:8443/x", Err("own short links")),
        ];
        for (input, want) in cases {
            let got = normalize_target(input, base);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{input:?}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input:?}: {g}"),
                _ => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(normalize_target(&long, base).unwrap_err().contains("2048"));
        // Encoding can push a URL just under the limit over it.
        let grows = format!("https://example.com/{}", "é".repeat(1000));
        assert!(normalize_target(&grows, base).is_err());
        // A base URL with a path prefix protects the links under it.
        let prefixed = "https://x.example/blog";
        assert!(normalize_target("https://x.example/blog/abc", prefixed).is_err());
        assert!(normalize_target("https://x.example/blog/posts/a/", prefixed).is_ok());
    }

    #[test]
    fn every_refusal_has_plain_words_and_a_field() {
        let base = "https://nib.example";
        let cases = [
            (normalize_target("", base), "url", "Type or paste"),
            (
                normalize_target("example.com", base),
                "url",
                "http:// or https://",
            ),
            (
                normalize_target("ftp://example.com/", base),
                "url",
                "http:// or https://",
            ),
            (
                normalize_target("https://a\tb.example/", base),
                "url",
                "characters",
            ),
            (
                normalize_target("https://u:p@example.com/", base),
                "url",
                "user name",
            ),
            (
                normalize_target("https://nib.example/abc", base),
                "url",
                "own short links",
            ),
            (
                normalize_target(&"https://e.example/".repeat(200), base),
                "url",
                "too long",
            ),
            (check_slug("").map(|()| String::new()), "slug", "short name"),
            (
                check_slug("a b").map(|()| String::new()),
                "slug",
                "letters, digits",
            ),
            (
                check_slug(&"a".repeat(65)).map(|()| String::new()),
                "slug",
                "too long",
            ),
            (
                check_slug("Admin").map(|()| String::new()),
                "slug",
                "site's own pages",
            ),
            (
                Err("slug \"x\" is taken".to_string()),
                "slug",
                "taken by another",
            ),
        ];
        for (got, field, words) in cases {
            let e = got.expect_err("refused");
            assert_eq!(field_of(&e), field, "{e}");
            let p = plainly(&e);
            assert!(p.contains(words), "{e} → {p}");
            assert!(p.starts_with(char::is_uppercase), "{p}");
        }
    }

    #[test]
    fn share_services_by_host() {
        let cases = [
            (
                "https://twitter.com/intent/tweet?text={text}&url={url}",
                "X",
                Some(280),
            ),
            (
                "https://x.com/intent/post?text={text}&url={url}",
                "X",
                Some(280),
            ),
            (
                "https://mastodon.social/share?text={text}%20{url}",
                "Mastodon",
                Some(500),
            ),
            (
                "https://fosstodon.org/share?text={text}%20{url}",
                "Mastodon",
                Some(500),
            ),
            (
                "https://bsky.app/intent/compose?text={text}%20{url}",
                "Bluesky",
                Some(300),
            ),
            ("https://example.com/post?u={url}", "", None),
        ];
        for (url, name, limit) in cases {
            let s = share_service(url);
            assert_eq!((s.name, s.limit), (name, limit), "{url}");
        }
    }

    #[test]
    fn shared_text_gives_up_its_url_when_url_is_empty() {
        let cases = [
            ("https://a.example/", "Hi", "https://a.example/", "Hi"),
            (
                "",
                "A page https://b.example/x",
                "https://b.example/x",
                "A page",
            ),
            ("", "http://c.example/", "http://c.example/", ""),
            ("", "no address here", "", "no address here"),
        ];
        for (url, text, want_url, want_text) in cases {
            assert_eq!(
                url_from_shared(url, text),
                (want_url.to_string(), want_text.to_string()),
                "{url} {text}"
            );
        }
        assert_eq!(short_label("https://n.example/abc"), "n.example/abc");
        assert_eq!(short_label("http://n.example/abc"), "n.example/abc");
    }

    #[test]
    fn bot_detection() {
        let cases = [
            ("Twitterbot/1.0", true),
            (
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                true,
            ),
            (
                "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
                true,
            ),
            (
                "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
                true,
            ),
            ("TelegramBot (like TwitterBot)", true),
            ("LinkedInBot/1.0 (compatible; Mozilla/5.0)", true),
            ("WhatsApp/2.23.20.0", true),
            (
                "Mastodon/4.2.0 (http.rb/5.1.1; +https://mastodon.social/)",
                true,
            ),
            (
                "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
                true,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                true,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                false,
            ),
            ("curl/8.5.0", false),
            ("", false),
        ];
        for (ua, want) in cases {
            assert_eq!(is_bot(ua), want, "{ua}");
        }
    }

    #[test]
    fn click_batch_keeps_what_was_not_written() {
        let mut b = ClickBatch::default();
        b.add(1);
        b.add(1);
        b.add(2);
        let snap = b.snapshot();
        assert_eq!(snap, vec![(1, 2), (2, 1)]);
        b.add(1);
        b.commit(&snap);
        assert_eq!(b.pending(1), 1);
        assert_eq!(b.pending(2), 0);
        b.forget(1);
        assert!(b.is_empty());
    }

    #[test]
    fn sparkline_and_share_targets() {
        let svg = sparkline(&[(100, 3), (99, 1), (50, 9)], 100);
        assert!(svg.starts_with("<svg") && svg.contains("4 clicks in the last 30 days"));
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(!svg.contains("style"));
        assert_eq!(
            share_target(
                "https://twitter.com/intent/tweet?text={text}&url={url}",
                "Hi & bye",
                "https://n.example/abc"
            ),
            "https://twitter.com/intent/tweet?text=Hi%20%26%20bye&url=https%3A%2F%2Fn.example%2Fabc"
        );
        assert_eq!(clean_title("  a\n\tb  c "), "a b c");
        assert_eq!(day_of(86_399), 0);
        assert_eq!(day_of(-1), -1);
    }
}
