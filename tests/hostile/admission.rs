//! Limits and memory under hostile numbers and names: completion caps that overflow, an upstream
//! that reports absurd usage, huge and control-laden model names reaching labels and log lines.
//!
//! Counting IPv6 callers by their /64 is unit-tested (`core/src/limit/key.rs`): this machine's
//! loopback has a single IPv6 address (`::1/128`), so two clients in one /64 cannot be played
//! black-box. The get-or-insert race and pruning are unit-tested in `io/src/admission_tests.rs`. The multipart boundary search is unit-tested in
//! `core/src/openai/peek.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

both_drivers!(
    header_counter_keys_are_capped_and_distinct,
    overflowing_completion_caps_are_refused,
    absurd_upstream_usage_keeps_counters_sane,
    huge_names_leave_metrics_and_logs_bounded,
);

const ALPHA: (&str, &str) = ("api-key", "key-alpha");

/// A chat body for `model` with the raw JSON numbers `max_tokens` and `n` (when given).
fn body_with(model: &str, max_tokens: Option<&str>, n: Option<&str>) -> Vec<u8> {
    let mut b = format!(
        r#"{{"model":{},"messages":[{{"role":"user","content":"hello there"}}]"#,
        Value::from(model)
    );
    if let Some(m) = max_tokens {
        b.push_str(&format!(r#","max_tokens":{m}"#));
    }
    if let Some(n) = n {
        b.push_str(&format!(r#","n":{n}"#));
    }
    b.push('}');
    b.into_bytes()
}

fn post(gw: &Gateway, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    gw.call("POST", "/v1/chat/completions", &h, body)
}

/// A consumer with a 1000 tokens-per-minute bucket sends completion caps whose product with `n`
/// (plus the prompt) overflows 64 bits. Before the fix, `u64::MAX * n` saturated and the prompt
/// estimate was added with a wrapping `+`: the request was reserved at a handful of tokens and
/// reached the backend (or a debug build panicked on the overflow).
fn overflowing_completion_caps_are_refused(d: Driver) {
    let gw = Gateway::start(
        d,
        &format!(
            "{TWO_DIALECTS}\n[consumers.alpha]\nkeys = [\"key-alpha\"]\ntokens_per_minute = 1000\n"
        ),
    );
    let max = u64::MAX.to_string();
    let half = (1u64 << 63).to_string();
    let cases: [(&str, Option<&str>); 5] = [
        (&max, None),
        (&max, Some("1")),
        (&half, Some("2")),
        ("2", Some(&max)),
        (&max, Some(&max)),
    ];
    for (max_tokens, n) in cases {
        let r = post(&gw, &[ALPHA], &body_with("m-oa", Some(max_tokens), n));
        let msg = r.assert_openai_error(400);
        assert!(
            msg.contains("max_tokens") && msg.contains('n'),
            "max_tokens={max_tokens} n={n:?}: {msg}"
        );
    }
    assert_eq!(
        gw.mock_requests("oa").len(),
        0,
        "an overflowing request reached the backend"
    );
    // Nothing was taken from the bucket: a small request still sees (nearly) all of it.
    let r = post(&gw, &[ALPHA], &body_with("m-oa", Some("5"), None));
    assert_eq!(r.status, 200, "{}", r.text());
    let remaining: u64 = r
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", r.headers));
    assert!(remaining >= 950, "remaining {remaining}");
}

/// `counter = "header:x-tenant"`: a tenant's bucket is keyed by the first 256 bytes of the value,
/// and a request without the header has its own key. Before the fix the whole value was the key
/// (a client could make keys of any length, and a 4 KiB value that only differed past 256 bytes
/// got a fresh bucket), and an absent header counted as the value "-".
fn header_counter_keys_are_capped_and_distinct(d: Driver) {
    let gw = Gateway::start(
        d,
        &format!(
            "{TWO_DIALECTS}\n[token_limit]\ntokens_per_minute = 120\ncounter = \"header:x-tenant\"\n"
        ),
    );
    // About 70 tokens of prompt: one request leaves too little for a second one.
    let prompt = "lorem ipsum dolor sit amet ".repeat(12);
    let body = format!(r#"{{"model":"m-oa","messages":[{{"role":"user","content":"{prompt}"}}]}}"#);
    let spend = |tenant: Option<&str>| {
        let h: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
        post(&gw, &h, body.as_bytes())
    };
    let prefix = "t".repeat(256);
    let first = format!("{prefix}{}", "a".repeat(4096));
    let r = spend(Some(&first));
    assert_eq!(r.status, 200, "{}", r.text());
    let left: u64 = r
        .header("x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(left < 60, "one request left {left} of 120");
    // Same first 256 bytes: the same tenant, whatever follows.
    let r = spend(Some(&format!("{prefix}{}", "b".repeat(4096))));
    r.assert_openai_error(429);
    // Another tenant has its own bucket.
    let r = spend(Some(&format!("u{prefix}")));
    assert_eq!(r.status, 200, "{}", r.text());
    // No header at all is one key, distinct from every value (the old stand-in "-" included).
    assert_eq!(spend(None).status, 200);
    let r = spend(Some("-"));
    assert_eq!(
        r.status,
        200,
        "the absent header and \"-\" share a bucket: {}",
        r.text()
    );
    spend(None).assert_openai_error(429);
}

/// An upstream that answers every request with the same JSON body, keep-alive.
fn canned_upstream(body: String) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || serve_canned(s, &body));
        }
    });
    addr
}

fn serve_canned(mut s: TcpStream, body: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The sum of the `aigw_tokens_total` series of `ty`, read exactly (as u128).
fn tokens_total(gw: &Gateway, ty: &str) -> u128 {
    let text = gw.admin("GET", "/metrics").text();
    let needle = format!("type=\"{ty}\"");
    text.lines()
        .filter(|l| l.starts_with("aigw_tokens_total{") && l.contains(&needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u128>().unwrap())
        .sum()
}

/// An upstream reports `usage` of u64::MAX tokens. Before the fix, the token counters wrapped (the
/// second such answer made `aigw_tokens_total` go backwards) and a debug build panicked summing
/// two workers' values.
fn absurd_upstream_usage_keeps_counters_sane(d: Driver) {
    let m = u64::MAX;
    let body = json!({
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": m, "completion_tokens": m, "total_tokens": m},
    })
    .to_string();
    let liar = canned_upstream(body);
    let template = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[backends.liar]
url = "http://{addr:liar}"
dialect = "openai"
api_key = "k"

[pools.p]
members = [{ backend = "liar" }]

[models]
"m" = "p"

[consumers.open]
keys = ["key-open"]

[consumers.alpha]
keys = ["key-alpha"]
tokens_per_minute = 1000
token_quota = { tokens = 100000, period = "day" }
"#;
    let gw = Gateway::start_with(d, template, &[("liar", liar)]);
    let open = ("api-key", "key-open");
    let mut last = 0u128;
    for i in 0..3 {
        let r = post(&gw, &[open], &body_with("m", None, None));
        assert_eq!(r.status, 200, "{}", r.text());
        // The answer is counted just after it is sent: wait for the counter to move.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = tokens_total(&gw, "total");
        while now == last && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            now = tokens_total(&gw, "total");
        }
        assert!(
            now > last,
            "aigw_tokens_total went from {last} to {now} at answer {i}"
        );
        last = now;
    }
    // A limited consumer is charged (its bucket and quota are spent), but the refusal that follows
    // is a well-formed 429 or 403 with a finite wait, and the gateway keeps answering.
    let r = post(&gw, &[ALPHA], &body_with("m", Some("5"), None));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&gw, &[ALPHA], &body_with("m", Some("5"), None));
    let msg = r.assert_openai_error(if r.status == 429 { 429 } else { 403 });
    if r.status == 429 {
        let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(secs > 0, "{msg}");
    }
    assert_eq!(health(gw.addr("admin")), Some(200));
    let r = post(&gw, &[open], &body_with("m", None, None));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Many requests with 64 KiB model names (distinct prefixes, control characters), authenticated,
/// with an unknown key and with none, on a gateway with consumers and a `"*"` route. Before the
/// fix every name became a label and a log field in full: `/metrics` grew by the names' size and
/// carried raw carriage returns and escape bytes.
fn huge_names_leave_metrics_and_logs_bounded(d: Driver) {
    let dir = TempDir::new("huge-names");
    let log = dir.path("access.log");
    let log_toml = Value::from(log.to_str().unwrap()).to_string();
    let gw = Gateway::start(
        d,
        &format!(
            "{TWO_DIALECTS}\"*\" = \"p_oa\"\n\n[consumers.alpha]\nkeys = [\"key-alpha\"]\n\n[log]\naccess = {log_toml}\n"
        ),
    );
    const ROUNDS: usize = 40;
    let pad = "x".repeat(64 << 10);
    let keys: [&[(&str, &str)]; 3] = [&[ALPHA], &[("api-key", "key-nobody")], &[]];
    for i in 0..ROUNDS {
        let model = format!("{i:03}\r\u{1b}[2J\u{7f}\u{9b}\n\"{pad}");
        for k in keys {
            let r = post(&gw, k, &body_with(&model, None, None));
            assert!(r.status < 500, "{}: {}", r.status, r.text());
        }
    }
    let metrics = gw.admin("GET", "/metrics").body;
    assert!(
        metrics.len() < 256 << 10,
        "/metrics is {} bytes after {} huge names",
        metrics.len(),
        ROUNDS * 3
    );
    assert!(
        !metrics
            .iter()
            .any(|b| *b == b'\r' || *b == 0x1b || *b == 0x7f),
        "a control byte reached /metrics"
    );
    let text = String::from_utf8(metrics).unwrap();
    assert!(!text.contains('\u{9b}'), "a C1 control reached /metrics");
    for line in text.lines() {
        assert!(line.len() < 1024, "metrics line of {} bytes", line.len());
    }

    // Every request wrote one access log line; each is bounded and one line of JSON.
    let want = ROUNDS * 3;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        lines = t.lines().map(str::to_owned).collect::<Vec<_>>();
        if lines.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines.len(), want, "access log lines");
    for l in &lines {
        assert!(l.len() < 4096, "access log line of {} bytes", l.len());
        let v: Value = serde_json::from_str(l).unwrap();
        let model = v["model"].as_str().unwrap();
        assert!(model.len() <= 256, "logged model of {} bytes", model.len());
        assert!(
            !model.chars().any(char::is_control),
            "control character in logged model {model:?}"
        );
    }
}
