//! Fault injection: per-request headers, the labs' `simulation` object, config faults, error bodies.

use bytes::Bytes;
use serde_json::Value;

use crate::config::{FailMode, MockOptions};
use crate::http1::{find_header, Header};

/// Longest injected wait, so a typo cannot park a connection for days.
const MAX_WAIT_MS: u64 = 600_000;

/// Faults asked for with `x-mock-status`, `x-mock-latency-ms` and `x-mock-retry-after`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeaderFaults {
    pub(crate) status: Option<u16>,
    pub(crate) latency_ms: Option<u64>,
    pub(crate) retry_after_secs: Option<u64>,
}

impl HeaderFaults {
    /// Read the fault headers; unparsable values are ignored.
    pub(crate) fn parse(headers: &[Header]) -> Self {
        let num = |name: &str| {
            find_header(headers, name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        HeaderFaults {
            status: num("x-mock-status").and_then(valid_status),
            latency_ms: num("x-mock-latency-ms").map(|ms| ms.min(MAX_WAIT_MS)),
            retry_after_secs: num("x-mock-retry-after"),
        }
    }
}

/// An HTTP status we can send: 100..=599.
fn valid_status(n: u64) -> Option<u16> {
    u16::try_from(n).ok().filter(|s| (100..=599).contains(s))
}

/// What the labs' simulation object asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Simulation {
    pub(crate) status: u16,
    pub(crate) wait_ms: u64,
}

/// The `simulation` object in the first message's content: `{"simulation":{"<region>"|"default":{…}}}`.
///
/// Each key falls back on its own, as the labs' mock does: `response_status_code` and
/// `wait_time_ms` come from the region's entry when it has them, else from `default`; a key in
/// neither means 200 and 0. The content may also be a string holding that JSON object.
pub(crate) fn simulation(body: &Value, region: &str) -> Option<Simulation> {
    let content = body.get("messages")?.get(0)?.get("content")?;
    let parsed;
    let content = match content {
        Value::String(s) if s.trim_start().starts_with('{') && s.contains("simulation") => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        other => other,
    };
    let sim = content.get("simulation")?;
    let own = sim.get(region).filter(|e| e.is_object());
    let default = sim.get("default").filter(|e| e.is_object());
    if own.is_none() && default.is_none() {
        return None;
    }
    let key = |k: &str| {
        own.and_then(|e| e.get(k))
            .or_else(|| default.and_then(|e| e.get(k)))
    };
    let status = key("response_status_code")
        .and_then(Value::as_u64)
        .and_then(valid_status)
        .unwrap_or(200);
    let wait_ms = key("wait_time_ms")
        .and_then(Value::as_f64)
        .filter(|w| w.is_finite() && *w > 0.0)
        .map_or(0, |w| (w as u64).min(MAX_WAIT_MS));
    Some(Simulation { status, wait_ms })
}

/// The failure the config injects into request number `seq` (1-based), if any.
pub(crate) fn config_status(opts: &MockOptions, seq: u64, rand01: f64) -> Option<u16> {
    let status = opts.fail_status?;
    let fails = match opts.fail {
        FailMode::Never => false,
        FailMode::Rate(f) => rand01 < f,
        FailMode::Every(n) => seq.checked_rem(n) == Some(0),
    };
    fails.then_some(status)
}

/// The labs-style error body for an injected failure `status`.
pub(crate) fn error_body(status: u16, retry_after_secs: u64) -> Bytes {
    let message = match status {
        429 => format!("Rate limit is exceeded. Try again in {retry_after_secs} seconds."),
        500 => "Internal server error".to_owned(),
        503 => "The engine is currently overloaded, please try again later".to_owned(),
        400 => "Bad request".to_owned(),
        401 => "Access denied due to invalid subscription key or wrong API endpoint.".to_owned(),
        403 => "Forbidden".to_owned(),
        404 => "Resource not found".to_owned(),
        408 => "Request timed out".to_owned(),
        502 => "Bad gateway".to_owned(),
        504 => "Gateway timeout".to_owned(),
        _ => "Unknown error".to_owned(),
    };
    let v = serde_json::json!({ "error": { "code": status.to_string(), "message": message } });
    Bytes::from(v.to_string())
}

/// An OpenAI-style `invalid_request_error` body (bad JSON, unknown route, wrong method).
pub(crate) fn invalid_request(message: &str, code: Option<&str>) -> Bytes {
    let v = serde_json::json!({
        "error": { "message": message, "type": "invalid_request_error", "param": null, "code": code }
    });
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(json: &str, region: &str) -> Option<Simulation> {
        simulation(&serde_json::from_str(json).unwrap(), region)
    }

    #[test]
    fn simulation_region_then_default() {
        let body = r#"{"messages":[{"role":"user","content":{"simulation":{
            "east":{"response_status_code":429,"wait_time_ms":100},
            "default":{"response_status_code":503}}}}]}"#;
        assert_eq!(
            sim(body, "east"),
            Some(Simulation {
                status: 429,
                wait_ms: 100
            })
        );
        assert_eq!(
            sim(body, "west"),
            Some(Simulation {
                status: 503,
                wait_ms: 0
            })
        );
        let only_wait =
            r#"{"messages":[{"content":{"simulation":{"default":{"wait_time_ms":2.5}}}}]}"#;
        assert_eq!(
            sim(only_wait, "x"),
            Some(Simulation {
                status: 200,
                wait_ms: 2
            })
        );
        let no_match = r#"{"messages":[{"content":{"simulation":{"east":{}}}}]}"#;
        assert_eq!(sim(no_match, "west"), None);
        assert_eq!(sim(r#"{"messages":[{"content":"hello"}]}"#, "x"), None);
        assert_eq!(sim(r#"{"messages":[]}"#, "x"), None);
        let as_string = r#"{"messages":[{"content":"{\"simulation\":{\"default\":{\"response_status_code\":500}}}"}]}"#;
        assert_eq!(
            sim(as_string, "x"),
            Some(Simulation {
                status: 500,
                wait_ms: 0
            })
        );
    }

    #[test]
    fn header_faults() {
        let h = |n: &'static str, v: &'static str| Header {
            name: Bytes::from_static(n.as_bytes()),
            value: Bytes::from_static(v.as_bytes()),
        };
        let f = HeaderFaults::parse(&[
            h("X-Mock-Status", " 503 "),
            h("x-mock-latency-ms", "25"),
            h("x-mock-retry-after", "7"),
        ]);
        assert_eq!(
            f,
            HeaderFaults {
                status: Some(503),
                latency_ms: Some(25),
                retry_after_secs: Some(7)
            }
        );
        let bad = HeaderFaults::parse(&[h("x-mock-status", "42"), h("x-mock-latency-ms", "-1")]);
        assert_eq!(bad, HeaderFaults::default());
    }

    #[test]
    fn config_modes() {
        let mut o = MockOptions {
            fail_status: Some(500),
            fail: FailMode::Every(3),
            ..MockOptions::default()
        };
        let hits: Vec<u64> = (1..=9)
            .filter(|&s| config_status(&o, s, 0.0).is_some())
            .collect();
        assert_eq!(hits, [3, 6, 9]);
        o.fail = FailMode::Rate(0.25);
        assert_eq!(config_status(&o, 1, 0.2), Some(500));
        assert_eq!(config_status(&o, 1, 0.3), None);
        o.fail = FailMode::Never;
        assert_eq!(config_status(&o, 1, 0.0), None);
        o.fail = FailMode::Every(1);
        o.fail_status = None;
        assert_eq!(config_status(&o, 1, 0.0), None);
    }

    #[test]
    fn error_bodies() {
        let v: Value = serde_json::from_slice(&error_body(429, 5)).unwrap();
        assert_eq!(v["error"]["code"], "429");
        assert_eq!(
            v["error"]["message"],
            "Rate limit is exceeded. Try again in 5 seconds."
        );
        let v: Value = serde_json::from_slice(&error_body(503, 5)).unwrap();
        assert_eq!(
            v["error"]["message"],
            "The engine is currently overloaded, please try again later"
        );
    }
}
