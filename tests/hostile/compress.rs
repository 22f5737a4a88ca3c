//! Compressed answers and accounting (issue 7, High 3). The OpenAI Python SDK sends
//! `Accept-Encoding: gzip, deflate`; on main that reached the backend, the usage tap could not
//! read the compressed `usage`, and the request was settled at its prompt estimate and 0
//! completion tokens: token limits and quotas were bypassed. The gateway now asks the backend
//! for `identity` on accounted operations, reads through a compressed answer anyway, and charges
//! the reservation for an answer it cannot read.
//!
//! What a request was charged is read from the caller's own bucket: `x-ratelimit-remaining-tokens`
//! of a first and a second identical request differ by the first one's charge, less what the
//! bucket refilled in between (bounded from the instants the test observed). A JSON answer's own
//! header already shows its charge (it is read whole before its head goes out); a stream's shows
//! its reservation.

use std::io::Read;
use std::time::Instant;

use serde_json::{json, Value};

#[allow(unused_imports)]
use crate::common::*;

both_drivers!(
    accept_encoding_is_replaced_by_identity_and_real_usage_is_charged,
    forced_gzip_json_is_read_and_relayed_unchanged,
    forced_gzip_stream_is_read_and_relayed_unchanged,
    unreadable_encodings_are_charged_the_reservation,
);

/// Tokens per minute of the caller's bucket: 5 a second come back between two requests.
const TPM: u64 = 300;

/// One mock (`compress` as given) behind an OpenAI-dialect backend, and consumers `key-0` to
/// `key-7`, each with a bucket of its own (a full one for every measured pair).
fn config(compress: &str) -> String {
    let mut consumers = String::new();
    for i in 0..8 {
        consumers +=
            &format!("\n[consumers.c{i}]\nkeys = [\"key-{i}\"]\ntokens_per_minute = {TPM}\n");
    }
    format!(
        r#"
[gateway]
listen = "{{addr:listen}}"
admin_listen = "{{addr:admin}}"
workers = 1

[mocks.oa]
listen = "{{addr:oa}}"
region = "oa"
compress = "{compress}"

[backends.oa]
url = "http://{{addr:oa}}"
dialect = "openai"
api_key = "oa-backend-key"

[pools.p]
members = [{{ backend = "oa" }}]

[models]
"m-oa" = "p"
{consumers}"#
    )
}

/// A chat body: streamed with the usage chunk or not, with a completion cap or not.
fn body(stream: bool, max_tokens: Option<u64>) -> Vec<u8> {
    let mut v = json!({"model": "m-oa", "messages": [{"role": "user", "content": "hello there"}]});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    if let Some(n) = max_tokens {
        v["max_tokens"] = json!(n);
    }
    v.to_string().into_bytes()
}

/// The body as the client got it, decoded if the answer says `content-encoding: gzip`.
fn decoded(r: &Response) -> Vec<u8> {
    match r.header("content-encoding") {
        None => r.body.clone(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("client got unreadable gzip: {e}"));
            out
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

/// `usage.total_tokens` of a JSON answer or of the usage event of a stream, and the reply text.
fn usage_and_text(body: &[u8]) -> (u64, String) {
    let text = String::from_utf8_lossy(body).into_owned();
    if !text.trim_start().starts_with("data:") {
        let v: Value = serde_json::from_slice(body).unwrap();
        let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
        return (v["usage"]["total_tokens"].as_u64().unwrap(), content.into());
    }
    let (mut total, mut reply) = (None, String::new());
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(t) = v["usage"]["total_tokens"].as_u64() {
            total = Some(t);
        }
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            reply.push_str(c);
        }
    }
    (total.expect("a usage event"), reply)
}

fn remaining(r: &Response) -> u64 {
    r.header("x-ratelimit-remaining-tokens")
        .unwrap_or_else(|| panic!("no remaining header: {:?}", r.headers))
        .parse()
        .unwrap()
}

/// Two identical requests of consumer `key` (unused so far); returns both responses and the bounds
/// of what the first was charged: the drop of `x-ratelimit-remaining-tokens` between them, and
/// that plus the refill the elapsed time allows.
fn charged(
    gw: &Gateway,
    key: usize,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Response, Response, u64, u64) {
    let key = format!("key-{key}");
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("api-key", key.as_str()),
    ];
    h.extend_from_slice(headers);
    let t0 = Instant::now();
    let first = gw.call("POST", "/v1/chat/completions", &h, body);
    assert_eq!(first.status, 200, "{}", first.text());
    let second = gw.call("POST", "/v1/chat/completions", &h, body);
    assert_eq!(second.status, 200, "{}", second.text());
    let refill = (t0.elapsed().as_secs_f64() * TPM as f64 / 60.0).ceil() as u64 + 1;
    let low = remaining(&first) - remaining(&second);
    (first, second, low, low + refill)
}

/// What the first request's own header says it took from its full bucket: the reservation of a
/// stream (its head goes out at admission), the settled charge of a JSON answer.
fn taken(first: &Response) -> u64 {
    TPM - remaining(first)
}

/// A JSON answer's header shows the bucket after its charge of `usage` (less at most a token of
/// refill between admission and settlement).
fn assert_settled(first: &Response, usage: u64) {
    let t = taken(first);
    assert!(
        (usage.saturating_sub(1)..=usage).contains(&t),
        "header shows {t} taken, usage {usage}"
    );
}

fn accept_encoding_is_replaced_by_identity_and_real_usage_is_charged(d: Driver) {
    let gw = Gateway::start(d, &config("honour"));
    let sdk = [("Accept-Encoding", "gzip, deflate")];
    for (key, stream) in [(0, false), (1, true)] {
        gw.mock_reset("oa");
        let (first, _, low, high) = charged(&gw, key, &sdk, &body(stream, None));
        // The backend was asked for identity, so the client's answer is plain too.
        let seen = gw.mock_requests("oa");
        assert_eq!(seen.len(), 2);
        for s in &seen {
            assert_eq!(s["headers"]["accept-encoding"], "identity", "{s}");
        }
        assert_eq!(first.header("content-encoding"), None);
        let (usage, text) = usage_and_text(&decoded(&first));
        assert!(text.contains("Mock response from oa."), "{text}");
        // Charged the mock's real usage, not the prompt estimate alone.
        if stream {
            let estimate = taken(&first);
            assert!(usage > estimate, "usage {usage}, estimate {estimate}");
        } else {
            assert_settled(&first, usage);
        }
        assert!(
            (low..=high).contains(&usage),
            "stream={stream}: charged {low}..={high}, the mock reported {usage}"
        );
    }
}

fn forced_gzip_json_is_read_and_relayed_unchanged(d: Driver) {
    // The backend ignores identity and gzips every answer.
    let gw = Gateway::start(d, &config("gzip"));
    let (first, _, low, high) = charged(&gw, 0, &[], &body(false, None));
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert_eq!(
        first.body[..2],
        [0x1f, 0x8b],
        "relayed compressed, unchanged"
    );
    let (usage, text) = usage_and_text(&decoded(&first));
    assert!(text.contains("Mock response from oa."), "{text}");
    assert_settled(&first, usage);
    assert!(
        (low..=high).contains(&usage),
        "charged {low}..={high}, the mock reported {usage}"
    );
    // The per-request header does the same against a mock that does not compress.
    let gw = Gateway::start(d, &config("off"));
    let force = [("x-mock-force-encoding", "gzip")];
    let (first, _, low, high) = charged(&gw, 0, &force, &body(false, None));
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    let (usage, _) = usage_and_text(&decoded(&first));
    assert!(
        (low..=high).contains(&usage),
        "charged {low}..={high}, usage {usage}"
    );
}

fn forced_gzip_stream_is_read_and_relayed_unchanged(d: Driver) {
    let gw = Gateway::start(d, &config("off"));
    let force = [("x-mock-force-encoding", "gzip")];
    let (first, _, low, high) = charged(&gw, 0, &force, &body(true, None));
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert!(first
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let (usage, text) = usage_and_text(&decoded(&first));
    assert!(text.contains("Mock response from oa."), "{text}");
    assert!(usage > taken(&first));
    assert!(
        (low..=high).contains(&usage),
        "charged {low}..={high}, the mock reported {usage}"
    );
}

fn unreadable_encodings_are_charged_the_reservation(d: Driver) {
    let gw = Gateway::start(d, &config("off"));
    // A completion cap makes the reservation larger than the real usage: it is what gets charged.
    let cases = [
        ("corrupt", false),
        ("corrupt", true),
        ("x-squeeze", false),
        ("x-squeeze", true),
    ];
    for (key, (coding, stream)) in cases.into_iter().enumerate() {
        let force = [("x-mock-force-encoding", coding)];
        let (first, _, low, high) = charged(&gw, key, &force, &body(stream, Some(50)));
        let label = if coding == "corrupt" { "gzip" } else { coding };
        assert_eq!(first.header("content-encoding"), Some(label));
        // A JSON answer's header shows the charge (the reservation), a stream's the reservation.
        let reserved = taken(&first);
        assert!(reserved > 50, "reserved {reserved}");
        assert!(
            (low..=high).contains(&reserved),
            "{coding} stream={stream}: charged {low}..={high}, reserved {reserved}"
        );
    }
    // Each is logged where an operator sees it (the log is written off the request path).
    let want = cases.len() * 2;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logs = gw.proc.stdout() + &gw.proc.stderr();
        let warned = logs.matches("could not be decoded").count();
        if warned >= want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{warned} of {want} warnings in:\n{logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
