//! The lookup: decided synchronously from the request (is it cacheable, which partition, which
//! text), then the exact layer (no await), then the semantic layer, whose embeddings call is the
//! only await a lookup adds.
//!
//! Every failure fails open: the request goes on to the backends, marked `x-aigw-cache: error`
//! (embedder) or `bypass` (not cacheable), and nothing about the cache can refuse a request.

use std::sync::Arc;
use std::time::Instant;

use aigw_core::cache::index::{Hit, Unit};
use aigw_core::cache::prompt::{
    analyse, guards_pass, Analysed, EmbedMode, Guard, Operation, Shape,
};
use aigw_core::cache::Entry;
use aigw_core::config::{CacheGuard, EmbedWindow, SemanticCache, VaryBy};
use aigw_core::http1::has_token;

use super::host::LiveCache;
use crate::health::unix_ms;
use crate::metrics::F_CACHE_LOOKUPS;
use crate::pipeline::RequestCtx;

/// What the lookup found.
pub enum Lookup {
    /// No cache applies (none configured, or not a cached operation): no header.
    Off,
    /// An answer to serve.
    Hit(Served),
    /// The client hung up during the lookup: nothing to answer.
    ClientGone,
    /// The token limits refused the request before its prompt was embedded: answer that.
    Refused(aigw_core::error::GatewayError),
    /// Go to the backends: the answer carries `x-aigw-cache: header` (`miss`, `bypass` for a
    /// request that is not cacheable or asked `no-cache`, `error` when the embedder failed), and
    /// is stored by `plan` once complete (none when it may not be: `no-store`, not cacheable).
    Forward {
        /// The `x-aigw-cache` value.
        header: &'static str,
        /// What to store.
        plan: Option<StorePlan>,
    },
}

/// A hit, ready to serve.
pub struct Served {
    /// The entry.
    pub entry: Arc<Entry>,
    /// `hit-exact` or `hit-semantic`.
    pub header: &'static str,
    /// The similarity of a semantic hit.
    pub similarity: Option<f32>,
    /// The operation (for a stream's replay).
    pub operation: Operation,
    /// The client asked for a stream.
    pub stream: bool,
    /// … with `stream_options.include_usage`.
    pub include_usage: bool,
}

/// What to store once the backend's answer is complete.
pub struct StorePlan {
    /// The live cache the lookup used (a reload meanwhile does not move the entry elsewhere).
    pub live: Arc<LiveCache>,
    /// The operation.
    pub operation: Operation,
    /// Partition key.
    pub partition: u128,
    /// Exact key (`None` in `mode = "semantic"`).
    pub exact: Option<u128>,
    /// The vector of the text (`None` in `mode = "exact"` or when the embedder failed).
    pub vector: Option<Unit>,
    /// The text the entry is found by.
    pub text: String,
    /// Store a streamed answer (`store_streams`).
    pub streams: bool,
}

/// The synchronous half: is the request cacheable, and under which keys.
pub(crate) enum Prepared {
    Off,
    Bypass(&'static str),
    Ready {
        live: Arc<LiveCache>,
        analysed: Analysed,
        operation: Operation,
        lookup: bool,
        store: bool,
    },
}

/// The operation `op` as the cache knows it, when configured for it.
fn operation(cfg: &SemanticCache, op: &str) -> Option<Operation> {
    if !cfg.operations.iter().any(|o| o == op) {
        return None;
    }
    match op {
        "chat/completions" => Some(Operation::Chat),
        "completions" => Some(Operation::Completions),
        "responses" => Some(Operation::Responses),
        _ => None,
    }
}

/// Decide, without awaiting, whether and how the request is looked up.
pub(crate) fn prepare(ctx: &RequestCtx<'_>, live: Option<&Arc<LiveCache>>) -> Prepared {
    let (Some(cfg), Some(live)) = (ctx.snap.cfg.semantic_cache.as_ref(), live) else {
        return Prepared::Off;
    };
    let Some(path) = ctx.path.as_ref() else {
        return Prepared::Off;
    };
    // Only a model call creates an answer worth keeping: `POST responses`, not `GET responses/{id}`.
    if !ctx.req.head.is_method("POST") || path.response_object().is_some() {
        return Prepared::Off;
    }
    let Some(op) = operation(cfg, path.operation) else {
        return Prepared::Off;
    };
    let head = &ctx.req.head;
    if head
        .header("content-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"))
    {
        return Prepared::Bypass("encoded request body");
    }
    let (mut lookup, mut store) = (true, true);
    if cfg.respect_cache_control {
        for v in head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"cache-control"))
        {
            lookup &= !has_token(&v.value, "no-cache");
            store &= !has_token(&v.value, "no-store");
        }
    }
    // The partition's context, in a fixed order: what was asked of whom, and who asks.
    let model = ctx.model();
    let embedder = cfg
        .embedder
        .as_ref()
        .map_or_else(String::new, |e| format!("{}/{}", e.model, e.dimensions));
    let mut owned: Vec<Vec<u8>> = Vec::with_capacity(3 + cfg.vary_by.len());
    owned.push(path.operation.as_bytes().to_vec());
    owned.push(model.as_bytes().to_vec());
    owned.push(embedder.into_bytes());
    // Azure's `api-version` picks the answer's schema: answers of two versions are not shared.
    let version = head
        .query()
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .unwrap_or("");
    owned.push([b"api-version=".as_slice(), version.as_bytes()].concat());
    for v in &cfg.vary_by {
        let value = match v {
            VaryBy::Consumer => {
                let name = ctx
                    .rec
                    .identity
                    .and_then(|i| i.consumer())
                    .and_then(|i| ctx.snap.cfg.consumers.get(i))
                    .map_or("", |c| c.name.as_str());
                [b"consumer=".as_slice(), name.as_bytes()].concat()
            }
            VaryBy::Ip => format!("ip={}", ctx.req.peer.ip()).into_bytes(),
            VaryBy::Model => [b"model=".as_slice(), model.as_bytes()].concat(),
            VaryBy::Header(name) => {
                let mut values = head
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()));
                match (values.next(), values.next()) {
                    (Some(h), None) => [name.as_bytes(), b"=", &h.value].concat(),
                    // Without its value the request has no partition of its own: sharing one with
                    // every other request that lacks it is what vary_by exists to prevent.
                    (None, _) => return Prepared::Bypass("vary_by header missing"),
                    // Twice: which one is the caller's is not known (a proxy that appends its
                    // value leaves the client's own first), so no partition is the caller's.
                    (Some(_), Some(_)) => return Prepared::Bypass("vary_by header repeated"),
                }
            }
        };
        owned.push(value);
    }
    let context: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    let shape = Shape {
        operation: op,
        embed: match cfg.embed {
            EmbedWindow::LastUser => EmbedMode::LastUser,
            EmbedWindow::Conversation => EmbedMode::Conversation,
        },
        ignore_system_messages: cfg.ignore_system_messages,
        max_message_count: cfg.max_message_count,
    };
    match analyse(&live.keyer, &ctx.req.body, &shape, &context) {
        // An entry holds its text as well as its answer, both within `max_entry_bytes`: a longer
        // text could never be stored, so it is neither embedded (a paid call, and the body
        // limit is far above what embedders take) nor looked up.
        Ok(analysed) if analysed.text.len() > cfg.max_entry_bytes => {
            Prepared::Bypass("text longer than max_entry_bytes")
        }
        Ok(analysed) => Prepared::Ready {
            live: live.clone(),
            analysed,
            operation: op,
            lookup,
            store,
        },
        Err(b) => Prepared::Bypass(b.as_str()),
    }
}

/// The guards of `cfg` as the prompt module names them.
fn guards(cfg: &SemanticCache) -> Vec<Guard> {
    cfg.guards
        .iter()
        .map(|g| match g {
            CacheGuard::Numbers => Guard::Numbers,
            CacheGuard::Negation => Guard::Negation,
        })
        .collect()
}

/// Look the request up: the exact layer, then (with an embedder) the semantic one.
pub(crate) async fn run<S: crate::peer::ClientIo>(
    ctx: &mut RequestCtx<'_>,
    conn: &crate::conn::Conn<S>,
) -> Lookup {
    let live = ctx.snap.cache.clone();
    let prepared = prepare(ctx, live.as_ref());
    let (live, analysed, operation, lookup, store) = match prepared {
        Prepared::Off => return Lookup::Off,
        Prepared::Bypass(why) => {
            tracing::debug!(request_id = %ctx.rec.request_id, "semantic cache bypassed: {why}");
            count(ctx, "none", "bypass");
            return Lookup::Forward {
                header: "bypass",
                plan: None,
            };
        }
        Prepared::Ready {
            live,
            analysed,
            operation,
            lookup,
            store,
        } => (live, analysed, operation, lookup, store),
    };
    let Some(cfg) = ctx.snap.cfg.semantic_cache.as_ref() else {
        return Lookup::Off;
    };
    let t0 = Instant::now();
    let mut plan = StorePlan {
        live: live.clone(),
        operation,
        partition: analysed.partition,
        exact: cfg.mode.exact().then_some(analysed.exact),
        vector: None,
        text: analysed.text.clone(),
        streams: cfg.store_streams,
    };
    let forward = |header, plan: StorePlan| Lookup::Forward {
        header,
        plan: store.then_some(plan),
    };
    if !lookup {
        count(ctx, "none", "bypass");
        // Stored without its vector: an exact repeat finds it, a paraphrase does not.
        return forward("bypass", plan);
    }
    let served = |entry: Arc<Entry>, header: &'static str, similarity: Option<f32>| Served {
        entry,
        header,
        similarity,
        operation,
        stream: analysed.stream,
        include_usage: analysed.include_usage,
    };
    if cfg.mode.exact() {
        if let Some(entry) = live.cache.lookup_exact(analysed.exact, unix_ms()) {
            count(ctx, "exact", "hit");
            ctx.shard.metrics.shared.cache_lookup.observe(t0.elapsed());
            return Lookup::Hit(served(entry, "hit-exact", None));
        }
        count(ctx, "exact", "miss");
    }
    let Some(emb) = cfg.embedder.as_ref().filter(|_| cfg.mode.semantic()) else {
        ctx.shard.metrics.shared.cache_lookup.observe(t0.elapsed());
        return forward("miss", plan);
    };
    // The embeddings call costs money: only a request the limits admit may make one (else a
    // caller over its limits could make any number, each answered 429 after it). The
    // reservation is the request's own (`admit` keeps it); a hit hands it back unless charged.
    // A refusal here is the request's answer: no layer is left that could serve it, and
    // admitting it again after the lookup would only repeat the refusal's work.
    if let Err(e) = crate::pipeline::admit(ctx) {
        ctx.shard.metrics.shared.cache_lookup.observe(t0.elapsed());
        return Lookup::Refused(e);
    }
    match super::embed::vector(ctx, conn, emb, &analysed.text).await {
        Ok(unit) => {
            let guards = guards(cfg);
            let text = analysed.text.as_str();
            let mut accept = |e: &Entry| guards_pass(&guards, text, &e.text);
            let hit: Option<Hit> = live.cache.lookup_semantic(
                analysed.partition,
                &unit,
                cfg.min_similarity,
                unix_ms(),
                &mut accept,
            );
            ctx.shard.metrics.shared.cache_lookup.observe(t0.elapsed());
            if let Some(h) = hit {
                count(ctx, "semantic", "hit");
                return Lookup::Hit(served(h.entry, "hit-semantic", Some(h.similarity)));
            }
            count(ctx, "semantic", "miss");
            plan.vector = Some(unit);
            forward("miss", plan)
        }
        Err(super::embed::EmbedError::ClientGone) => Lookup::ClientGone,
        Err(e) => {
            tracing::warn!(request_id = %ctx.rec.request_id, "semantic cache lookup failed open: {e}");
            count(ctx, "semantic", "error");
            ctx.shard
                .metrics
                .add(crate::metrics::F_CACHE_EMBED_ERRORS, &[], 1);
            // Without a vector only the exact layer can hold the answer.
            let plan = plan.exact.is_some().then_some(plan);
            Lookup::Forward {
                header: "error",
                plan: plan.filter(|_| store),
            }
        }
    }
}

fn count(ctx: &RequestCtx<'_>, layer: &str, result: &str) {
    ctx.shard.metrics.add(F_CACHE_LOOKUPS, &[layer, result], 1);
}
