//! The attempt loop of one request: pick a member, try it, and on a retryable status, a connect
//! failure or a timeout (before any byte reached the client) bench it and try the next one.
//! Once the response starts flowing to the client nothing is retried.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aigw_core::balance::{bench_hint_ms, pick, Candidate, Picked, Ticket};
use aigw_core::config::{Pool, MAX_MEMBERS};
use aigw_core::error::GatewayError;
use aigw_core::http1::{BodyFraming, ResponseHead};
use aigw_core::openai::ApiPath;
use aigw_core::request::{upstream_request, UpstreamRequest, COALESCE_MAX};

use crate::health::{now_ms, unix_secs};
use crate::metrics::F_RETRIES;
use crate::relay::{exchange_head, Sent, UpstreamError};
use crate::server::Request;
use crate::shard::{Shard, Snapshot};
use crate::upstream::UpConn;

mod single;
pub use single::attempt_one;

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
    /// The client's body names the model itself.
    pub model_in_body: bool,
    /// The request id sent upstream.
    pub request_id: &'a str,
    /// The only backend that may serve the request (it holds the stored response named).
    pub pin: Option<usize>,
}

/// The last backend an attempt went to, and how many attempts were made: what a gateway-made
/// error (502, 503, 504) reports in `x-aigw-backend` and `x-aigw-attempts`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried {
    /// The backend id, when any was tried.
    pub backend: Option<usize>,
    /// Attempts made.
    pub attempts: usize,
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
    tried_last: &mut Tried,
) -> Result<Won, GatewayError> {
    let cfg = &snap.cfg;
    let pool: &Pool = &cfg.pools[pool_id];
    // A pinned request may go to its backend only: every other member counts as tried.
    let mut tried: u64 = match ask.pin {
        Some(bid) => pool
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.backend != bid)
            .fold(0, |t, (i, _)| if i < 64 { t | 1 << i } else { t }),
        None => 0,
    };
    let mut attempts = 0;
    let mut last: Option<Won> = None;
    let mut last_err: Option<GatewayError> = None;
    loop {
        let now = now_ms();
        let picked = if attempts < pool.max_attempts {
            pick_member(shard, snap, pool_id, tried, now)
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
        // upstream_request: this backend's bytes, checked by the encoder. A request that cannot
        // be built is the client's error: it returns before anything counts against the backend.
        let sent = match build(shard, snap, bid, ask) {
            Ok(s) => s,
            Err(e) => {
                // The pick may have taken the member's half-open probe turn: give it back, or
                // a request that was never sent would hold the member out for the lease.
                let state = &snap.health[bid];
                state.abandon(state.ticket(), now_ms());
                return Err(e);
            }
        };
        *tried_last = Tried {
            backend: Some(bid),
            attempts,
        };
        let state = &snap.health[bid];
        let ticket = state.ticket(); // outcomes count only if the breaker did not move meanwhile
        state.requests.fetch_add(1, Relaxed);
        let result = {
            // Counted down however the attempt ends; a cancelled one (client gone) gives its
            // half-open probe lease back.
            let mut guard = InFlight::enter(state, ticket);
            let r = try_backend(shard, snap, bid, &sent, wait).await;
            guard.finished = true;
            r
        };
        let backend = &cfg.backends[bid];
        let now = now_ms();
        match result {
            Ok((up, resp)) => {
                let hint = upstream_hint(snap, &resp);
                let cb = backend.circuit_breaker.as_ref();
                state.record(
                    cb,
                    ticket,
                    now,
                    cb.is_some_and(|c| c.counts(resp.status)),
                    hint,
                );
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
                state.record(backend.circuit_breaker.as_ref(), ticket, now, true, None);
                state.bench(now, pool.bench_for.as_millis() as u64);
                tracing::warn!(backend = %backend.name, "attempt failed: {e}");
                last_err = Some(e);
            }
        }
    }
}

/// Pick the next member of pool `pool_id` not `tried` yet (a bitmask of member indexes).
fn pick_member(shard: &Shard, snap: &Snapshot, pool_id: usize, tried: u64, now: u64) -> Picked {
    let pool = &snap.cfg.pools[pool_id];
    let members = &pool.members[..pool.members.len().min(MAX_MEMBERS)];
    let Some(first) = members.first() else {
        return Picked::Nothing { retry_at: None };
    };
    // On the stack (config caps a pool at MAX_MEMBERS) and only for the pick, so the request's
    // future does not carry it across its awaits; the slots past the members are never read.
    let cands: [Candidate<'_>; MAX_MEMBERS] = std::array::from_fn(|i| {
        let m = members.get(i).unwrap_or(first);
        Candidate {
            priority: m.priority,
            weight: m.weight,
            state: &snap.health[m.backend],
        }
    });
    let mut wrr = snap.wrr[pool_id].borrow_mut();
    pick(
        &cands[..members.len()],
        pool.strategy,
        &mut wrr,
        |i| i < 64 && tried & (1 << i) != 0,
        now,
        || shard.rand01(),
    )
}

/// One attempt in flight at a backend, for `/backends` and least-busy picks. Dropped before it
/// finished (the request was cancelled), it abandons its ticket.
struct InFlight<'a> {
    state: &'a aigw_core::balance::BackendState,
    ticket: Ticket,
    finished: bool,
}

impl<'a> InFlight<'a> {
    fn enter(state: &'a aigw_core::balance::BackendState, ticket: Ticket) -> Self {
        state.in_flight.fetch_add(1, Relaxed);
        InFlight {
            state,
            ticket,
            finished: false,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Relaxed);
        if !self.finished {
            self.state.abandon(self.ticket, now_ms());
        }
    }
}

/// Drop a failed response we will not relay; keep the connection only when its body is already
/// read exactly to the end (nothing missing, nothing behind it).
fn discard(shard: &Shard, snap: &Snapshot, mut won: Won) {
    let complete = match won.resp.framing {
        BodyFraming::Length(n) => won.up.conn.buf.len() as u64 == n,
        BodyFraming::Empty => won.up.conn.buf.is_empty(),
        BodyFraming::Chunked | BodyFraming::UntilClose => false,
    };
    if complete && won.resp.keep_alive {
        won.up.conn.buf.clear();
        let max = snap.cfg.gateway.max_idle_per_backend;
        shard
            .pools
            .put(&snap.backend_keys[won.backend], won.up, max);
    }
}

/// The bytes `ask` is sent to backend `bid` as.
///
/// # Errors
/// 400 when the request cannot go to this backend (a client's error, never the backend's).
fn build(shard: &Shard, snap: &Snapshot, bid: usize, ask: &Ask<'_>) -> Result<Sent, GatewayError> {
    let small = if ask.req.body.len() <= COALESCE_MAX {
        ask.req.body.len()
    } else {
        0
    };
    let out = upstream_request(
        shard.bufs.take(HEAD_ROOM + small),
        &snap.cfg.backends[bid],
        snap.auth[bid].as_ref().map(|(n, v)| (*n, v.as_str())),
        ask.path,
        ask.model,
        ask.model_in_body,
        &ask.req.head,
        &ask.req.body,
        ask.request_id,
    )?;
    Ok(sent(out, ask.req.head.is_method("HEAD")))
}

/// Room an upstream head is expected to need (a larger one grows its buffer).
const HEAD_ROOM: usize = 2048;

/// `out` as it is written: a small body behind the head (one write), a large one from its own
/// `Bytes`, uncopied. `head_only`: a `HEAD` request, whose answer has no body.
pub fn sent(out: UpstreamRequest, head_only: bool) -> Sent {
    let (mut head, body) = (out.head, out.body);
    let body = if body.len() <= COALESCE_MAX {
        head.extend_from_slice(&body);
        bytes::Bytes::new()
    } else {
        body
    };
    Sent {
        head: head.freeze(),
        body,
        head_only,
    }
}

/// The upstream's `Retry-After` / `retry-after-ms` / `x-ratelimit-reset-*` hint in `resp`,
/// capped at `max_upstream_hint`.
fn upstream_hint(snap: &Snapshot, resp: &ResponseHead) -> Option<u64> {
    let cap = u64::try_from(snap.cfg.gateway.max_upstream_hint.as_millis()).unwrap_or(u64::MAX);
    bench_hint_ms(&resp.headers, unix_secs(), cap)
}

/// One attempt at one backend: a pooled connection when one is idle, retried once on a fresh
/// connection only if the pooled one, idle long enough to have been closed by the upstream's
/// keep-alive timer, failed before any byte of an answer (see `UpConn::may_resend`).
async fn try_backend(
    shard: &Shard,
    snap: &Snapshot,
    bid: usize,
    sent: &Sent,
    wait: &mut Duration,
) -> Result<(UpConn, ResponseHead), GatewayError> {
    let g = &snap.cfg.gateway;
    let backend = &snap.cfg.backends[bid];
    let key = &snap.backend_keys[bid];
    let mut pooled = shard.pools.take(key, g.upstream_idle_timeout);
    loop {
        let mut up = match pooled.take() {
            Some(c) => c,
            None => {
                let t0 = std::time::Instant::now();
                let c = shard
                    .pools
                    .connect(
                        &snap.addrs[bid].load_full(),
                        g.connect_timeout,
                        &snap.transports[bid],
                    )
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
        match exchange_head(&mut up, sent, g.upstream_timeout, wait).await {
            Ok(resp) => return Ok((up, resp)),
            Err(UpstreamError::Closed(_)) if up.may_resend() => continue, // closed while idle
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
