//! The config file's duration syntax: `"250ms"`, `"10s"`, `"5m"`, `"1h"`, or a bare integer of seconds.

use std::time::Duration;

/// Parse a duration string such as `"300s"`, `"5m"`, `"250ms"`, `"1h"` or `"10"` (seconds).
///
/// Surrounding whitespace is ignored; the number must be a non-negative integer.
///
/// # Errors
/// A human message (without the key) when the text is not a duration.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(bad(text));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration \"{text}\" is too large"))?;
    let secs_times = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration \"{text}\" is too large"))
    };
    match unit.trim_start() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => secs_times(60),
        "h" => secs_times(3600),
        _ => Err(bad(text)),
    }
}

/// Parse a bare integer number of seconds (the `upstream_timeout = 300` form).
///
/// # Errors
/// A negative number.
pub(crate) fn from_secs(n: i64) -> Result<Duration, String> {
    u64::try_from(n)
        .map(Duration::from_secs)
        .map_err(|_| format!("duration {n} is negative"))
}

/// `d` in the largest unit that divides it: `"24h"`, `"5m"`, `"1s"`, `"250ms"`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

fn bad(text: &str) -> String {
    format!(
        "invalid duration \"{text}\" (expected e.g. \"250ms\", \"10s\", \"5m\", \"1h\" or seconds)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert_eq!(parse_duration(" 7 s "), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects() {
        for t in ["", "s", "-1s", "1.5s", "10x", "ms", "1d", "5 m m"] {
            assert!(parse_duration(t).is_err(), "{t:?} should fail");
        }
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert_eq!(from_secs(3), Ok(Duration::from_secs(3)));
        assert!(from_secs(-3).is_err());
    }

    #[test]
    fn human_units() {
        assert_eq!(human(Duration::from_secs(86_400)), "24h");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::ZERO), "0ms");
    }
}
