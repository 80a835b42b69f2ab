//! Owner access: the admin token (stored only as its SHA-256, compared in constant time),
//! the signed login cookie (HMAC-SHA256 over an expiry and a random nonce, keyed by a
//! secret in the database; the nonce of each login is also on record, at most
//! [`MAX_LOGINS`] rows, so logging out can end one cookie), the CSRF token derived from that
//! cookie, the same-origin check for form posts, the limits and the client key of the
//! failed-login throttle (whose counts live in the database), and the rule for where
//! `next` may send a browser after login.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The login cookie's name.
pub(crate) const COOKIE: &str = "nib_admin";
/// How long a browser login lasts.
pub const COOKIE_TTL: i64 = 30 * 86_400;
/// Failed attempts allowed per client address within [`THROTTLE_WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 5;
pub(crate) const THROTTLE_WINDOW: i64 = 15 * 60;
/// How many client addresses the throttle remembers (rows in the database); the one whose
/// window began first is forgotten first.
pub(crate) const THROTTLE_ROWS: u32 = 1000;
/// How many browser logins are remembered at once; a new one beyond that ends the oldest.
pub(crate) const MAX_LOGINS: u32 = 32;

/// `n` bytes from the kernel's random source, by the getrandom(2) system call.
///
/// Regression: the `getrandom` crate looks the libc function up with `dlsym`, which finds
/// nothing in nib's static binary, so it fell back to opening `/dev/urandom` and kept that
/// descriptor for the life of the process (one fd outliving every request). Calling the
/// system call directly opens nothing.
pub(crate) fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match crate::sys::getrandom(&mut b[filled..]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(b)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new admin token: 32 random bytes, hex-encoded (64 characters, 256 bits).
pub(crate) fn new_token() -> std::io::Result<String> {
    Ok(hex(&random_bytes::<32>()?))
}

/// What the database keeps of a token.
pub(crate) fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Equality whose time depends only on the lengths, never on where the inputs differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keeps the compiler from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Whether `token` is the one whose hash is stored.
pub(crate) fn token_matches(token: &str, stored_hash: &str) -> bool {
    ct_eq(hash_token(token).as_bytes(), stored_hash.as_bytes())
}

fn mac(secret: &[u8], parts: &[&str]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; an empty key would still work.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"|");
    }
    m
}

fn sign(secret: &[u8], parts: &[&str]) -> String {
    hex(&mac(secret, parts).finalize().into_bytes())
}

/// A login cookie value `EXPIRES.NONCE.SIGNATURE`.
pub fn make_cookie(secret: &[u8], now: i64, nonce: &str) -> String {
    let expires = (now + COOKIE_TTL).to_string();
    let sig = sign(secret, &["login", &expires, nonce]);
    format!("{expires}.{nonce}.{sig}")
}

/// The nonce of a valid, unexpired cookie; `None` for anything forged, altered or old.
pub(crate) fn verify_cookie(secret: &[u8], value: &str, now: i64) -> Option<String> {
    let mut parts = value.split('.');
    let (expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || nonce.is_empty() || nonce.len() > 64 {
        return None;
    }
    let at: i64 = expires.parse().ok()?;
    if at <= now || at > now + COOKIE_TTL {
        return None;
    }
    let sig = unhex(sig)?;
    mac(secret, &["login", expires, nonce])
        .verify_slice(&sig)
        .ok()?;
    Some(nonce.to_string())
}

/// The CSRF token of a login: forms carry it, and a post is refused unless it matches the
/// cookie that came with it. A cross-site page can make the browser send the cookie but
/// cannot read the token.
pub(crate) fn csrf_token(secret: &[u8], nonce: &str) -> String {
    sign(secret, &["csrf", nonce])
}

pub(crate) fn csrf_ok(secret: &[u8], nonce: &str, given: &str) -> bool {
    ct_eq(csrf_token(secret, nonce).as_bytes(), given.as_bytes())
}

/// The value of one cookie in a `Cookie` header.
pub(crate) fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `scheme://host[:port]` of a URL, as browsers write it in `Origin`.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

/// Whether a form post comes from this site: its `Origin` (or, when a browser left it out,
/// its `Referer`) must be the origin of `base_url` or of the `Host` the request was sent
/// to. A post with neither header is refused: every browser that nib supports sends one.
pub(crate) fn same_origin(
    origin: Option<&str>,
    referer: Option<&str>,
    base: &str,
    host: Option<&str>,
) -> bool {
    let claimed = match (origin, referer) {
        (Some(o), _) if o != "null" => Some(o.to_string()),
        (None, Some(r)) => origin_of(r),
        _ => None,
    };
    let Some(claimed) = claimed else {
        return false;
    };
    if origin_of(base).is_some_and(|b| b == claimed) {
        return true;
    }
    match (host, claimed.split_once("://")) {
        (Some(h), Some((scheme, authority))) => {
            matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(h)
        }
        _ => false,
    }
}

/// Where to go after login: `next` when it is a path inside this site, else the admin page.
/// Only a single leading `/` is accepted: `//host` and `/\host` are other sites to a
/// browser, and a scheme or control character never passes. Characters outside ASCII are
/// percent-encoded (as UTF-8, the way browsers send them), because the answer carries
/// `next` in its `Location` header, which holds ASCII only.
///
/// Regression: a `next` such as `/admin/share?title=café` was passed through as is, the
/// header was refused when the answer was written, and the login's 303 had no `Location`.
pub(crate) fn safe_next(next: &str) -> Cow<'_, str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c == ' ')
        && next.len() <= 4096;
    if !ok {
        return Cow::Borrowed("/admin/");
    }
    if next.is_ascii() {
        return Cow::Borrowed(next);
    }
    let mut out = String::with_capacity(next.len() * 3);
    for c in next.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Cow::Owned(out)
}

/// Whether an address is this machine's loopback, the only peer whose `X-Real-IP` nib
/// believes. An IPv4 address mapped into IPv6 (`::ffff:127.0.0.1`, what a `[::]`
/// listener sees when nginx connects to 127.0.0.1) is the loopback it maps.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The throttle's key for an address: IPv4 addresses as they are, IPv6 addresses by their
/// /64 prefix, the smallest block a provider hands out (one host can use every address in
/// it, so counting single IPv6 addresses would give each attacker 2^64 fresh tries).
pub(crate) fn throttle_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// Who failed logins are counted against, as a [`throttle_key`]. `real_ip` is the
/// `X-Real-IP` header, which the front end (`deploy/`) overwrites with the address it
/// accepted the connection from; it is believed only from a loopback peer, and only when
/// it is an address. Any other peer, or a header that is missing or not an address, is
/// counted as the peer itself: a client could write anything in that header.
pub(crate) fn client_key(peer: Option<IpAddr>, real_ip: Option<&str>) -> String {
    let Some(peer) = peer else {
        return "-".into();
    };
    if is_loopback(peer)
        && let Some(ip) = real_ip.and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return throttle_key(ip);
    }
    throttle_key(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test secret, thirty-two bytes!!!";

    #[test]
    fn cookies_sign_verify_and_expire() {
        let now = 1_700_000_000;
        let c = make_cookie(SECRET, now, "abc123");
        assert_eq!(verify_cookie(SECRET, &c, now).as_deref(), Some("abc123"));
        assert_eq!(
            verify_cookie(SECRET, &c, now + COOKIE_TTL - 1).as_deref(),
            Some("abc123")
        );
        assert_eq!(verify_cookie(SECRET, &c, now + COOKIE_TTL), None);
        assert_eq!(verify_cookie(b"another secret", &c, now), None);
        let (exp, rest) = c.split_once('.').unwrap();
        let later: i64 = exp.parse::<i64>().unwrap() + 100;
        let cases = [
            format!("{later}.{rest}"),
            c.replace("abc123", "abc124"),
            format!("{c}0"),
            format!("{c}.x"),
            "".into(),
            "1.2".into(),
            format!("{}.abc123.{}", now + 10, "00".repeat(32)),
            format!("{}.abc123.zz", now + 10),
        ];
        for forged in cases {
            assert_eq!(verify_cookie(SECRET, &forged, now), None, "{forged}");
        }
        // An expiry further out than any cookie nib issues is refused too.
        let far = make_cookie(SECRET, now + COOKIE_TTL, "n");
        assert_eq!(verify_cookie(SECRET, &far, now), None);
    }

    #[test]
    fn csrf_tokens_are_tied_to_the_cookie() {
        let t = csrf_token(SECRET, "n1");
        assert!(csrf_ok(SECRET, "n1", &t));
        assert!(!csrf_ok(SECRET, "n2", &t));
        assert!(!csrf_ok(SECRET, "n1", ""));
        assert!(!csrf_ok(b"other", "n1", &t));
    }

    #[test]
    fn tokens_hash_and_compare() {
        let h = hash_token("correct horse battery staple");
        assert_eq!(h.len(), 64);
        assert!(token_matches("correct horse battery staple", &h));
        assert!(!token_matches("correct horse battery stapl", &h));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
    }

    #[test]
    fn next_stays_inside_the_site() {
        let cases = [
            ("/admin/", "/admin/"),
            ("/admin/share?url=x&title=y", "/admin/share?url=x&title=y"),
            ("//evil.example/", "/admin/"),
            ("/\\evil.example", "/admin/"),
            ("\\\\evil.example", "/admin/"),
            ("https://evil.example/", "/admin/"),
            ("javascript:alert(1)", "/admin/"),
            ("", "/admin/"),
            ("/ok\r\nSet-Cookie: x", "/admin/"),
            ("evil.example", "/admin/"),
        ];
        for (input, want) in cases {
            assert_eq!(safe_next(input), want, "{input:?}");
        }
    }

    #[test]
    fn origin_checks() {
        let base = "https://nib.example";
        let cases = [
            (Some("https://nib.example"), None, None, true),
            (Some("https://evil.example"), None, None, false),
            (Some("null"), None, None, false),
            (None, Some("https://nib.example/admin/"), None, true),
            (None, Some("https://evil.example/x"), None, false),
            (None, None, None, false),
            (
                Some("http://127.0.0.1:8080"),
                None,
                Some("127.0.0.1:8080"),
                true,
            ),
            (
                Some("http://127.0.0.1:8081"),
                None,
                Some("127.0.0.1:8080"),
                false,
            ),
            (Some("http://nib.example"), None, None, false),
        ];
        for (origin, referer, host, want) in cases {
            assert_eq!(
                same_origin(origin, referer, base, host),
                want,
                "{origin:?} {referer:?} {host:?}"
            );
        }
        assert_eq!(cookie_value("a=1; nib_admin=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie_value("nib_admin_x=1", COOKIE), None);
    }

    #[test]
    fn non_ascii_next_is_percent_encoded_for_the_location_header() {
        let cases = [
            ("/admin/share?title=café", "/admin/share?title=caf%C3%A9"),
            ("/posts/日本/", "/posts/%E6%97%A5%E6%9C%AC/"),
            ("/a?x=%C3%A9", "/a?x=%C3%A9"),
            // The checks look at the text as given, before encoding.
            ("/\u{3000}/evil.example", "/%E3%80%80/evil.example"),
            ("／/evil.example", "/admin/"),
            ("/ok\u{85}", "/admin/"),
        ];
        for (input, want) in cases {
            let got = safe_next(input);
            assert_eq!(got, want, "{input:?}");
            assert!(got.bytes().all(|b| b.is_ascii_graphic()), "{got:?}");
        }
    }

    #[test]
    fn throttle_keys_come_from_the_proxy_only_on_loopback() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let long = "x".repeat(300);
        let cases = [
            // Behind the front end: the address it writes in X-Real-IP.
            (ip("127.0.0.1"), Some("203.0.113.7"), "203.0.113.7"),
            (ip("::1"), Some("203.0.113.7"), "203.0.113.7"),
            // Regression: a `[::]` listener sees nginx as ::ffff:127.0.0.1, which was not
            // taken for loopback, so every client shared one key.
            (ip("::ffff:127.0.0.1"), Some("203.0.113.7"), "203.0.113.7"),
            (ip("::ffff:127.0.0.1"), None, "127.0.0.1"),
            // Regression: a client talking to nib directly chose its own key.
            (ip("198.51.100.4"), Some("203.0.113.7"), "198.51.100.4"),
            (ip("::ffff:198.51.100.4"), Some("127.0.0.1"), "198.51.100.4"),
            // A header that is not an address counts as the peer.
            (ip("127.0.0.1"), Some(long.as_str()), "127.0.0.1"),
            (ip("127.0.0.1"), Some(""), "127.0.0.1"),
            (ip("127.0.0.1"), Some("203.0.113.7, 10.0.0.1"), "127.0.0.1"),
            // IPv6 clients by their /64.
            (
                ip("::1"),
                Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
                "2001:db8:1:2::/64",
            ),
            (ip("2001:db8:1:2::9"), None, "2001:db8:1:2::/64"),
            (ip("::1"), Some("::ffff:203.0.113.7"), "203.0.113.7"),
            (None, Some("203.0.113.7"), "-"),
        ];
        for (peer, header, want) in cases {
            assert_eq!(client_key(peer, header), want, "{peer:?} {header:?}");
        }
        assert!(is_loopback("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
    }
}
