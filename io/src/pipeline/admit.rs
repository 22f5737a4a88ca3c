//! `admit`: reserve the request's tokens from its caller's bucket and quota before forwarding.

use aigw_core::error::GatewayError;

use super::RequestCtx;
use crate::admission::{reserve, Caller};
use crate::health::{now_ms, unix_secs};

/// The buckets' monotonic clock in nanoseconds.
pub(super) fn now_ns() -> u64 {
    now_ms().saturating_mul(1_000_000)
}

/// Reserve, or refuse with 429 (bucket) / 403 (quota) and the caller's bucket headers.
///
/// # Errors
/// The refusal.
pub(super) fn run(ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    if ctx.admission.is_some() {
        return Ok(()); // reserved already (the cache's lookup admits before it embeds)
    }
    let Some(inspected) = &ctx.body else {
        return Ok(());
    };
    let snap = ctx.snap;
    let caller = Caller {
        headers: &ctx.req.head.headers,
        model: &inspected.model,
        body: &ctx.req.body,
        max_tokens: inspected.max_tokens,
        choices: inspected.n.unwrap_or(1),
        ip: ctx.req.peer.ip(),
    };
    let consumer = ctx.rec.identity.and_then(|i| i.consumer());
    let now = now_ns();
    match reserve(
        &snap.cfg,
        &snap.policy,
        &ctx.shard.limiters,
        consumer,
        &caller,
        now,
        unix_secs(),
    ) {
        Ok(adm) => {
            ctx.rate = adm.rate_headers(now);
            ctx.quota_left = adm.quota_left(unix_secs());
            ctx.admission = Some(adm);
            Ok(())
        }
        Err(refusal) => {
            ctx.rec.rejected = refusal.reason;
            ctx.quota_left = refusal.quota_left;
            ctx.rate = refusal.rate.map(|r| *r);
            Err(refusal.error)
        }
    }
}
