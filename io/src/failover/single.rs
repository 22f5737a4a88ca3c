//! A route's single attempt: one backend, no pool around it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aigw_core::error::GatewayError;

use super::{try_backend, upstream_hint, InFlight, Tried, Won};
use crate::health::now_ms;
use crate::relay::Sent;
use crate::shard::{Shard, Snapshot};

/// One attempt at backend `bid`, for a route: no pool, so no pick among members, no failover
/// and no bench. The backend's breaker (and a bench a pool it serves set) still decides
/// whether it may be tried now, and the outcome moves the breaker: a connect error or a
/// timeout, or a status its `circuit_breaker.status` lists, counts as a failure.
///
/// # Errors
/// 503 with `Retry-After` while the backend may not be tried, 502/504 when it gave no response.
pub async fn attempt_one(
    shard: &Shard,
    snap: &Snapshot,
    bid: usize,
    sent: &Sent,
    wait: &mut Duration,
    tried: &mut Tried,
) -> Result<Won, GatewayError> {
    let backend = &snap.cfg.backends[bid];
    let state = &snap.health[bid];
    let now = now_ms();
    // For a breaker due for its probe this claims the probe turn (then the ticket below is the
    // half-open epoch's), exactly as a pool's pick does.
    if !state.try_acquire(now) {
        let secs = state
            .available_at(now)
            .saturating_sub(now)
            .div_ceil(1000)
            .max(1);
        return Err(GatewayError::Unavailable {
            message: format!(
                "backend '{}' is not available; try again later",
                backend.name
            ),
            retry_after_secs: Some(secs),
        });
    }
    *tried = Tried {
        backend: Some(bid),
        attempts: 1,
    };
    let ticket = state.ticket();
    state.requests.fetch_add(1, Relaxed);
    let result = {
        let mut guard = InFlight::enter(state, ticket);
        let r = try_backend(shard, snap, bid, sent, wait).await;
        guard.finished = true;
        r
    };
    let cb = backend.circuit_breaker.as_ref();
    let now = now_ms();
    match result {
        Ok((up, resp)) => {
            let failed = cb.is_some_and(|c| c.counts(resp.status));
            if failed {
                state.failures.fetch_add(1, Relaxed);
            }
            state.record(cb, ticket, now, failed, upstream_hint(snap, &resp));
            Ok(Won {
                up,
                resp,
                backend: bid,
                attempts: 1,
            })
        }
        Err(e) => {
            state.failures.fetch_add(1, Relaxed);
            state.record(cb, ticket, now, true, None);
            tracing::warn!(backend = %backend.name, "route attempt failed: {e}");
            Err(e)
        }
    }
}
