//! After a request: count it (requests, tokens, latency, time to first token), write its access
//! log line and, for a successful completion, its message-store record. Never waits on IO: the log
//! lines go to their writer threads through bounded channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigw_core::config::Dimension;
use aigw_core::openai::Usage;
use serde_json::json;

use crate::logsink::{rfc3339_ms, Sink};
use crate::metrics::{F_CONSUMER_REQUESTS, F_REJECTIONS, F_REQUESTS, F_TOKENS};
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
    /// The operation, e.g. `chat/completions`.
    pub operation: String,
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
    // Nothing a caller sent before it was identified becomes a label: an unidentified request
    // is counted under an empty model whatever its body said.
    let model_label = if rec.identity.is_some() {
        rec.model.as_str()
    } else {
        ""
    };
    m.add(F_REQUESTS, &[model_label, backend, status], 1);
    if !consumer.is_empty() {
        m.add(F_CONSUMER_REQUESTS, &[consumer, status], 1);
    }
    if let Some(reason) = rec.rejected {
        m.add(F_REJECTIONS, &[consumer, reason], 1);
    }
    m.shared.latency.observe(total);
    m.shared
        .overhead
        .observe(total.saturating_sub(rec.upstream_wait));
    if let Some(t) = rec.ttft {
        m.shared.ttft.observe(t);
    }
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
            m.add_named(F_TOKENS, &names, &values, v);
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let usage = rec.usage.unwrap_or_default();
    if let Some(sink) = &shard.sinks.access {
        let line = json!({
            "time": rfc3339_ms(now_ms),
            "request_id": rec.request_id,
            "consumer": consumer,
            "client_ip": ip,
            "method": String::from_utf8_lossy(&req.head.method),
            "path": req.head.path(),
            "model": rec.model,
            "backend": backend,
            "status": rec.status,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "attempts": rec.attempts,
            "total_ms": total.as_secs_f64() * 1e3,
            "upstream_ms": rec.upstream_wait.as_secs_f64() * 1e3,
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
                "id": format!("msg-{}", rec.request_id),
                "timestamp": rfc3339_ms(now_ms),
                "model": rec.model,
                "region": rec.region,
                "request_id": rec.request_id,
                "consumer": consumer,
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
