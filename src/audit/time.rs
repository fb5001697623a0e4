//! Times as the queries take and print them: `--since 10m`, `2h`, `today`, an RFC 3339 time,
//! parsed against a given `now` (so the rules are tested without a clock), and RFC 3339 with
//! microseconds in UTC for JSON output. Civil dates are computed here (days from 1970-01-01,
//! proleptic Gregorian) rather than pulling in a date crate for two conversions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest span `--since 10m` style accepts, so a typo of many digits is an error, not a
/// date before the epoch: 100 years.
const MAX_SPAN: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// When `text` says: a span back from `now` (`30s`, `10m`, `2h`, `3d`, `1w`, combined as
/// `1h30m`), `now`, `today` or `yesterday` (local midnight), or an RFC 3339 time
/// (`2026-12-01T10:00:00Z`, `2026-12-01 10:00:00.5+01:00`, a bare `2026-12-01` being local
/// midnight of that day). The error says what was wrong and what is accepted.
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    parse_since_in(text, now, &local_offset)
}

/// [`parse_since`] with the local UTC offset (seconds east, for a time in seconds since the
/// epoch) given, so `today` is tested in any zone.
pub fn parse_since_in(
    text: &str,
    now: SystemTime,
    offset: &dyn Fn(i64) -> i64,
) -> Result<SystemTime, String> {
    let text = text.trim();
    let accepted = "use a span back from now (`30s`, `10m`, `2h`, `1d`, `1h30m`), `today`, \
                    `yesterday`, or an RFC 3339 time such as `2026-12-01T10:00:00Z`";
    if text.is_empty() {
        return Err(format!("the time is empty: {accepted}"));
    }
    let now_secs = seconds(now);
    match text {
        "now" => return Ok(now),
        "today" | "yesterday" => {
            let local = now_secs + offset(now_secs);
            let mut midnight = local.div_euclid(86_400) * 86_400;
            if text == "yesterday" {
                midnight -= 86_400;
            }
            // The offset at midnight, which differs from now's across a DST change.
            return Ok(from_seconds(
                midnight - offset(midnight - offset(now_secs)),
                0,
            ));
        }
        _ => {}
    }
    if text.as_bytes()[0].is_ascii_digit() && text.bytes().any(|b| b.is_ascii_alphabetic()) {
        if let Some(span) = parse_span(text) {
            if span > MAX_SPAN {
                return Err(format!("`{text}` is more than 100 years back"));
            }
            return now
                .checked_sub(span)
                .ok_or_else(|| format!("`{text}` is before 1970"));
        }
    }
    parse_rfc3339(text, offset)
        .ok_or_else(|| format!("`{text}` is not a time ccscope understands: {accepted}"))
}

/// `1h30m`, `10m`, `45s`, `2d`, `1w`: numbers each with a unit, summed.
fn parse_span(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(Duration::from_secs(total))
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.frac]][Z|±HH:MM]]`; without a zone, local time.
fn parse_rfc3339(text: &str, offset: &dyn Fn(i64) -> i64) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0u32);
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') {
            return None;
        }
        hour = num(i + 1..i + 3)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        minute = num(i + 4..i + 6)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            second = num(i + 1..i + 3)?;
            i += 3;
            if matches!(b.get(i), Some(b'.' | b',')) {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let kept = &text[i + 1..i + 1 + digits.min(9)];
                nanos = format!("{kept:0<9}").parse().ok()?;
                i += 1 + digits;
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = match &text[i..] {
        "" => local - offset(local - offset(local)),
        "Z" | "z" => local,
        zone => {
            let zb = zone.as_bytes();
            if zb.len() != 6 || !matches!(zb[0], b'+' | b'-') || zb[3] != b':' {
                return None;
            }
            let zn = |r: std::ops::Range<usize>| -> Option<i64> {
                let part = zone.get(r)?;
                part.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| part.parse().ok())?
            };
            let east = zn(1..3)? * 3600 + zn(4..6)? * 60;
            if zb[0] == b'+' {
                local - east
            } else {
                local + east
            }
        }
    };
    (utc >= 0).then(|| from_seconds(utc, nanos))
}

/// `2026-12-01T22:06:44.123456Z`: RFC 3339 in UTC with microseconds.
pub fn rfc3339_micros(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

fn seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_seconds(secs: i64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(u64::try_from(secs.max(0)).unwrap_or(0), nanos)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn local_offset(at: i64) -> i64 {
    crate::proc::sys::utc_offset_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn utc(_: i64) -> i64 {
        0
    }

    fn parse(text: &str, now: SystemTime) -> Result<SystemTime, String> {
        parse_since_in(text, now, &utc)
    }

    // 2026-12-01T22:06:44Z
    const NOW: u64 = 1_796_162_804;

    #[test]
    fn spans_count_back_from_now() {
        let now = at(NOW);
        assert_eq!(parse("10m", now), Ok(at(NOW - 600)));
        assert_eq!(parse("2h", now), Ok(at(NOW - 7200)));
        assert_eq!(parse("1h30m", now), Ok(at(NOW - 5400)));
        assert_eq!(parse("45s", now), Ok(at(NOW - 45)));
        assert_eq!(parse("1d", now), Ok(at(NOW - 86_400)));
        assert_eq!(parse("now", now), Ok(now));
    }

    #[test]
    fn today_is_local_midnight() {
        let now = at(NOW);
        assert_eq!(parse("today", now), Ok(at(NOW - NOW % 86_400)));
        assert_eq!(parse("yesterday", now), Ok(at(NOW - NOW % 86_400 - 86_400)));
        // At 22:06 UTC it is already 2 December in UTC+3: midnight there is 21:00 UTC.
        let east = |_: i64| 3 * 3600;
        let midnight_utc = NOW - NOW % 86_400 + 21 * 3600;
        assert_eq!(parse_since_in("today", now, &east), Ok(at(midnight_utc)));
    }

    #[test]
    fn rfc3339_times_with_and_without_zones() {
        let now = at(NOW);
        assert_eq!(parse("2026-12-01T22:06:44Z", now), Ok(at(NOW)));
        assert_eq!(parse("2026-12-01 23:06:44+01:00", now), Ok(at(NOW)));
        assert_eq!(parse("2026-12-01T20:06:44-02:00", now), Ok(at(NOW)));
        assert_eq!(
            parse("2026-12-01T22:06:44.25Z", now),
            Ok(at(NOW) + Duration::from_millis(250))
        );
        assert_eq!(parse("2026-12-01", now), Ok(at(NOW - NOW % 86_400)));
        assert_eq!(parse("2026-12-01T22:06", now), Ok(at(NOW - 44)));
    }

    #[test]
    fn nonsense_is_refused_with_what_is_accepted() {
        let now = at(NOW);
        for bad in [
            "",
            "10",
            "10x",
            "m10",
            "2026-13-01",
            "2026-02-30",
            "2026-12-01T25:00Z",
            "2026-12-01T10:00+1",
            "yesterdays",
            "99999999999999m",
        ] {
            let err = parse(bad, now).expect_err(bad);
            assert!(err.contains('`') || err.contains("empty"), "{bad}: {err}");
        }
        assert!(parse("10x", now).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn rfc3339_output_has_microseconds_in_utc() {
        let t = at(NOW) + Duration::from_micros(123_456);
        assert_eq!(rfc3339_micros(t), "2026-12-01T22:06:44.123456Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(at(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn civil_days_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
