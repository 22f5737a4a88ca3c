//! After a request: count it (requests, tokens, latency, overhead, time to first token), write
//! its access log line and, for a successful completion, its message-store record. Never waits on
//! IO: the log lines go to their writer threads through bounded lock-free queues. The access-log
//! line is written into a buffer the worker keeps, so a request's counting and logging allocate
//! nothing once warm.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigw_core::config::Dimension;
use aigw_core::limit::MAX_REQUEST_TOKENS;
use aigw_core::openai::Usage;
use bytes::Bytes;
use serde_json::json;

use crate::inline::InlineStr;
use crate::logsink::{rfc3339_ms, write_rfc3339_ms, Sink};
use crate::metrics::{
    request_labels, Observed, F_CONSUMER_REQUESTS, F_REJECTIONS, F_REQUESTS, F_ROUTE_REQUESTS,
    F_TOKENS,
};
use crate::shard::{Shard, Snapshot};

/// The log sinks of the process (absent when switched off).
#[derive(Debug, Default)]
pub struct Sinks {
    /// The access log.
    pub access: Option<Arc<Sink>>,
    /// The message store.
    pub messages: Option<Arc<Sink>>,
}

impl Sinks {
    /// Flush and stop both writers (at shutdown, after the drain).
    pub fn close(&self) {
        for s in [&self.access, &self.messages].into_iter().flatten() {
            s.close();
        }
    }
}

/// What is known about one request by the time it is answered. Borrows from the request (its
/// path and body), so nothing of it is copied per request.
#[derive(Debug, Default)]
pub struct Record<'r> {
    /// The id sent upstream and back.
    pub request_id: RequestId,
    /// The operation, e.g. `chat/completions`, or `route:NAME` for a `[routes.NAME]` request.
    pub operation: Cow<'r, str>,
    /// The `[routes.NAME]` (index into the config) of a route's request.
    pub route: Option<aigw_core::config::RouteId>,
    /// The model asked for.
    pub model: Cow<'r, str>,
    /// Who called, once the key was checked (`None`: refused before, or never identified).
    pub identity: Option<aigw_core::auth::Identity>,
    /// The backend that answered, by index into the config.
    pub backend: Option<usize>,
    /// The status sent to the client.
    pub status: u16,
    /// Tokens spent.
    pub usage: Option<Usage>,
    /// Backends tried.
    pub attempts: usize,
    /// Time spent waiting on upstreams.
    pub upstream_wait: Duration,
    /// The client asked for a stream.
    pub stream: bool,
    /// Time to the first body byte of a stream.
    pub ttft: Option<Duration>,
    /// Refused by a limit: `tokens_per_minute` or `quota`.
    pub rejected: Option<&'static str>,
    /// The upstream's `x-ms-region` (a slice of its response head).
    pub region: Option<Bytes>,
    /// The reply text and whether it was cut.
    pub reply: Option<(String, bool)>,
    /// The caller's rate-limit headers when a limit refused the request.
    pub rate: Option<crate::admission::RateHeaders>,
    /// The semantic cache's `x-aigw-cache` value, when the cache applied to the request.
    pub cache: Option<&'static str>,
}

/// A request id: the client's (at most 200 visible ASCII bytes) or the gateway's own.
pub type RequestId = InlineStr<200>;

/// Count and log a finished request.
pub fn finish(
    shard: &Shard,
    snap: &Snapshot,
    rec: &Record<'_>,
    peer: SocketAddr,
    started: Instant,
    req: &crate::server::Request,
) {
    let cfg = &snap.cfg;
    let total = started.elapsed();
    let m = &shard.metrics;
    let consumer = rec
        .identity
        .and_then(|i| i.consumer())
        .and_then(|i| cfg.consumers.get(i))
        .map_or("", |c| c.name.as_str());
    let backend = rec
        .backend
        .and_then(|i| cfg.backends.get(i))
        .map_or("", |b| b.name.as_str());
    let mut code = itoa::Buffer::new();
    let status = code.format(rec.status);
    // Requests and timings are counted under bounded labels: the backend's config name or
    // "none", and a model the config names or routes (see `request_labels`). Nothing a caller
    // sent before it was identified becomes a label.
    let labels = m.bound(request_labels(
        cfg,
        rec.identity.is_some(),
        &rec.model,
        rec.backend,
    ));
    m.add(F_REQUESTS, &[labels.model, labels.backend, status], 1);
    if !consumer.is_empty() {
        m.add(F_CONSUMER_REQUESTS, &[consumer, status], 1);
    }
    if let Some(route) = rec.route.and_then(|i| cfg.routes.get(i)) {
        m.add(F_ROUTE_REQUESTS, &[&route.name, status], 1);
    }
    if let Some(reason) = rec.rejected {
        m.add(F_REJECTIONS, &[consumer, reason], 1);
    }
    m.observe(
        labels,
        Observed {
            total,
            overhead: total.saturating_sub(rec.upstream_wait),
            ttft: rec.ttft,
        },
    );
    // An address is at most 39 characters (IPv6); formatted on the stack.
    let ip = InlineStr::<48>::format(format_args!("{}", peer.ip()));
    let user = req
        .head
        .header("x-user-id")
        .map_or(Cow::Borrowed("N/A"), |v| String::from_utf8_lossy(v));
    if let Some(u) = rec.usage {
        // `type` and at most one label per dimension (five kinds): fixed arrays, no allocation.
        let dims = &cfg.metrics.dimensions;
        let n = (dims.len() + 1).min(MAX_TOKEN_LABELS);
        let mut names: [&'static str; MAX_TOKEN_LABELS] = ["type"; MAX_TOKEN_LABELS];
        let mut values: [&str; MAX_TOKEN_LABELS] = [""; MAX_TOKEN_LABELS];
        for (i, d) in dims.iter().take(n - 1).enumerate() {
            names[i + 1] = d.label();
            values[i + 1] = match d {
                Dimension::Consumer => consumer,
                Dimension::Model => &rec.model,
                Dimension::Backend => backend,
                Dimension::ClientIp => &ip,
                Dimension::User => &user,
            };
        }
        for (ty, v) in [
            ("prompt", u.prompt_tokens),
            ("completion", u.completion_tokens),
            ("total", u.total_tokens),
        ] {
            values[0] = ty;
            // An upstream's absurd usage counts at the per-request ceiling (see settle).
            m.add_named(
                F_TOKENS,
                &names[..n],
                &values[..n],
                v.min(MAX_REQUEST_TOKENS),
            );
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let usage = rec.usage.unwrap_or_default();
    if let Some(sink) = &shard.sinks.access {
        let mut line = shard.log_line.borrow_mut();
        line.clear();
        access_line(
            &mut line,
            &AccessFields {
                rec,
                method: &req.head.method,
                path: req.head.path(),
                now_ms,
                consumer,
                backend,
                ip: &ip,
                total,
                usage,
            },
        );
        sink.send(&line);
        // A huge line (a long path) does not keep its memory for the rest of the worker's life.
        if line.capacity() > MAX_KEPT_LINE {
            *line = Vec::with_capacity(MAX_KEPT_LINE);
        }
    }
    let completion_op = matches!(
        &*rec.operation,
        "chat/completions" | "completions" | "responses"
    );
    if let (Some(sink), Some(store)) = (&shard.sinks.messages, &cfg.log.messages) {
        if completion_op && (200..300).contains(&rec.status) {
            let max = store.max_body_bytes;
            let body_text = String::from_utf8_lossy(&req.body);
            let (body, body_cut) = cut(&body_text, max);
            let (reply, reply_cut) = rec.reply.as_ref().map_or(("", false), |(t, c)| {
                let (t, c2) = cut(t, max);
                (t, *c || c2)
            });
            let request_id = log_field(&rec.request_id, MAX_LOG_FIELD_BYTES);
            let region = rec.region.as_ref().map(|r| String::from_utf8_lossy(r));
            let region = region.as_deref().map(|r| log_field(r, MAX_LOG_FIELD_BYTES));
            let line = json!({
                "id": format!("msg-{request_id}"),
                "timestamp": rfc3339_ms(now_ms),
                "model": log_field(&rec.model, MAX_LOG_FIELD_BYTES),
                "region": region,
                "request_id": request_id,
                "consumer": none_if_empty(consumer),
                "client_ip": ip.as_str(),
                "operation": rec.operation,
                "stream": rec.stream,
                "request": body,
                "request_truncated": body_cut,
                "response": reply,
                "response_truncated": reply_cut,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            });
            sink.send(line.to_string().as_bytes());
        }
    }
}

/// Labels of a token series at most: `type` and one per dimension kind.
const MAX_TOKEN_LABELS: usize = 6;
/// The access-log line buffer a worker keeps between requests (a longer line's is let go).
const MAX_KEPT_LINE: usize = 8 * 1024;

/// What one access-log line says.
struct AccessFields<'a> {
    rec: &'a Record<'a>,
    method: &'a [u8],
    path: &'a str,
    now_ms: u64,
    consumer: &'a str,
    backend: &'a str,
    ip: &'a str,
    total: Duration,
    usage: Usage,
}

/// Write the access-log line into `out`: one JSON object, its keys in sorted order (as the
/// `serde_json` map it replaces wrote them), values escaped by `serde_json` itself. No
/// allocation once `out` is warm (a field with control characters is cleaned into a copy).
fn access_line(out: &mut Vec<u8>, f: &AccessFields<'_>) {
    let rec = f.rec;
    let method = String::from_utf8_lossy(f.method);
    let mut j = JsonLine::new(out);
    j.num("attempts", rec.attempts as u64);
    j.opt_str("backend", f.backend);
    // The semantic cache's verdict (`x-aigw-cache`); absent when no cache applied.
    if let Some(c) = rec.cache {
        j.str("cache", c);
    }
    j.str("client_ip", f.ip);
    j.num("completion_tokens", f.usage.completion_tokens);
    // null, not "", when there is none: a log query can tell "no consumer" apart.
    j.opt_str("consumer", f.consumer);
    j.str("method", &log_field(&method, MAX_LOG_FIELD_BYTES));
    j.str("model", &log_field(&rec.model, MAX_LOG_FIELD_BYTES));
    // The LLM operation (`chat/completions`) or `route:NAME`; "" for an unknown path.
    j.str("operation", &log_field(&rec.operation, MAX_LOG_PATH_BYTES));
    let overhead = f.total.saturating_sub(rec.upstream_wait);
    j.num("overhead_us", overhead.as_micros() as u64);
    j.str("path", &log_field(f.path, MAX_LOG_PATH_BYTES));
    j.num("prompt_tokens", f.usage.prompt_tokens);
    j.str(
        "request_id",
        &log_field(&rec.request_id, MAX_LOG_FIELD_BYTES),
    );
    j.num("status", u64::from(rec.status));
    j.value("stream", &rec.stream);
    j.key("time");
    j.0.push(b'"');
    write_rfc3339_ms(j.0, f.now_ms);
    j.0.push(b'"');
    j.value("total_ms", &millis(f.total));
    j.num("total_tokens", f.usage.total_tokens);
    j.value("upstream_ms", &millis(rec.upstream_wait));
    j.0.push(b'}');
}

/// Writes one flat JSON object member by member.
struct JsonLine<'a>(&'a mut Vec<u8>, bool);

impl<'a> JsonLine<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        JsonLine(out, true)
    }

    fn key(&mut self, k: &str) {
        self.0.push(if self.1 { b'{' } else { b',' });
        self.1 = false;
        self.0.push(b'"');
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, k: &str, v: &T) {
        self.key(k);
        // Writing into a Vec cannot fail, and these values always serialize.
        let _ = serde_json::to_writer(&mut *self.0, v);
    }

    fn str(&mut self, k: &str, v: &str) {
        self.value(k, v);
    }

    /// `null` for "".
    fn opt_str(&mut self, k: &str, v: &str) {
        self.value(k, &none_if_empty(v));
    }

    fn num(&mut self, k: &str, v: u64) {
        self.key(k);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

/// Most bytes of a short client- or upstream-chosen log field (model, request id, region, method).
pub const MAX_LOG_FIELD_BYTES: usize = 256;
/// Most bytes of the logged request path (query included).
pub const MAX_LOG_PATH_BYTES: usize = 1024;

/// A short field as a log line may carry it: cut to `max` bytes at a char boundary, with control
/// characters (C0, DEL, C1: line breaks, terminal escape sequences) replaced by U+FFFD. The JSON
/// encoder escapes quotes and backslashes; this keeps lines short and safe to view in a terminal.
/// Borrowed (a prefix of `s`) when only cutting is needed: no allocation. Metric label values are
/// cleaned the same way (`metrics::label_value`).
pub fn log_field(s: &str, max: usize) -> Cow<'_, str> {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = &s[..end];
    // Printable ASCII (the common case) needs no char decoding.
    if head.bytes().all(|b| (0x20..0x7f).contains(&b)) || !head.chars().any(char::is_control) {
        return Cow::Borrowed(head);
    }
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// `None` for "" (written as JSON null).
fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Milliseconds with microsecond precision, printed without float noise (`1.234`, never
/// `1.2340000000000002`: the division of whole microseconds prints in its shortest form).
fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `s` cut to at most `max` bytes on a char boundary, and whether it was cut.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
