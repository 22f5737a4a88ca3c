//! `[semantic_cache]`: answers kept for prompts that were asked before (exactly or nearly), checked
//! once into [`SemanticCache`].
//!
//! The safety of a shared cache is in its partitions, so the defaults are the careful ones: one
//! partition per consumer (`vary_by = ["consumer"]`), both lexical guards on, conversations past
//! ten messages never cached; and the similarity bar has no default: the file says it.

use std::time::Duration;

use serde::Deserialize;

pub use super::cache_types::*;
use super::locate::key_path;
use super::raw::RawDuration;
use super::types::Pool;
use super::validate::{duration_in, invalid, Result, DAY};

/// `[semantic_cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSemanticCache {
    mode: Option<String>,
    operations: Option<Vec<String>>,
    similarity_threshold: Option<f64>,
    score_threshold: Option<f64>,
    ttl: Option<RawDuration>,
    max_entries: Option<u64>,
    generations: Option<u64>,
    vary_by: Option<Vec<String>>,
    embed: Option<String>,
    ignore_system_messages: Option<bool>,
    max_message_count: Option<u64>,
    guards: Option<Vec<String>>,
    store_streams: Option<bool>,
    charge_hits: Option<bool>,
    respect_cache_control: Option<bool>,
    queue_capacity: Option<u64>,
    max_entry_bytes: Option<u64>,
    index: Option<RawIndex>,
    embedder: Option<RawEmbedder>,
}

/// `[semantic_cache.index]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndex {
    hnsw_min_entries: Option<u64>,
    m: Option<u64>,
    ef_construction: Option<u64>,
    ef_search: Option<u64>,
}

/// `[semantic_cache.embedder]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbedder {
    pool: Option<String>,
    model: Option<String>,
    dimensions: Option<u64>,
    timeout: Option<RawDuration>,
}

/// Operations the cache can serve.
pub const CACHEABLE_OPERATIONS: [&str; 3] = ["chat/completions", "completions", "responses"];
/// Most entries a cache may be configured for.
const MAX_ENTRIES: u64 = 10_000_000;
/// Largest vector size accepted.
const MAX_DIMENSIONS: u64 = 8192;

/// Check `[semantic_cache]` against the pools already checked.
pub(super) fn semantic_cache(
    raw: Option<RawSemanticCache>,
    pools: &[Pool],
) -> Result<Option<SemanticCache>> {
    let Some(r) = raw else {
        return Ok(None);
    };
    let at = |k: &str| key_path!["semantic_cache", k];
    let mode = match r.mode.as_deref().map(str::trim) {
        None | Some("exact+semantic") => CacheMode::ExactSemantic,
        Some("exact") => CacheMode::Exact,
        Some("semantic") => CacheMode::Semantic,
        Some(o) => {
            return Err(invalid(
                at("mode"),
                format!(
                    "unknown mode \"{o}\" (expected \"exact\", \"semantic\" or \"exact+semantic\")"
                ),
            ))
        }
    };
    let operations = operations(r.operations)?;
    let min_similarity = threshold(r.similarity_threshold, r.score_threshold)?;
    let ttl = duration_in(
        at("ttl"),
        &r.ttl,
        Duration::from_secs(600),
        Duration::from_secs(1)..=DAY,
    )?;
    let max_entries = in_range(at("max_entries"), r.max_entries, 100_000, 1, MAX_ENTRIES)?;
    let generations = in_range(at("generations"), r.generations, 4, 2, 64)?;
    let vary_by = vary_by(r.vary_by)?;
    let embed = match r.embed.as_deref().map(str::trim) {
        None | Some("last_user") => EmbedWindow::LastUser,
        Some("conversation") => EmbedWindow::Conversation,
        Some(o) => {
            return Err(invalid(
                at("embed"),
                format!("unknown value \"{o}\" (expected \"last_user\" or \"conversation\")"),
            ))
        }
    };
    let max_message_count = in_range(at("max_message_count"), r.max_message_count, 10, 1, 1024)?;
    let guards = guards(r.guards)?;
    let queue_capacity = in_range(at("queue_capacity"), r.queue_capacity, 1024, 1, 1 << 20)?;
    let max_entry_bytes = in_range(
        at("max_entry_bytes"),
        r.max_entry_bytes,
        1 << 20,
        1,
        64 << 20,
    )?;
    let index = index(r.index.unwrap_or_default())?;
    let embedder = match (mode.semantic(), r.embedder) {
        (true, None) => {
            return Err(invalid(
                key_path!["semantic_cache"],
                format!("mode \"{}\" needs a [semantic_cache.embedder] table (pool = \"NAME\" of a pool serving embeddings)", mode_name(mode)),
            ))
        }
        (true, Some(e)) => Some(embedder(e, pools)?),
        (false, Some(_)) => {
            return Err(invalid(
                key_path!["semantic_cache", "embedder"],
                "mode \"exact\" embeds nothing: remove [semantic_cache.embedder] or use mode \"exact+semantic\"",
            ))
        }
        (false, None) => None,
    };
    Ok(Some(SemanticCache {
        mode,
        operations,
        min_similarity,
        ttl,
        max_entries,
        generations,
        vary_by,
        embed,
        ignore_system_messages: r.ignore_system_messages.unwrap_or(true),
        max_message_count,
        guards,
        store_streams: r.store_streams.unwrap_or(true),
        charge_hits: r.charge_hits.unwrap_or(false),
        respect_cache_control: r.respect_cache_control.unwrap_or(true),
        queue_capacity,
        max_entry_bytes,
        index,
        embedder,
    }))
}

fn mode_name(m: CacheMode) -> &'static str {
    match m {
        CacheMode::Exact => "exact",
        CacheMode::Semantic => "semantic",
        CacheMode::ExactSemantic => "exact+semantic",
    }
}

/// `v` (or `default`) within `lo..=hi`.
fn in_range(
    path: super::locate::KeyPath,
    v: Option<u64>,
    default: u64,
    lo: u64,
    hi: u64,
) -> Result<usize> {
    let n = v.unwrap_or(default);
    if !(lo..=hi).contains(&n) {
        return Err(invalid(path, format!("must be between {lo} and {hi}")));
    }
    usize::try_from(n).map_err(|_| invalid(path, "too large for this machine"))
}

fn operations(raw: Option<Vec<String>>) -> Result<Vec<String>> {
    let Some(list) = raw else {
        return Ok(CACHEABLE_OPERATIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect());
    };
    if list.is_empty() {
        return Err(invalid(
            key_path!["semantic_cache", "operations"],
            "is empty: name at least one of \"chat/completions\", \"completions\", \"responses\" (or remove [semantic_cache])",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, op) in list.into_iter().enumerate() {
        let op = op.trim().trim_start_matches('/').to_owned();
        if !CACHEABLE_OPERATIONS.contains(&op.as_str()) {
            return Err(invalid(
                key_path!["semantic_cache", "operations", i],
                format!("\"{op}\" cannot be cached (expected \"chat/completions\", \"completions\" or \"responses\")"),
            ));
        }
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

/// The least similarity: `similarity_threshold`, or `1 - score_threshold` (APIM's distance).
fn threshold(similarity: Option<f64>, score: Option<f64>) -> Result<f32> {
    let at = |k: &str| key_path!["semantic_cache", k];
    let sim = match (similarity, score) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at("score_threshold"),
                "set similarity_threshold (cosine, higher = stricter) or score_threshold (distance, lower = stricter), not both",
            ))
        }
        (Some(s), None) if s.is_finite() && s > 0.0 && s <= 1.0 => s,
        (Some(_), None) => {
            return Err(invalid(
                at("similarity_threshold"),
                "must be a cosine similarity above 0 and at most 1 (e.g. 0.95)",
            ))
        }
        (None, Some(d)) if d.is_finite() && (0.0..1.0).contains(&d) => 1.0 - d,
        (None, Some(_)) => {
            return Err(invalid(
                at("score_threshold"),
                "must be a distance of at least 0 and below 1 (e.g. 0.05; APIM's lab uses 0.8)",
            ))
        }
        (None, None) => {
            return Err(invalid(
                key_path!["semantic_cache"],
                "set similarity_threshold (cosine, e.g. 0.95) or score_threshold (APIM's distance, e.g. 0.05): which answers count as the same is too important to default",
            ))
        }
    };
    // f64 → f32 of a value in (0, 1] stays in (0, 1].
    Ok(sim as f32)
}

fn vary_by(raw: Option<Vec<String>>) -> Result<Vec<VaryBy>> {
    let Some(list) = raw else {
        return Ok(vec![VaryBy::Consumer]);
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let here = key_path!["semantic_cache", "vary_by", i];
        let t = v.trim();
        let item = match t {
            "consumer" => VaryBy::Consumer,
            "ip" => VaryBy::Ip,
            "model" => VaryBy::Model,
            _ if t.starts_with("header:") => {
                let h = t["header:".len()..].trim();
                if !super::policy::is_header_name(h) {
                    return Err(invalid(here, format!("invalid header name \"{h}\" in \"{t}\"")));
                }
                VaryBy::Header(h.to_ascii_lowercase())
            }
            _ if t.starts_with("claim:") => {
                return Err(invalid(
                    here,
                    format!("\"{t}\": this gateway authenticates callers by key, so there are no token claims to vary by yet; use \"consumer\" or \"header:NAME\""),
                ))
            }
            _ => {
                return Err(invalid(
                    here,
                    format!("unknown value \"{t}\" (expected \"consumer\", \"ip\", \"model\" or \"header:NAME\")"),
                ))
            }
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

fn guards(raw: Option<Vec<String>>) -> Result<Vec<CacheGuard>> {
    let Some(list) = raw else {
        return Ok(vec![CacheGuard::Numbers, CacheGuard::Negation]);
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, g) in list.iter().enumerate() {
        let guard = match g.trim() {
            "numbers" => CacheGuard::Numbers,
            "negation" => CacheGuard::Negation,
            o => {
                return Err(invalid(
                    key_path!["semantic_cache", "guards", i],
                    format!("unknown guard \"{o}\" (expected \"numbers\" or \"negation\")"),
                ))
            }
        };
        if !out.contains(&guard) {
            out.push(guard);
        }
    }
    Ok(out)
}

/// `[semantic_cache.index]`: the defaults are the index's own, measured (see its `params`).
fn index(r: RawIndex) -> Result<IndexTuning> {
    use crate::cache::index::{IndexParams, DEFAULT_EF_SEARCH, DEFAULT_HNSW_MIN_ENTRIES};
    let at = |k: &str| key_path!["semantic_cache", "index", k];
    let d = IndexParams::new(2);
    Ok(IndexTuning {
        hnsw_min_entries: in_range(
            at("hnsw_min_entries"),
            r.hnsw_min_entries,
            DEFAULT_HNSW_MIN_ENTRIES as u64,
            16,
            1 << 24,
        )?,
        m: in_range(at("m"), r.m, d.m as u64, 4, 64)?,
        ef_construction: in_range(
            at("ef_construction"),
            r.ef_construction,
            d.ef_construction as u64,
            8,
            1024,
        )?,
        ef_search: in_range(
            at("ef_search"),
            r.ef_search,
            DEFAULT_EF_SEARCH as u64,
            4,
            1024,
        )?,
    })
}

fn embedder(r: RawEmbedder, pools: &[Pool]) -> Result<CacheEmbedder> {
    let at = |k: &str| key_path!["semantic_cache", "embedder", k];
    let name = r.pool.ok_or_else(|| {
        invalid(
            key_path!["semantic_cache", "embedder"],
            "missing key \"pool\" (the [pools.NAME] whose members serve embeddings)",
        )
    })?;
    let pool = pools.iter().position(|p| p.name == name).ok_or_else(|| {
        let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        invalid(
            at("pool"),
            format!("unknown pool \"{name}\" (defined: {})", known.join(", ")),
        )
    })?;
    let model = r
        .model
        .unwrap_or_else(|| "text-embedding-3-small".to_owned());
    crate::request::check_name(&model).map_err(|e| invalid(at("model"), e.to_string()))?;
    Ok(CacheEmbedder {
        pool,
        model,
        dimensions: in_range(at("dimensions"), r.dimensions, 512, 2, MAX_DIMENSIONS)?,
        timeout: duration_in(
            at("timeout"),
            &r.timeout,
            Duration::from_secs(2),
            Duration::from_millis(1)..=Duration::from_secs(60),
        )?,
    })
}
