//! The cache on the admin port: `GET /cache`, `DELETE /cache` and its gauges in `/metrics`.

use std::fmt::Write;

use serde_json::{json, Value};

use super::CacheHost;

/// `GET /cache`: what the cache holds now.
pub fn stats(host: &CacheHost) -> Value {
    let Some(live) = host.live() else {
        return json!({"enabled": false});
    };
    let s = live.cache.stats();
    json!({
        "enabled": true,
        "entries": s.entries,
        "partitions": s.partitions,
        "generations": s.generations,
        "memory_bytes": s.memory_bytes,
        "stored": s.stored,
        "store_dropped": s.store_dropped,
        "evictions": {"ttl": s.evictions.ttl, "capacity": s.evictions.capacity, "flush": s.evictions.flush},
    })
}

/// Longest `DELETE /cache` waits for the indexer to reclaim what it flushed.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `DELETE /cache`: every entry stored so far is unreachable at once. The answer waits (without
/// blocking the admin thread) until the indexer has reclaimed them, so that it and a `GET /cache`
/// right after it agree; `reclaimed` is false if that took longer than two seconds.
pub async fn flush(host: &CacheHost) -> Value {
    let Some(live) = host.live() else {
        return json!({"enabled": false, "flushed": 0});
    };
    let before = live.cache.stats().entries;
    let n = live.cache.flush();
    let deadline = std::time::Instant::now() + FLUSH_WAIT;
    while !live.cache.flush_applied(n) && std::time::Instant::now() < deadline {
        monoio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    json!({"enabled": true, "flushed": before, "reclaimed": live.cache.flush_applied(n)})
}

/// The cache's gauges and counters in Prometheus text (nothing without a cache).
pub fn metrics(host: &CacheHost, out: &mut String) {
    let Some(live) = host.live() else {
        return;
    };
    let s = live.cache.stats();
    for (name, kind, help, v) in [
        (
            "aigw_cache_entries",
            "gauge",
            "Answers in the semantic cache (all partitions).",
            s.entries,
        ),
        (
            "aigw_cache_partitions",
            "gauge",
            "Partitions of the semantic cache holding answers.",
            s.partitions,
        ),
        (
            "aigw_cache_generations",
            "gauge",
            "Generations (eviction units) of the semantic cache.",
            s.generations,
        ),
        (
            "aigw_cache_memory_bytes",
            "gauge",
            "Estimated memory held by the semantic cache.",
            s.memory_bytes,
        ),
        (
            "aigw_cache_store_dropped_total",
            "counter",
            "Answers not stored because a worker's store queue was full.",
            s.store_dropped,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    let name = "aigw_cache_evictions_total";
    let _ = writeln!(
        out,
        "# HELP {name} Answers removed from the semantic cache, by reason.\n# TYPE {name} counter"
    );
    for (reason, v) in [
        ("ttl", s.evictions.ttl),
        ("capacity", s.evictions.capacity),
        ("flush", s.evictions.flush),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
    }
}
