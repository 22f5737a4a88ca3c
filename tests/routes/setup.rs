//! The setup of `tests/routes.rs`: the routes' config and the scripted backend behind them.

#![allow(unreachable_pub)]

use std::time::Duration;

use crate::common::*;
use crate::evil::{send, Evil, Step};

/// [`TWO_DIALECTS`] (the LLM side) plus two routes to the scripted upstream at `{addr:evil}`:
/// `search` (Azure-style key, base path `/base`, team-a only) and `weather` (OpenAI-style key,
/// prefix stripped, every consumer).
pub const ROUTES: &str = r#"
[backends.search-be]
url = "http://{addr:evil}/base"
dialect = "azure"
api_key = "search-backend-key"

[backends.fn-be]
url = "http://{addr:evil}"
api_key = "fn-backend-key"

[routes.search]
prefix = "/search"
backend = "search-be"
consumers = ["team-a"]

[routes.weather]
prefix = "/weather"
backend = "fn-be"
strip_prefix = true
"#;

/// Two consumers: team-a (allowed on `search`) and team-b (not).
pub const CONSUMERS: &str = "
[consumers.team-a]
keys = [\"team-a-key\"]

[consumers.team-b]
keys = [\"team-b-key\"]
";

/// team-a's key, as an `api-key` header.
pub const A: (&str, &str) = ("api-key", "team-a-key");
/// team-b's key, as `Authorization: Bearer`.
pub const B: (&str, &str) = ("authorization", "Bearer team-b-key");

/// The scripted backend: `/stream` answers chunked in two pieces 400 ms apart, `/gzip` a body
/// labelled gzip, `/fail` a 500; anything else a small JSON answer. Every answer carries an
/// `x-request-id` of its own, which the client must never see.
pub fn backend() -> Evil {
    Evil::start(|_, _, req| {
        let text = String::from_utf8_lossy(req);
        let line = text.lines().next().unwrap_or("").to_string();
        let ok = |ct: &str, extra: &str, body: &str| {
            send(&format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\nx-request-id: upstream-id\r\nx-backend: yes\r\n{extra}content-length: {}\r\n\r\n{body}",
                body.len()
            ))
        };
        if line.contains("/stream") {
            vec![
                send("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"),
                Step::Sleep(Duration::from_millis(400)),
                send("7\r\nsecond\n\r\n0\r\n\r\n"),
            ]
        } else if line.contains("/gzip") {
            vec![ok(
                "application/json",
                "content-encoding: gzip\r\n",
                "\u{1f}not-really-gzip",
            )]
        } else if line.contains("/fail") {
            vec![send(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom",
            )]
        } else {
            vec![ok("application/json", "", "{\"ok\":true}")]
        }
    })
}

/// [`ROUTES`] in a gateway with consumers.
pub fn with_consumers() -> String {
    format!("{ROUTES}{CONSUMERS}")
}

/// A gateway of [`TWO_DIALECTS`] and `extra` (routes, consumers, logs), and its route backend.
pub fn start(d: Driver, extra: &str) -> (Gateway, Evil) {
    let evil = backend();
    let template = format!("{TWO_DIALECTS}{extra}");
    let gw = Gateway::start_with(d, &template, &[("evil", evil.addr)]);
    (gw, evil)
}

/// The `n`th request the backend received, as (head, body).
pub fn received(evil: &Evil, n: usize) -> (String, Vec<u8>) {
    let (_, raw) = evil
        .requests()
        .get(n)
        .cloned()
        .expect("a request at the backend");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        raw[end..].to_vec(),
    )
}
