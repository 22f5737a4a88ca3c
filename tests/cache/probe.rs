//! Probing the cache from outside: calls that return the `x-aigw-cache` verdict, SSE events, mock
//! call counts, `GET /cache`, metrics, and the waits for the asynchronous store.

#![allow(dead_code, unreachable_pub)] // each test module uses a subset

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// How long a test waits for an answer to become visible in the cache (stores are asynchronous).
pub const STORE_WAIT: Duration = Duration::from_secs(5);

/// One answer and how long it took.
#[derive(Debug, Clone)]
pub struct Ans {
    pub resp: Response,
    pub took: Duration,
    /// What was asked, for failure messages.
    pub asked: String,
}

impl Ans {
    /// The `x-aigw-cache` verdict, or `"<absent>"`.
    pub fn cache(&self) -> &str {
        self.resp.header("x-aigw-cache").unwrap_or("<absent>")
    }

    pub fn is_hit(&self) -> bool {
        matches!(self.cache(), "hit-exact" | "hit-semantic")
    }

    pub fn json(&self) -> Value {
        self.resp.json()
    }

    /// The `id` of a JSON answer, or of the first SSE event carrying one.
    pub fn id(&self) -> String {
        if self.is_sse() {
            return events(&self.resp)
                .iter()
                .find_map(|(_, v)| {
                    v.get("id")
                        .or_else(|| v.get("response").and_then(|r| r.get("id")))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
        }
        self.json()["id"].as_str().unwrap_or_default().to_string()
    }

    pub fn is_sse(&self) -> bool {
        self.resp
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }

    /// `x-aigw-cache-similarity` parsed, after checking its format (four decimals).
    pub fn similarity(&self) -> f64 {
        let v = self
            .resp
            .header("x-aigw-cache-similarity")
            .unwrap_or_else(|| panic!("no x-aigw-cache-similarity on {}", self.describe()));
        let decimals = v.split_once('.').map_or(0, |(_, f)| f.len());
        assert_eq!(decimals, 4, "x-aigw-cache-similarity {v:?}: four decimals");
        v.parse()
            .unwrap_or_else(|e| panic!("x-aigw-cache-similarity {v:?}: {e}"))
    }

    /// `age` in seconds.
    pub fn age(&self) -> u64 {
        let v = self
            .resp
            .header("age")
            .unwrap_or_else(|| panic!("no age header on {}", self.describe()));
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("age {v:?}: {e}"))
    }

    /// A numeric header, which must be there.
    pub fn num(&self, name: &str) -> u64 {
        let v = self
            .resp
            .header(name)
            .unwrap_or_else(|| panic!("no {name} on {}", self.describe()));
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name} {v:?}: {e}"))
    }

    /// For failure messages: what was asked, the status, the headers and the body's start.
    pub fn describe(&self) -> String {
        let body = self.resp.text();
        let cut: String = body.chars().take(600).collect();
        format!(
            "request {}\n  -> {} (in {:?}) headers {:?}\n  body {cut}",
            self.asked, self.resp.status, self.took, self.resp.headers
        )
    }
}

/// Assert a 200 answer whose `x-aigw-cache` is `want`. Returns the answer.
#[track_caller]
pub fn expect(a: Ans, want: &str, why: &str) -> Ans {
    assert_eq!(
        (a.resp.status, a.cache()),
        (200, want),
        "{why}: expected 200 with x-aigw-cache: {want}\n{}",
        a.describe()
    );
    a
}

/// Assert a 200 hit of either layer.
#[track_caller]
pub fn expect_hit(a: Ans, why: &str) -> Ans {
    assert!(
        a.resp.status == 200 && a.is_hit(),
        "{why}: expected a hit (hit-exact or hit-semantic)\n{}",
        a.describe()
    );
    a
}

/// Assert a 200 that is not a hit (`miss`, or `bypass` where the test allows it).
#[track_caller]
pub fn expect_not_hit(a: Ans, allowed: &[&str], why: &str) -> Ans {
    assert!(
        a.resp.status == 200 && allowed.contains(&a.cache()),
        "{why}: expected 200 with x-aigw-cache one of {allowed:?}\n{}",
        a.describe()
    );
    a
}

/// A chat body for model `m` with one user message.
pub fn chat(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

/// A chat body with `messages` as given.
pub fn chat_msgs(model: &str, messages: Value) -> Value {
    json!({"model": model, "messages": messages})
}

/// `body` with `stream: true` (and `stream_options.include_usage` when asked).
pub fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// POST `body` to `path` on `c` with `headers` (plus `content-type`).
pub fn post_on(c: &mut Client, path: &str, headers: &[(&str, &str)], body: &Value) -> Ans {
    let text = body.to_string();
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let t0 = Instant::now();
    let resp = c.call("POST", path, &h, text.as_bytes());
    Ans {
        resp,
        took: t0.elapsed(),
        asked: format!("POST {path} {headers:?} {text}"),
    }
}

/// POST on a fresh connection.
pub fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &Value) -> Ans {
    post_on(&mut gw.client(), path, headers, body)
}

/// A chat call on a fresh connection.
pub fn ask(gw: &Gateway, headers: &[(&str, &str)], body: &Value) -> Ans {
    post(gw, "/v1/chat/completions", headers, body)
}

/// The `data:` events of an SSE body: (the `event:` name or "", the parsed JSON); `[DONE]` is
/// returned as `("[DONE]", Null)`.
pub fn events(resp: &Response) -> Vec<(String, Value)> {
    let text = resp.text();
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:").map(str::trim) {
            if data == "[DONE]" {
                out.push(("[DONE]".to_string(), Value::Null));
            } else {
                let v: Value = serde_json::from_str(data)
                    .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data:?}\n{text}"));
                out.push((std::mem::take(&mut name), v));
            }
        } else if line.is_empty() {
            name.clear();
        }
    }
    out
}

/// The chat text of an answer: `choices[0].message.content`, or the streamed deltas joined.
pub fn chat_text(a: &Ans) -> String {
    if a.is_sse() {
        let mut s = String::new();
        for (_, v) in events(&a.resp) {
            for c in v["choices"].as_array().into_iter().flatten() {
                s.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            }
        }
        s
    } else {
        a.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Mock counts, the cache's admin view, metrics
// ---------------------------------------------------------------------------------------------

/// Requests the mock `name` has answered for operation `op` ("chat/completions", "embeddings"…).
pub fn calls(gw: &Gateway, name: &str, op: &str) -> u64 {
    let r = Client::connect(gw.addr(name)).call("GET", "/mock/stats", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["by_operation"][op].as_u64().unwrap_or(0)
}

/// Chat requests that reached the `llm` mock.
pub fn llm_calls(gw: &Gateway) -> u64 {
    calls(gw, "llm", "chat/completions")
}

/// Embeddings requests that reached the `emb` mock.
pub fn emb_calls(gw: &Gateway) -> u64 {
    calls(gw, "emb", "embeddings")
}

/// `GET /cache` on the admin port.
pub fn cache_stats(gw: &Gateway) -> Value {
    let r = gw.admin("GET", "/cache");
    assert_eq!(r.status, 200, "GET /cache on the admin port: {}", r.text());
    r.json()
}

/// `entries` of `GET /cache`.
pub fn entries(gw: &Gateway) -> u64 {
    let v = cache_stats(gw);
    v["entries"]
        .as_u64()
        .unwrap_or_else(|| panic!("GET /cache has no numeric entries: {v}"))
}

/// Wait (bounded) until `GET /cache` shows at least `n` entries: stores are asynchronous.
#[track_caller]
pub fn wait_entries(gw: &Gateway, n: u64, what: &str) {
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        let have = entries(gw);
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: GET /cache still shows {have} entries after {STORE_WAIT:?}, expected {n}: {}",
            cache_stats(gw)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

static SENTINELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Make every store submitted before now visible, or prove it never came: send a fresh prompt
/// (words no other prompt uses) and wait until its answer is stored. With one worker its store
/// job queues behind every earlier one, and one indexer drains that queue in order.
#[track_caller]
pub fn settle(gw: &Gateway) {
    let n = SENTINELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let before = entries(gw);
    let text = format!("sentinel{n} zulu{n} yankee{n} xray{n}");
    expect(
        ask(gw, &[], &chat(&text)),
        "miss",
        "a fresh sentinel prompt",
    );
    wait_entries(gw, before + 1, "the sentinel");
}

/// The whole `/metrics` text.
pub fn metrics(gw: &Gateway) -> String {
    let r = gw.admin("GET", "/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

/// The sum of the samples of `name` whose labels include every `labels` pair (0 when none).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.rsplit_once("} ") {
                Some(x) => x,
                None => continue,
            }
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue; // a longer name sharing the prefix
        };
        let has = |k: &str, v: &str| label_text.contains(&format!("{k}=\"{v}\""));
        if labels.iter().all(|(k, v)| has(k, v)) {
            sum += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

/// `metric_sum` on a fresh scrape.
pub fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&metrics(gw), name, labels)
}

/// The `aigw_cache_*` lines of a scrape, for failure messages.
pub fn cache_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("aigw_cache"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Assert that `name{labels}` reaches at least `min` within [`STORE_WAIT`] (metrics are summed
/// from the workers when scraped; counters after a request may trail its answer slightly).
#[track_caller]
pub fn wait_metric_at_least(gw: &Gateway, name: &str, labels: &[(&str, &str)], min: f64) {
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        let text = metrics(gw);
        let v = metric_sum(&text, name, labels);
        if v >= min {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} = {v}, expected at least {min}:\n{}",
            cache_lines(&text)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
