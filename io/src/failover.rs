//! The attempt loop of one request: pick a member, try it, and on a retryable status, a connect
//! failure or a timeout (before any byte reached the client) bench it and try the next one.
//! Once the response starts flowing to the client nothing is retried.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aigw_core::balance::{bench_hint_ms, pick, Candidate, Picked};
use aigw_core::config::{Dialect, Pool};
use aigw_core::error::GatewayError;
use aigw_core::http1::{BodyFraming, ResponseHead, UpstreamHead};
use aigw_core::openai::{backend_target, ApiPath};
use bytes::BytesMut;

use crate::health::{now_ms, unix_secs};
use crate::metrics::F_RETRIES;
use crate::relay::{exchange_head, UpstreamError};
use crate::server::Request;
use crate::shard::{Shard, Snapshot};
use crate::upstream::UpConn;

/// A response head obtained from one member, ready to relay.
pub struct Won {
    /// The connection, positioned at the body.
    pub up: UpConn,
    /// The response head.
    pub resp: ResponseHead,
    /// Which backend answered (id in the snapshot's config).
    pub backend: usize,
    /// Attempts made, this one included.
    pub attempts: usize,
}

/// What the loop needs about the request.
pub struct Ask<'a> {
    /// The request.
    pub req: &'a Request,
    /// Its classified path.
    pub path: &'a ApiPath<'a>,
    /// The model (or deployment).
    pub model: &'a str,
    /// The request id sent upstream.
    pub request_id: &'a str,
}

/// Try members of `pool` until one answers with a status worth relaying.
///
/// # Errors
/// A gateway error when no member gave any response: 503 with `Retry-After` when none could be
/// tried, else 502/504 from the last failure.
pub async fn attempt(
    shard: &Shard,
    snap: &Snapshot,
    pool_id: usize,
    ask: &Ask<'_>,
    wait: &mut Duration,
) -> Result<Won, GatewayError> {
    let cfg = &snap.cfg;
    let pool: &Pool = &cfg.pools[pool_id];
    let cands: Vec<Candidate<'_>> = pool
        .members
        .iter()
        .map(|m| Candidate {
            priority: m.priority,
            weight: m.weight,
            state: &snap.health[m.backend],
        })
        .collect();
    let mut tried: u64 = 0;
    let mut attempts = 0;
    let mut last: Option<Won> = None;
    let mut last_err: Option<GatewayError> = None;
    loop {
        let now = now_ms();
        let picked = if attempts < pool.max_attempts {
            let mut wrr = snap.wrr[pool_id].borrow_mut();
            pick(
                &cands,
                pool.strategy,
                &mut wrr,
                |i| i < 64 && tried & (1 << i) != 0,
                now,
                || shard.rand01(),
            )
        } else {
            Picked::Nothing { retry_at: None }
        };
        let idx = match picked {
            Picked::Member(i) => i,
            Picked::Nothing { retry_at } => {
                if let Some(won) = last {
                    return Ok(won); // every attempt failed: the client gets the last answer as it was
                }
                if let Some(e) = last_err {
                    return Err(e);
                }
                let secs = retry_at.map(|t| t.saturating_sub(now).div_ceil(1000).max(1));
                return Err(GatewayError::Unavailable {
                    message: format!(
                        "no backend of pool '{}' is available; try again later",
                        pool.name
                    ),
                    retry_after_secs: secs,
                });
            }
        };
        if let Some(prev) = last.take() {
            discard(shard, snap, prev);
        }
        if idx < 64 {
            tried |= 1 << idx;
        }
        attempts += 1;
        if attempts > 1 {
            let backend = &cfg.backends[pool.members[idx].backend].name;
            shard.metrics.add(F_RETRIES, &[&pool.name, backend], 1);
        }
        let bid = pool.members[idx].backend;
        let state = &snap.health[bid];
        state.requests.fetch_add(1, Relaxed);
        state.in_flight.fetch_add(1, Relaxed);
        let result = try_backend(shard, snap, bid, ask, wait).await;
        state.in_flight.fetch_sub(1, Relaxed);
        let backend = &cfg.backends[bid];
        let now = now_ms();
        match result {
            Ok((up, resp)) => {
                let hint = bench_hint_ms(&resp.headers, unix_secs());
                let cb = backend.circuit_breaker.as_ref();
                state.record(cb, now, cb.is_some_and(|c| c.counts(resp.status)), hint);
                if pool.retry_on.iter().any(|r| r.contains(resp.status)) {
                    state.failures.fetch_add(1, Relaxed);
                    state.bench(now, hint.unwrap_or(pool.bench_for.as_millis() as u64));
                    last = Some(Won {
                        up,
                        resp,
                        backend: bid,
                        attempts,
                    });
                    continue;
                }
                return Ok(Won {
                    up,
                    resp,
                    backend: bid,
                    attempts,
                });
            }
            Err(e) => {
                state.failures.fetch_add(1, Relaxed);
                state.record(backend.circuit_breaker.as_ref(), now, true, None);
                state.bench(now, pool.bench_for.as_millis() as u64);
                tracing::warn!(backend = %backend.name, "attempt failed: {e}");
                last_err = Some(e);
            }
        }
    }
}

/// Drop a failed response we will not relay; keep the connection when its body is already read.
fn discard(shard: &Shard, snap: &Snapshot, mut won: Won) {
    if let BodyFraming::Length(n) = won.resp.framing {
        if won.up.conn.buf.len() as u64 == n && won.resp.keep_alive {
            won.up.conn.buf.clear();
            let max = snap.cfg.gateway.max_idle_per_backend;
            shard
                .pools
                .put(&snap.backend_keys[won.backend], won.up, max);
        }
    }
}

/// One attempt at one backend: a pooled connection when one is idle, retried once on a fresh
/// connection if the pooled one turns out to be closed.
async fn try_backend(
    shard: &Shard,
    snap: &Snapshot,
    bid: usize,
    ask: &Ask<'_>,
    wait: &mut Duration,
) -> Result<(UpConn, ResponseHead), GatewayError> {
    let g = &snap.cfg.gateway;
    let backend = &snap.cfg.backends[bid];
    if ask.model.is_empty() && backend.dialect == Dialect::Azure {
        return Err(GatewayError::BadRequest(
            "a model is required (in the body or as the deployment)".into(),
        ));
    }
    let target = backend_target(backend, ask.path, ask.model);
    let req = ask.req;
    let head = UpstreamHead {
        method: &req.head.method,
        target: &target,
        host: &backend.authority,
        auth: snap.auth[bid].as_ref().map(|(n, v)| (*n, v.as_str())),
        request_id: ask.request_id,
        content_length: (!req.body.is_empty() || !req.head.is_method("GET"))
            .then_some(req.body.len() as u64),
        client_headers: &req.head.headers,
        identity_encoding: aigw_core::openai::is_accounted(ask.path.operation),
    };
    let key = &snap.backend_keys[bid];
    let mut pooled = shard.pools.take(key);
    loop {
        let reused = pooled.is_some();
        let mut up = match pooled.take() {
            Some(c) => c,
            None => {
                let t0 = std::time::Instant::now();
                let c = shard
                    .pools
                    .connect(&backend.addrs, g.connect_timeout, &snap.transports[bid])
                    .await;
                *wait += t0.elapsed();
                c.map_err(|e| {
                    GatewayError::BadGateway(format!(
                        "cannot connect to backend {}: {e}",
                        backend.name
                    ))
                })?
            }
        };
        match exchange_head(&mut up, &head, &req.body, g.upstream_timeout, wait).await {
            Ok(resp) => return Ok((up, resp)),
            Err(UpstreamError::Io(_)) if reused => continue, // the upstream closed an idle connection
            Err(UpstreamError::Timeout) => {
                return Err(GatewayError::GatewayTimeout(
                    g.upstream_timeout.as_millis() as u64
                ))
            }
            Err(e) => {
                return Err(GatewayError::BadGateway(format!(
                    "backend {}: {e}",
                    backend.name
                )))
            }
        }
    }
}

/// The head sent to the client for a won response; `rate` (the caller's own rate-limit headers)
/// replaces the backend's headers of the same names. With `dechunk` (an HTTP/1.0 client and a
/// chunked body) the body goes out unframed and the connection closes after it.
pub fn client_head(
    won: &Won,
    backend_name: &str,
    request_id: &str,
    rate: &[(&str, &[u8])],
    dechunk: bool,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(512);
    let mut n = itoa::Buffer::new();
    let mut replace = vec!["x-request-id", "x-aigw-backend", "x-aigw-attempts"];
    replace.extend(rate.iter().map(|(k, _)| *k));
    if dechunk {
        replace.push("transfer-encoding");
    }
    let mut extra: Vec<(&str, &[u8])> = vec![
        ("x-request-id", request_id.as_bytes()),
        ("x-aigw-backend", backend_name.as_bytes()),
        ("x-aigw-attempts", n.format(won.attempts).as_bytes()),
    ];
    extra.extend_from_slice(rate);
    if dechunk {
        extra.push(("connection", b"close"));
    }
    won.resp.encode_for_client(&mut out, &replace, &extra);
    out
}
