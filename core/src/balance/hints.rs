//! How long an upstream asked us to stay away: `Retry-After` (seconds or HTTP date),
//! `retry-after-ms`, then OpenAI's `x-ratelimit-reset-*` durations. Every hint is capped: the
//! upstream is not trusted to take a member out for longer than the operator allows.

use crate::http1::{find_header, Header};

/// The back-off the upstream hinted at, in milliseconds and at most `max_ms`; `None` when it
/// gave no usable hint. `now_unix_secs` is needed for the HTTP-date form of `Retry-After`.
pub fn bench_hint_ms(headers: &[Header], now_unix_secs: u64, max_ms: u64) -> Option<u64> {
    uncapped_hint_ms(headers, now_unix_secs).map(|ms| ms.min(max_ms))
}

fn uncapped_hint_ms(headers: &[Header], now_unix_secs: u64) -> Option<u64> {
    let text = |name: &str| {
        find_header(headers, name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    };
    if let Some(v) = text("retry-after") {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            // Too many digits for a u64 still means "a very long time": the cap decides.
            return Some(
                v.parse::<u64>()
                    .map_or(u64::MAX, |s| s.saturating_mul(1000)),
            );
        }
        if let Some(at) = parse_http_date(v) {
            return Some(at.saturating_sub(now_unix_secs).saturating_mul(1000));
        }
    }
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            // `as` saturates floats above u64::MAX.
            return Some(ms as u64);
        }
    }
    let a = text("x-ratelimit-reset-requests").and_then(parse_openai_duration_ms);
    let b = text("x-ratelimit-reset-tokens").and_then(parse_openai_duration_ms);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (x, y) => x.or(y),
    }
}

/// Parse OpenAI's reset durations: `6m0s`, `20ms`, `1s`, `1.5s`, `2h3m`, `0.5ms`.
pub fn parse_openai_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1.0, 2)
        } else if rest.starts_with('h') {
            (3_600_000.0, 1)
        } else if rest.starts_with('m') {
            (60_000.0, 1)
        } else if rest.starts_with('s') {
            (1000.0, 1)
        } else {
            return None;
        };
        total += n * unit_ms;
        rest = &rest[len..];
    }
    // `as` saturates: a 400-digit number is infinite, a huge sum is u64::MAX; the caller caps it.
    total
        .is_finite()
        .then(|| total.ceil() as u64)
        .or(Some(u64::MAX))
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let mut it = s.split_ascii_whitespace();
    let _weekday = it.next()?;
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    // An IMF-fixdate has a four-digit year; anything else would only overflow the arithmetic.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil date (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .and_then(|d| d.checked_mul(86_400)?.checked_add(h * 3600 + m * 60 + sec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MAX: u64 = u64::MAX;
    const HOUR: u64 = 3_600_000;

    fn h(pairs: &[(&'static str, &'static str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(n, v)| Header {
                name: Bytes::from_static(n.as_bytes()),
                value: Bytes::from_static(v.as_bytes()),
            })
            .collect()
    }

    #[test]
    fn precedence_of_hints() {
        assert_eq!(
            bench_hint_ms(&h(&[("Retry-After", "2"), ("retry-after-ms", "5")]), 0, MAX),
            Some(2000)
        );
        assert_eq!(
            bench_hint_ms(&h(&[("retry-after-ms", "1500")]), 0, MAX),
            Some(1500)
        );
        assert_eq!(
            bench_hint_ms(
                &h(&[
                    ("x-ratelimit-reset-requests", "6m0s"),
                    ("x-ratelimit-reset-tokens", "20ms")
                ]),
                0,
                MAX
            ),
            Some(360_000)
        );
        assert_eq!(bench_hint_ms(&h(&[("x-other", "1")]), 0, MAX), None);
        let now = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            bench_hint_ms(
                &h(&[("Retry-After", "Sun, 06 Nov 1994 08:49:40 GMT")]),
                now,
                MAX
            ),
            Some(3000)
        );
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(parse_openai_duration_ms("1s"), Some(1000));
        assert_eq!(parse_openai_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_openai_duration_ms("2h3m"), Some(7_380_000));
        assert_eq!(parse_openai_duration_ms("x"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn every_hint_is_capped() {
        let now = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for hint in [
            ("Retry-After", "99999999999999999"),
            ("Retry-After", "99999999999999999999999999"),
            ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "18446744073709551615"),
            ("x-ratelimit-reset-requests", "99999999999999999h"),
            ("x-ratelimit-reset-tokens", "9999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999s"),
        ] {
            assert_eq!(bench_hint_ms(&h(&[hint]), now, HOUR), Some(HOUR), "{hint:?}");
            assert_eq!(bench_hint_ms(&h(&[hint]), now, 1000), Some(1000), "{hint:?}");
        }
        // Below the cap a hint is kept as it is.
        assert_eq!(
            bench_hint_ms(&h(&[("Retry-After", "7")]), 0, HOUR),
            Some(7000)
        );
        assert_eq!(bench_hint_ms(&h(&[("Retry-After", "-7")]), 0, HOUR), None);
        assert_eq!(
            parse_http_date("Fri, 31 Dec 99999999999999 23:59:59 GMT"),
            None
        );
        assert_eq!(
            parse_http_date("Fri, 31 Dec -99999999999999 23:59:59 GMT"),
            None
        );
    }
}
