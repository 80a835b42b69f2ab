//! Calendar arithmetic for post dates: parsing the forms the contract (docs/contract.md) allows and formatting for
//! pages (`5 January 2024`), Atom (RFC 3339) and HTTP/RSS headers. Times are Unix seconds in
//! UTC, the site's time zone; the civil-date conversion is Howard Hinnant's public-domain
//! algorithm, small enough that a date crate would cost more than it saves.

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number: (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `YYYY-MM-DD` at the start of `s`, as a day number.
fn parse_ymd(s: &str) -> Option<i64> {
    let y = num(s.get(0..4)?, 4)? as i64;
    let m = num(s.get(5..7)?, 2)?;
    let d = num(s.get(8..10)?, 2)?;
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses `HH:MM[:SS[.frac]]` into seconds of the day.
fn parse_hms(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, ':');
    let h = num(parts.next()?, 2)?;
    let m = num(parts.next()?, 2)?;
    let sec = match parts.next() {
        None => 0,
        Some(rest) => {
            let whole = rest.split('.').next()?;
            let frac_ok = rest[whole.len()..]
                .strip_prefix('.')
                .is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
            if !frac_ok {
                return None;
            }
            num(whole, 2)?
        }
    };
    (h < 24 && m < 60 && sec < 61).then_some(h as i64 * 3600 + m as i64 * 60 + sec.min(59) as i64)
}

/// Parses a post date: RFC 3339, `YYYY-MM-DD`, or `YYYY-MM-DD HH:MM[:SS]` (UTC). Returns Unix
/// seconds, or `None` when the text is none of these.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let s = text.trim();
    let day = parse_ymd(s)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day * 86_400);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // Split the time of day from an optional zone: `Z`, `+HH:MM` or `-HH:MM`.
    let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, zone) = rest.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone[1..].split_once(':')?;
        (
            t,
            sign * (num(zh, 2)? as i64 * 3600 + num(zm, 2)? as i64 * 60),
        )
    } else {
        (rest, 0)
    };
    Some(day * 86_400 + parse_hms(time)? - offset)
}

/// The leading `YYYY-MM-DD-` of a file stem, as Unix seconds at midnight, and the rest.
pub(crate) fn split_date_prefix(stem: &str) -> Option<(i64, &str)> {
    let day = parse_ymd(stem)?;
    let rest = stem.get(10..)?;
    let rest = if rest.is_empty() {
        rest
    } else {
        rest.strip_prefix('-')?
    };
    Some((day * 86_400, rest))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn split(ts: i64) -> (i64, u32, u32, i64) {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    (y, m, d, ts.rem_euclid(86_400))
}

/// `2024-01-05T10:00:00Z`, for Atom and `<time datetime>`.
pub(crate) fn rfc3339(ts: i64) -> String {
    let (y, m, d, s) = split(ts);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2024-01-05`, for file names and sitemaps.
pub(crate) fn ymd(ts: i64) -> String {
    let (y, m, d, _) = split(ts);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `5 January 2024`, for people.
pub(crate) fn human(ts: i64) -> String {
    let (y, m, d, _) = split(ts);
    format!("{d} {} {y}", MONTHS[m as usize - 1])
}

/// `Fri, 05 Jan 2024 10:00:00 GMT`: HTTP headers and RSS (RFC 822 allows `GMT`).
pub(crate) fn http(ts: i64) -> String {
    httpdate::fmt_http_date(to_system(ts))
}

/// `10/Oct/2000:13:55:36 +0000`, the time field of the Combined Log Format.
pub(crate) fn clf(ts: i64) -> String {
    let (y, m, d, s) = split(ts);
    let mon = &MONTHS[m as usize - 1][..3];
    format!(
        "{d:02}/{mon}/{y:04}:{:02}:{:02}:{:02} +0000",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses an HTTP date header such as `If-Modified-Since`.
pub(crate) fn parse_http(text: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

pub(crate) fn to_system(ts: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.max(0) as u64)
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_allowed_form() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01", Some(0)),
            ("2024-01-05", Some(1_704_412_800)),
            ("2024-01-05 10:00", Some(1_704_448_800)),
            ("2024-01-05 10:00:30", Some(1_704_448_830)),
            ("2024-01-05T10:00:00Z", Some(1_704_448_800)),
            ("2024-01-05T10:00:00.123Z", Some(1_704_448_800)),
            ("2024-01-05T11:00:00+01:00", Some(1_704_448_800)),
            ("2024-01-05T05:30:00-04:30", Some(1_704_448_800)),
            ("2024-02-29", Some(1_709_164_800)),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("2024-1-5", None),
            ("yesterday", None),
            ("2024-01-05 25:00", None),
            ("2024-01-05T10:00:00+0100", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), *want, "{text}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ts in [0, 951_782_400, 1_704_448_830, 4_102_444_800] {
            assert_eq!(parse(&rfc3339(ts)), Some(ts));
            assert_eq!(parse_http(&http(ts)), Some(ts));
        }
        assert_eq!(human(1_704_448_800), "5 January 2024");
        assert_eq!(ymd(1_709_164_800), "2024-02-29");
    }

    #[test]
    fn date_prefix_of_file_stems() {
        assert_eq!(
            split_date_prefix("2024-01-05-hello-world"),
            Some((1_704_412_800, "hello-world"))
        );
        assert_eq!(split_date_prefix("2024-01-05"), Some((1_704_412_800, "")));
        assert_eq!(split_date_prefix("hello"), None);
        assert_eq!(split_date_prefix("2024-01-05hello"), None);
    }
}
