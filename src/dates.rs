//! Calendar arithmetic for post dates: parsing the forms the contract (docs/contract.md) allows and formatting for
//! pages (`5 January 2024`), Atom (RFC 3339) and HTTP/RSS headers. Times are Unix seconds
//! (an instant), and a post keeps the UTC offset its date was written in beside it, so the
//! day shown is the day written; a date written without one takes the site's `timezone`
//! ([`Zone`]: a fixed offset, or a zone of the system's tz database read through `jiff`).
//! The civil-date conversion is Howard Hinnant's public-domain algorithm, small enough that
//! a date crate would cost more than it saves for that part.

use std::sync::OnceLock;

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
    // One-digit hours too (`9:00:00`, `T8:09:26`), as Jekyll and Hugo accept them.
    let h = parts.next()?;
    let h = num(h, 2).or_else(|| num(h, 1))?;
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

/// Parses a post date: RFC 3339, `YYYY-MM-DD`, or `YYYY-MM-DD HH:MM[:SS]`, the hour with
/// one or two digits, with an optional zone (`Z`, `±HH:MM`, `±HHMM`, `±HH`; UTC without
/// one). Returns Unix seconds, or `None` when the text is none of these.
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Option<i64> {
    parse_in(text, &Zone::UTC).map(|(ts, _)| ts)
}

/// [`parse`], keeping the zone: (Unix seconds, the offset east of UTC in seconds it was
/// written in). A date written without a zone is a local time in `zone`.
pub(crate) fn parse_in(text: &str, zone: &Zone) -> Option<(i64, i32)> {
    let s = text.trim();
    let day = parse_ymd(s)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(zone.local(day * 86_400));
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    // Split the time of day from an optional zone: `Z`, or `+HH:MM`, `+HHMM` or `+HH` (and
    // with `-`), after the time or a space (Jekyll writes `2015-10-26 15:37:30 -0700`).
    let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, Some(0))
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        (t.trim_end(), Some(sign * zone_seconds(&z[1..])?))
    } else {
        (rest, None)
    };
    let local = day * 86_400 + parse_hms(time)?;
    Some(match offset {
        Some(o) => (local - o, o as i32),
        None => zone.local(local),
    })
}

/// A zone offset's `HH:MM`, `HHMM` or `HH`, in seconds.
fn zone_seconds(z: &str) -> Option<i64> {
    let (h, m) = match z.split_once(':') {
        Some((h, m)) => (h, m),
        None if z.len() == 4 => z.split_at(2),
        None => (z, "00"),
    };
    let (h, m) = (num(h, 2)?, num(m, 2)?);
    (h < 24 && m < 60).then_some(h as i64 * 3600 + m as i64 * 60)
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

/// A site's `timezone`: a fixed offset east of UTC in seconds, or a zone of the tz
/// database (`Europe/Berlin`), whose offset changes with the date.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    Fixed(i32),
    Named {
        name: String,
        tz: jiff::tz::TimeZone,
    },
}

impl Zone {
    pub(crate) const UTC: Zone = Zone::Fixed(0);

    /// Reads a `timezone` setting: `UTC`, `Z`, a fixed offset `±HH:MM` (`±HHMM`, `±HH`), or
    /// a zone name found in `zoneinfo` (`/usr/share/zoneinfo`). The error says why not.
    pub(crate) fn parse(text: &str, zoneinfo: &std::path::Path) -> Result<Zone, String> {
        if let Some(o) = parse_offset(text) {
            return Ok(Zone::Fixed(o));
        }
        let name = text.trim();
        // A name is a path below `zoneinfo`: plain segments only, so none leads out.
        let plain = !name.is_empty()
            && name.split('/').all(|seg| {
                !seg.is_empty()
                    && !seg.starts_with('.')
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
            });
        if !plain {
            return Err(format!(
                "{text:?} is not UTC, an offset such as +02:00 or a zone name such as Europe/Berlin"
            ));
        }
        let path = zoneinfo.join(name);
        // A TZif file is a few KB; the bound keeps a wrong file from being read whole.
        let data = std::fs::read(&path)
            .map_err(|e| format!("{text:?}: no such zone ({}: {e})", path.display()))?;
        if data.len() > 256 * 1024 {
            return Err(format!("{text:?}: {} is not a zone file", path.display()));
        }
        let tz = jiff::tz::TimeZone::tzif(name, &data)
            .map_err(|e| format!("{text:?}: {} is not a zone file ({e})", path.display()))?;
        Ok(Zone::Named {
            name: name.to_string(),
            tz,
        })
    }

    /// The setting as written back (`+02:00`, `Europe/Berlin`): what the index was built
    /// with, and part of the pages' ETags.
    pub(crate) fn key(&self) -> String {
        match self {
            Zone::Fixed(o) => zone_text(*o),
            Zone::Named { name, .. } => name.clone(),
        }
    }

    /// The offset east of UTC, in seconds, at the instant `ts`.
    pub(crate) fn offset_at(&self, ts: i64) -> i32 {
        match self {
            Zone::Fixed(o) => *o,
            Zone::Named { tz, .. } => {
                let ts = ts.clamp(FIRST_TS, LAST_SHOWN);
                jiff::Timestamp::from_second(ts)
                    .map(|t| tz.to_offset(t).seconds())
                    .unwrap_or(0)
            }
        }
    }

    /// The instant of a local wall-clock time (`local`: seconds since 1970-01-01 00:00 on
    /// that clock) and the offset it was at. A time the clocks skipped (spring forward)
    /// takes the offset before the change, and a time they passed twice (fall back) the
    /// earlier instant, as Jekyll's and Hugo's Go and Ruby time libraries do.
    pub(crate) fn local(&self, local: i64) -> (i64, i32) {
        // The offsets a day before and after: a zone changes its clocks at most once a
        // day, so the local time is at one of them (or at neither, in a gap).
        let before = self.offset_at(local - 86_400);
        let after = self.offset_at(local + 86_400);
        let at = |o: i32| {
            let ts = local - o as i64;
            (self.offset_at(ts) == o).then_some(ts)
        };
        match (at(before), at(after)) {
            (Some(a), Some(b)) if b < a => (b, after),
            (Some(a), _) => (a, before),
            (None, Some(b)) => (b, after),
            (None, None) => (local - before as i64, before),
        }
    }
}

/// The site's `timezone`, set once from the configuration before any post is read
/// (`lib::run`), read by the post parser and for "today". A process-wide value rather than
/// a parameter because it is one setting of the one site a process serves, and the parser
/// is reached from the index's walk, which would otherwise thread it through every step.
static SITE_ZONE: OnceLock<Zone> = OnceLock::new();

/// Sets the site's zone; only the first call counts (a process serves one site).
pub(crate) fn set_site_zone(zone: Zone) {
    let _ = SITE_ZONE.set(zone);
}

/// The site's zone: UTC until one is set.
pub(crate) fn site_zone() -> &'static Zone {
    SITE_ZONE.get().unwrap_or(&Zone::UTC)
}

/// A fixed offset `timezone` setting: `UTC`, `Z`, or `±HH:MM` (`±HHMM`, `±HH`), as seconds
/// east of UTC.
pub(crate) fn parse_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t == "GMT" {
        return Some(0);
    }
    let sign = match t.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    Some(sign * zone_seconds(&t[1..])? as i32)
}

/// The date in a Zola `path`: its first run of `YYYY/MM/DD` segments, at the start
/// (`2022/04/07/slug`, `/2022/04/07/`) or after a section (`inside-rust/2024/09/02/slug`,
/// as the Rust blog writes), as Unix seconds at local midnight: the only date some
/// migrated posts carry.
pub(crate) fn path_date(path: &str) -> Option<i64> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    segs.windows(3).find_map(|w| {
        let y = num(w[0], 4)? as i64;
        let (m, d) = (num(w[1], 2)?, num(w[2], 2)?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(days_from_civil(y, m, d) * 86_400)
    })
}

/// `+02:00`, `-04:00` or `Z` for an offset in seconds.
fn zone_text(offset: i32) -> String {
    if offset == 0 {
        return "Z".to_string();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60)
}

/// `2013-09-06T22:02:41-04:00`: the instant `ts` as written at `offset`, for Atom and
/// `<time datetime>` (the same instant as [`rfc3339`], with the writer's wall clock).
pub(crate) fn rfc3339_at(ts: i64, offset: i32) -> String {
    let offset = shown_offset(ts, offset);
    let (y, m, d, s) = split_at(ts, offset);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        zone_text(offset)
    )
}

/// `6 September 2013`: the day `ts` was at `offset`, for people.
pub(crate) fn human_at(ts: i64, offset: i32) -> String {
    let (y, m, d, _) = split_at(ts, offset);
    format!("{d} {} {y}", MONTHS[m as usize - 1])
}

/// `2013-09-06`: the day `ts` was at `offset`.
pub(crate) fn ymd_at(ts: i64, offset: i32) -> String {
    let (y, m, d, _) = split_at(ts, offset);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of `ts` at `offset`, for old permalink patterns.
pub(crate) fn civil_at(ts: i64, offset: i32) -> (i64, u32, u32) {
    let (y, m, d, _) = split_at(ts, offset);
    (y, m, d)
}

/// `offset`, unless it would carry `ts` past the years every formatter shows: then the
/// instant is shown in UTC, so the clamp in [`split`] never moves a real date.
fn shown_offset(ts: i64, offset: i32) -> i32 {
    let local = ts.saturating_add(offset as i64);
    if (FIRST_TS..=LAST_SHOWN).contains(&local) {
        offset
    } else {
        0
    }
}

/// [`split`] of the wall clock at `offset` (see [`shown_offset`]).
fn split_at(ts: i64, offset: i32) -> (i64, u32, u32, i64) {
    split(ts.saturating_add(shown_offset(ts, offset) as i64))
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

/// The first second of year 1 and the first of year 9999: a post's date must fall between
/// them. A year-9999 date in one time zone is year 10000 in UTC, which no HTTP date, RSS
/// date or four-digit year can show, so the last year allowed is 9998.
pub(crate) const FIRST_TS: i64 = -62_135_596_800;
pub(crate) const END_TS: i64 = 253_370_764_800;

/// The last second every formatter below can show: 9999-12-31T23:59:59Z.
const LAST_SHOWN: i64 = 253_402_300_799;

/// Whether `ts` lies in the years a post may be dated: 1 to 9998, in UTC.
pub(crate) fn in_range(ts: i64) -> bool {
    (FIRST_TS..END_TS).contains(&ts)
}

/// Splits `ts` into (year, month, day, second of the day), clamped into years 1 to 9999:
/// every formatter goes through here, so none can be handed a time it cannot show, and a
/// value stored before the range was checked still makes a page rather than a panic.
fn split(ts: i64) -> (i64, u32, u32, i64) {
    let ts = ts.clamp(FIRST_TS, LAST_SHOWN);
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

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// `Fri, 05 Jan 2024 10:00:00 GMT`: HTTP headers and RSS (RFC 822 allows `GMT`). Written
/// here rather than by httpdate, which panics past year 9999 and cannot show a time before
/// 1970.
pub(crate) fn http(ts: i64) -> String {
    let (y, m, d, s) = split(ts);
    let ts = ts.clamp(FIRST_TS, LAST_SHOWN);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[ts.div_euclid(86_400).rem_euclid(7) as usize];
    let mon = &MONTHS[m as usize - 1][..3];
    format!(
        "{weekday}, {d:02} {mon} {y:04} {:02}:{:02}:{:02} GMT",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
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

/// `ts` as a `SystemTime`, clamped into 1970 to 9999 like the formatters' range (the tests
/// compare [`http`] with httpdate's through it).
#[cfg(test)]
fn to_system(ts: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.clamp(0, LAST_SHOWN) as u64)
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> i64 {
    since_epoch(std::time::SystemTime::now()).as_secs() as i64
}

/// A file's modification time since the epoch (zero when the file system has none, or
/// for a time before 1970).
pub(crate) fn mtime(meta: &std::fs::Metadata) -> std::time::Duration {
    meta.modified().map(since_epoch).unwrap_or_default()
}

fn since_epoch(t: std::time::SystemTime) -> std::time::Duration {
    t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
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
            // Jekyll's and Hugo's forms, as migrated blogs write them.
            ("2024-01-05T11:00:00+0100", Some(1_704_448_800)),
            ("2024-01-05 03:00:00 -0700", Some(1_704_448_800)),
            ("2015-10-26 15:37:30 -0700", Some(1_445_899_050)),
            ("2024-01-05T12:00:00+02", Some(1_704_448_800)),
            ("2024-01-05T8:09:26-07:00", Some(1_704_467_366)),
            ("2024-01-05 9:00:00", Some(1_704_445_200)),
            ("2024-01-05T10:00:00+2400", None),
            ("2024-01-05T10:00:00+01:0", None),
            ("2024-01-05 123:00", None),
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
    fn the_range_is_years_1_to_9998_in_utc() {
        assert_eq!(FIRST_TS, days_from_civil(1, 1, 1) * 86_400);
        assert_eq!(END_TS, days_from_civil(9999, 1, 1) * 86_400);
        assert_eq!(LAST_SHOWN, days_from_civil(10_000, 1, 1) * 86_400 - 1);
        let cases = [
            ("0001-01-01", true),
            ("0001-01-01T00:00:00+01:00", false),
            ("0000-12-31", false),
            ("1970-01-01", true),
            ("9998-12-31T23:59:59Z", true),
            ("9998-12-31T20:00:00-05:00", false),
            ("9999-01-01", false),
            ("9999-12-31T20:00:00-05:00", false),
        ];
        for (text, want) in cases {
            assert_eq!(in_range(parse(text).unwrap()), want, "{text}");
        }
    }

    /// Regression: a post dated `9999-12-31T20:00:00-05:00` made httpdate panic in the
    /// feed, which killed the server. Every formatter now answers for every i64.
    #[test]
    fn a_date_past_year_9999_formats_without_a_panic() {
        let cases: &[(i64, &str, &str)] = &[
            (
                i64::MIN,
                "0001-01-01T00:00:00Z",
                "Mon, 01 Jan 0001 00:00:00 GMT",
            ),
            (
                FIRST_TS - 1,
                "0001-01-01T00:00:00Z",
                "Mon, 01 Jan 0001 00:00:00 GMT",
            ),
            (-1, "1969-12-31T23:59:59Z", "Wed, 31 Dec 1969 23:59:59 GMT"),
            (0, "1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
            (
                1_704_448_800,
                "2024-01-05T10:00:00Z",
                "Fri, 05 Jan 2024 10:00:00 GMT",
            ),
            (
                parse("9999-12-31T20:00:00-05:00").unwrap(),
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 GMT",
            ),
            (
                i64::MAX,
                "9999-12-31T23:59:59Z",
                "Fri, 31 Dec 9999 23:59:59 GMT",
            ),
        ];
        for (ts, iso, http_date) in cases {
            assert_eq!(rfc3339(*ts), *iso, "{ts}");
            assert_eq!(http(*ts), *http_date, "{ts}");
            // The rest only has to answer.
            let _ = (ymd(*ts), human(*ts), clf(*ts), to_system(*ts));
        }
        // httpdate agrees with the hand-written form wherever it can show the time.
        for ts in [0, 86_399, 951_782_400, 1_704_448_830, 4_102_444_800] {
            assert_eq!(http(ts), httpdate::fmt_http_date(to_system(ts)), "{ts}");
        }
    }

    /// Regression: `2013-09-06 22:02:41 -0400` showed "7 September 2013", the UTC day.
    #[test]
    fn the_day_shown_is_the_day_written() {
        // (text, site offset, shown day, RFC 3339 as written)
        let cases: &[(&str, i32, &str, &str)] = &[
            (
                "2013-09-06 22:02:41 -0400",
                0,
                "6 September 2013",
                "2013-09-06T22:02:41-04:00",
            ),
            (
                "2013-09-07T01:30:00+05:30",
                0,
                "7 September 2013",
                "2013-09-07T01:30:00+05:30",
            ),
            (
                "2024-01-05",
                7_200,
                "5 January 2024",
                "2024-01-05T00:00:00+02:00",
            ),
            (
                "2024-01-05 23:30",
                -18_000,
                "5 January 2024",
                "2024-01-05T23:30:00-05:00",
            ),
            (
                "2024-01-05T23:30:00Z",
                7_200,
                "5 January 2024",
                "2024-01-05T23:30:00Z",
            ),
        ];
        for (text, default, day, iso) in cases {
            let (ts, off) = parse_in(text, &Zone::Fixed(*default)).unwrap();
            assert_eq!(human_at(ts, off), *day, "{text}");
            assert_eq!(rfc3339_at(ts, off), *iso, "{text}");
            // The instant is the same whichever way it is written.
            assert_eq!(parse(&rfc3339_at(ts, off)), Some(ts), "{text}");
        }
        // An offset that would carry a date past year 9999 is shown in UTC.
        assert_eq!(rfc3339_at(LAST_SHOWN, 3600), "9999-12-31T23:59:59Z");
    }

    /// A named zone's offset follows the date: Berlin is +01:00 in winter and +02:00 in
    /// summer, and a local time is read at the offset it had then.
    #[test]
    fn a_named_zone_follows_summer_time() {
        let dir = std::path::Path::new("/usr/share/zoneinfo");
        if !dir.join("Europe/Berlin").is_file() {
            eprintln!("skipped: no /usr/share/zoneinfo/Europe/Berlin");
            return;
        }
        let berlin = Zone::parse("Europe/Berlin", dir).unwrap();
        assert_eq!(berlin.key(), "Europe/Berlin");
        // (text, instant, offset)
        let cases = [
            ("2024-01-05 10:00", 1_704_445_200, 3_600),
            ("2024-07-05 10:00", 1_720_166_400, 7_200),
            ("2024-07-05", 1_720_130_400, 7_200),
            // Written with an offset: kept as written, whatever the zone.
            ("2024-07-05T10:00:00-04:00", 1_720_188_000, -14_400),
            // 02:30 on 31 March 2024 never happened in Berlin.
            ("2024-03-31 02:30", 1_711_848_600, 3_600),
            // 02:30 on 27 October 2024 happened twice: the earlier one.
            ("2024-10-27 02:30", 1_729_989_000, 7_200),
        ];
        for (text, ts, off) in cases {
            assert_eq!(parse_in(text, &berlin), Some((ts, off)), "{text}");
        }
        assert_eq!(
            human_at(1_720_130_400, berlin.offset_at(1_720_130_400)),
            "5 July 2024"
        );
        let refused = [
            "Mars/Olympus_Mons",
            "../../etc/passwd",
            "/etc/passwd",
            "Europe/../Europe/Berlin",
            "",
        ];
        for name in refused {
            assert!(Zone::parse(name, dir).is_err(), "{name}");
        }
        assert_eq!(Zone::parse("+02:00", dir).unwrap().key(), "+02:00");
        assert_eq!(Zone::parse("UTC", dir).unwrap().key(), "Z");
    }

    #[test]
    fn timezone_settings_and_path_dates() {
        let offsets = [
            ("UTC", Some(0)),
            ("Z", Some(0)),
            ("+02:00", Some(7_200)),
            ("-0430", Some(-16_200)),
            ("+05", Some(18_000)),
            ("Europe/Berlin", None),
            ("+25:00", None),
            ("2", None),
            ("", None),
        ];
        for (text, want) in offsets {
            assert_eq!(parse_offset(text), want, "{text}");
        }
        let paths = [
            ("2022/04/07/async-fn", Some(1_649_289_600)),
            ("/2022/04/07/", Some(1_649_289_600)),
            ("2022/02/30/x", None),
            ("inside-rust/2024/09/02/all-hands", Some(1_725_235_200)),
            ("2022/04", None),
            ("blog/2022/13/07/x", None),
            ("2022-04-07-x", None),
        ];
        for (text, want) in paths {
            assert_eq!(path_date(text), want, "{text}");
        }
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
