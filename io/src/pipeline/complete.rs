//! `complete`: settle the reservations against what was really spent, then count and log.

use super::admit::now_ns;
use super::RequestCtx;
use crate::record::finish as record;

/// Settle, count and log one finished request. Reservations `respond` already settled (to send
/// the settled rate-limit headers) are not settled again.
pub(super) fn finish(ctx: &mut RequestCtx<'_>) {
    if let Some(mut adm) = ctx.admission.take() {
        adm.settle(ctx.rec.usage.map_or(0, |u| u.total_tokens), now_ns());
    }
    super::stored::remember(ctx);
    let req = ctx.req;
    record(ctx.shard, ctx.snap, &ctx.rec, req.peer, req.started, req);
}
