//! Storing: once a backend's answer has ended, a complete 200 answer (a stream only after its
//! last event) becomes an entry, handed to the indexer through this worker's queue. The worker
//! never waits for the index: a full queue drops the entry (counted by the cache).

use std::sync::Arc;

use aigw_core::cache::index::StoreJob;
use aigw_core::cache::prompt::storable;
use aigw_core::cache::Entry;

use super::lookup::StorePlan;
use crate::health::unix_ms;
use crate::pipeline::RequestCtx;

/// Store the answer `body` (decoded, as the usage tap kept it; `None` when it was not kept whole)
/// of status `status` under `plan`.
pub fn answer(ctx: &RequestCtx<'_>, plan: StorePlan, status: u16, sse: bool, body: Option<&[u8]>) {
    let Some(cfg) = ctx.snap.cfg.semantic_cache.as_ref() else {
        return;
    };
    if status != 200 || (sse && !plan.streams) {
        return;
    }
    let Some(body) = body else {
        return;
    };
    let Some(s) = storable(plan.operation, sse, body) else {
        return;
    };
    // The text stays in memory with the answer: both count.
    if s.json.len().saturating_add(plan.text.len()) > cfg.max_entry_bytes {
        return;
    }
    let now = unix_ms();
    let ttl = u64::try_from(cfg.ttl.as_millis()).unwrap_or(u64::MAX);
    let entry = Arc::new(Entry {
        answer: s.json,
        text: plan.text.into_boxed_str(),
        created_ms: now,
        expires_ms: now.saturating_add(ttl),
        tokens: s.tokens,
    });
    let job = StoreJob {
        partition: plan.partition,
        exact: plan.exact,
        vector: plan.vector,
        entry,
    };
    // A full queue drops the job; the cache counts it (aigw_cache_store_dropped_total).
    let _ = plan.live.cache.submit(ctx.shard.id, job);
}
