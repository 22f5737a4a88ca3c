//! Helpers shared by `tokens.rs` and `logs.rs`: configs with consumers and logs, chat calls that
//! return the usage the client saw, `aigw_tokens_total` series, JSON-lines files, polling.

#![allow(dead_code, unreachable_pub, missing_docs)] // each test binary uses a subset
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// [`TWO_DIALECTS`] with `workers` workers and `extra` appended (consumers, limits, logs…).
pub fn config(workers: usize, extra: &str) -> String {
    let base = TWO_DIALECTS.replace("workers = 1\n", &format!("workers = {workers}\n"));
    format!("{base}\n{extra}\n")
}

/// A TOML basic string holding `p` (a temp path).
pub fn toml_path(p: &Path) -> String {
    Value::from(p.to_str().expect("utf-8 temp path")).to_string()
}

/// What a chat call asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// `stream_options.include_usage` (streams only).
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    /// The user message (default "hello there").
    pub content: Option<&'a str>,
}

impl<'a> Ask<'a> {
    /// A plain (non-streamed) chat call to `model`.
    pub const fn to(model: &'a str) -> Self {
        Ask {
            model,
            stream: false,
            include_usage: false,
            max_tokens: None,
            content: None,
        }
    }

    /// Streamed, asking for the usage chunk or not.
    pub const fn streamed(self, include_usage: bool) -> Self {
        Ask {
            stream: true,
            include_usage,
            ..self
        }
    }

    pub const fn with_content(self, content: &'a str) -> Self {
        Ask {
            content: Some(content),
            ..self
        }
    }

    pub const fn with_max_tokens(self, n: u64) -> Self {
        Ask {
            max_tokens: Some(n),
            ..self
        }
    }

    pub fn body(&self) -> String {
        let content = self.content.unwrap_or("hello there");
        let mut v =
            json!({"model": self.model, "messages": [{"role": "user", "content": content}]});
        if self.stream {
            v["stream"] = Value::from(true);
            if self.include_usage {
                v["stream_options"] = json!({"include_usage": true});
            }
        }
        if let Some(m) = self.max_tokens {
            v["max_tokens"] = Value::from(m);
        }
        v.to_string()
    }
}

/// Token counts as `(prompt, completion, total)`.
pub type Tokens = (u64, u64, u64);

/// One answered chat call, decoded.
#[derive(Debug, Clone)]
pub struct Reply {
    pub resp: Response,
    /// The request body sent.
    pub body: String,
    /// The usage reported to the client (JSON `usage`, or the SSE usage chunk).
    pub usage: Option<Tokens>,
    /// The reply text (the message content, or the streamed deltas joined).
    pub text: String,
    pub sse: bool,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.resp.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.resp.header(name)
    }

    pub fn num_header(&self, name: &str) -> u64 {
        let v = self
            .header(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.resp.headers));
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {v:?}: {e}"))
    }

    /// The usage, which must be there.
    pub fn tokens(&self) -> Tokens {
        self.usage
            .unwrap_or_else(|| panic!("no usage in: {}", self.resp.text()))
    }

    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .expect("x-request-id")
            .to_string()
    }
}

fn tokens_of(u: &Value) -> Option<Tokens> {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    Some((
        n("prompt_tokens")?,
        n("completion_tokens")?,
        n("total_tokens")?,
    ))
}

/// Decode `resp` (JSON or SSE) into usage and text.
pub fn decode(resp: Response, body: String) -> Reply {
    let sse = resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let mut usage = None;
    let mut text = String::new();
    if resp.status == 200 && sse {
        let raw = resp.text();
        for line in raw.lines() {
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let v: Value =
                serde_json::from_str(data).unwrap_or_else(|e| panic!("SSE data {data:?}: {e}"));
            if let Some(t) = v.get("usage").and_then(tokens_of) {
                usage = Some(t);
            }
            for c in v["choices"].as_array().into_iter().flatten() {
                text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            }
        }
    } else if resp.status == 200 {
        let v = resp.json();
        usage = tokens_of(&v["usage"]);
        text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    Reply {
        resp,
        body,
        usage,
        text,
        sse,
    }
}

/// `POST /v1/chat/completions` on `client` with `headers`.
pub fn chat_on(c: &mut Client, ask: &Ask<'_>, headers: &[(&str, &str)]) -> Reply {
    chat_at(c, "/v1/chat/completions", ask, headers)
}

/// As [`chat_on`] at `target` (e.g. with a query).
pub fn chat_at(c: &mut Client, target: &str, ask: &Ask<'_>, headers: &[(&str, &str)]) -> Reply {
    let body = ask.body();
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let resp = c.call("POST", target, &h, body.as_bytes());
    decode(resp, body)
}

/// One chat call on a fresh connection.
pub fn chat(gw: &Gateway, ask: &Ask<'_>, headers: &[(&str, &str)]) -> Reply {
    chat_on(&mut gw.client(), ask, headers)
}

/// Every `aigw_tokens_total` series: its labels and value.
pub fn token_series(gw: &Gateway) -> Vec<(BTreeMap<String, String>, u64)> {
    let r = gw.admin("GET", "/metrics");
    assert_eq!(r.status, 200);
    let mut out = Vec::new();
    for line in r.text().lines() {
        let Some(rest) = line.strip_prefix("aigw_tokens_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("series line");
        let mut map = BTreeMap::new();
        // Label values here never hold `",` (no escaping needed by these tests).
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").expect("label");
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((map, value.trim().parse().expect("series value")));
    }
    out
}

/// `(prompt, completion, total)` summed over the series whose labels include every `filter` pair.
pub fn token_sums(gw: &Gateway, filter: &[(&str, &str)]) -> Tokens {
    let mut t = (0, 0, 0);
    for (labels, v) in token_series(gw) {
        if !filter
            .iter()
            .all(|(k, want)| labels.get(*k).map(String::as_str) == Some(*want))
        {
            continue;
        }
        match labels.get("type").map(String::as_str) {
            Some("prompt") => t.0 += v,
            Some("completion") => t.1 += v,
            Some("total") => t.2 += v,
            other => panic!("aigw_tokens_total with type {other:?}"),
        }
    }
    t
}

/// Poll `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parsed JSON lines of `path` (missing file: none). Panics on a line that is not JSON.
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()))
        })
        .collect()
}

/// Wait until `path` holds at least `n` JSON lines; returns them.
pub fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(10), || {
        Some(json_lines(path)).filter(|v| v.len() >= n)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} never reached {n} lines:\n{:?}",
            path.display(),
            std::fs::read_to_string(path)
        )
    })
}

/// `GET /mock/stats` `total` of the mock at `{addr:NAME}`.
pub fn mock_total(gw: &Gateway, name: &str) -> u64 {
    let r = Client::connect(gw.addr(name)).call("GET", "/mock/stats", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["total"].as_u64().expect("total")
}

/// `tokens` as a JSON record's `prompt_tokens`, `completion_tokens`, `total_tokens`.
pub fn record_tokens(v: &Value) -> Tokens {
    tokens_of(v).unwrap_or_else(|| panic!("no token counts in {v}"))
}

/// Call `ask` on `c` until something other than 200 comes back (at most `max` 200s); returns the
/// 200s and the refusal.
pub fn until_refused(
    c: &mut Client,
    ask: &Ask<'_>,
    headers: &[(&str, &str)],
    max: usize,
) -> (Vec<Reply>, Reply) {
    let mut ok = Vec::new();
    loop {
        let r = chat_on(c, ask, headers);
        if r.status() != 200 {
            return (ok, r);
        }
        ok.push(r);
        assert!(ok.len() <= max, "never refused after {} calls", ok.len());
    }
}

/// `threads` clients, each on its own connection, calling `ask` with `headers` for `run_for`;
/// returns the `usage.total_tokens` of every 200 and the number of 429s. Any other status panics.
pub fn hammer(
    addr: std::net::SocketAddr,
    threads: usize,
    run_for: Duration,
    ask: Ask<'static>,
    headers: &'static [(&'static str, &'static str)],
) -> (Vec<u64>, u64) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let (mut ok, mut limited) = (Vec::new(), 0u64);
                barrier.wait();
                let t0 = Instant::now();
                while t0.elapsed() < run_for {
                    let r = chat_on(&mut c, &ask, headers);
                    match r.status() {
                        200 => ok.push(r.tokens().2),
                        429 => {
                            limited += 1;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        s => panic!("status {s}: {}", r.resp.text()),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (Vec::new(), 0);
    for h in handles {
        let (o, l) = h.join().expect("client thread");
        ok.extend(o);
        limited += l;
    }
    (ok, limited)
}

/// Assert the gateway's `/metrics` holds `line`.
pub fn assert_metric_line(gw: &Gateway, line: &str) {
    let text = gw.admin("GET", "/metrics").text();
    assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
