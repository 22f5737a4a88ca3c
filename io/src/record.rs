//! After a request: count it (requests, tokens, latency, overhead, time to first token), write
//! its access log line and, for a successful completion, its message-store record. Never waits on
//! IO: the log lines go to their writer threads through bounded channels.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigw_core::config::Dimension;
use aigw_core::limit::MAX_REQUEST_TOKENS;
use aigw_core::openai::Usage;
use serde_json::json;

use crate::logsink::{rfc3339_ms, Sink};
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

/// What is known about one request by the time it is answered.
#[derive(Debug, Default)]
pub struct Record {
    /// The id sent upstream and back.
    pub request_id: String,
    /// The operation, e.g. `chat/completions`, or `route:NAME` for a `[routes.NAME]` request.
    pub operation: String,
    /// The `[routes.NAME]` (index into the config) of a route's request.
    pub route: Option<aigw_core::config::RouteId>,
    /// The model asked for.
    pub model: String,
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
    /// The upstream's `x-ms-region`.
    pub region: Option<String>,
    /// The reply text and whether it was cut.
    pub reply: Option<(String, bool)>,
    /// The caller's rate-limit headers when a limit refused the request.
    pub rate: Option<crate::admission::RateHeaders>,
}

/// Count and log a finished request.
pub fn finish(
    shard: &Shard,
    snap: &Snapshot,
    rec: &Record,
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
    let ip = peer.ip().to_string();
    let user = req
        .head
        .header("x-user-id")
        .map_or("N/A".into(), |v| String::from_utf8_lossy(v).into_owned());
    if let Some(u) = rec.usage {
        let dims = &cfg.metrics.dimensions;
        let mut names: Vec<&'static str> = Vec::with_capacity(dims.len() + 1);
        let mut values: Vec<&str> = Vec::with_capacity(dims.len() + 1);
        names.push("type");
        values.push("");
        for d in dims {
            names.push(d.label());
            values.push(match d {
                Dimension::Consumer => consumer,
                Dimension::Model => &rec.model,
                Dimension::Backend => backend,
                Dimension::ClientIp => &ip,
                Dimension::User => &user,
            });
        }
        for (ty, v) in [
            ("prompt", u.prompt_tokens),
            ("completion", u.completion_tokens),
            ("total", u.total_tokens),
        ] {
            values[0] = ty;
            // An upstream's absurd usage counts at the per-request ceiling (see settle).
            m.add_named(F_TOKENS, &names, &values, v.min(MAX_REQUEST_TOKENS));
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let usage = rec.usage.unwrap_or_default();
    // What the client (or the upstream) chose, as log lines may carry it.
    let request_id = log_field(&rec.request_id, MAX_LOG_FIELD_BYTES);
    let model = log_field(&rec.model, MAX_LOG_FIELD_BYTES);
    let region = rec
        .region
        .as_deref()
        .map(|r| log_field(r, MAX_LOG_FIELD_BYTES));
    if let Some(sink) = &shard.sinks.access {
        let method = String::from_utf8_lossy(&req.head.method);
        let line = json!({
            "time": rfc3339_ms(now_ms),
            "request_id": request_id,
            // null, not "", when there is none: a log query can tell "no consumer" apart.
            "consumer": none_if_empty(consumer),
            "client_ip": ip,
            "method": log_field(&method, MAX_LOG_FIELD_BYTES),
            "path": log_field(req.head.path(), MAX_LOG_PATH_BYTES),
            // The LLM operation (`chat/completions`) or `route:NAME`; "" for an unknown path.
            "operation": log_field(&rec.operation, MAX_LOG_PATH_BYTES),
            "model": model,
            "backend": none_if_empty(backend),
            "status": rec.status,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "attempts": rec.attempts,
            "total_ms": millis(total),
            "upstream_ms": millis(rec.upstream_wait),
            "overhead_us": total.saturating_sub(rec.upstream_wait).as_micros() as u64,
            "stream": rec.stream,
        });
        sink.send(line.to_string());
    }
    let completion_op = matches!(
        rec.operation.as_str(),
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
            let line = json!({
                "id": format!("msg-{request_id}"),
                "timestamp": rfc3339_ms(now_ms),
                "model": model,
                "region": region,
                "request_id": request_id,
                "consumer": none_if_empty(consumer),
                "client_ip": ip,
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
            sink.send(line.to_string());
        }
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
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_capped_and_cleaned() {
        assert!(matches!(log_field("gpt-4o", 256), Cow::Borrowed("gpt-4o")));
        let huge = format!("m\r\n{{\"x\":1}}\u{1b}[2J\u{9b}{}", "é".repeat(1 << 16));
        let f = log_field(&huge, MAX_LOG_FIELD_BYTES);
        assert!(f.len() <= MAX_LOG_FIELD_BYTES && f.len() > MAX_LOG_FIELD_BYTES - 4);
        assert!(!f.chars().any(char::is_control), "{f:?}");
        assert!(f.starts_with("m\u{fffd}\u{fffd}{\"x\":1}\u{fffd}[2J\u{fffd}é"));
        // As a JSON line: one line, bounded.
        let line = json!({ "model": f }).to_string();
        assert!(!line.contains('\n') && line.len() < 2 * MAX_LOG_FIELD_BYTES);
        assert_eq!(cut("héllo", 2), ("h", true));
    }
}
