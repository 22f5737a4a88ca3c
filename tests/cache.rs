//! The semantic cache (issue 10), black-box, under both monoio drivers, with the built-in mock as
//! chat backend and as embedder (`core/src/mock/embed.rs`: bag-of-words vectors). Written against
//! the contract (`[semantic_cache]`, `x-aigw-cache`, `GET`/`DELETE /cache`, `aigw_cache_*`) before
//! the feature existed: until it lands every test here fails at start-up, because the config
//! loader refuses the unknown key `semantic_cache`.
//!
//! - here: paraphrase hit, unrelated miss, exact hit without an embeddings call; TTL; the admin
//!   view, flush and metrics.
//! - `cache/ops.rs`: completions and the Responses API, the `operations` list, reload of the
//!   threshold and of the embedder; `cache/config.rs`: what the config loader refuses.
//! - `cache/tenancy.rs`: partitions by consumer and by header (forged values, ambiguous
//!   concatenations), models, the conversation context (`last_user` vs `conversation`).
//! - `cache/bypass.rs`: the numbers and negation guards, every bypass, `no-store`.
//! - `cache/streams.rs`: streams stored only after `[DONE]` and replayed, abandoned streams, and
//!   429/500/`length` answers never stored.
//! - `cache/load.rs`: fail-open on a down or slow embedder, token limits, capacity, 1,000
//!   duplicate lookups in `semantic` mode.
//! - `cache/sdk.rs`: the official Python SDK parses replayed streams (`tests/sdk/cache.py`).
//!
//! `cache/setup.rs` holds the prompts (with their cosines under the mock embedder) and the
//! config; `cache/probe.rs` the calls, counts, metrics and waits.
//!
//! Stores are asynchronous (an indexer thread): a test that needs an answer stored polls
//! `GET /cache` (bounded, [`probe::STORE_WAIT`]); one that needs an answer *not* stored sends a
//! sentinel after it and waits for the sentinel ([`probe::settle`]).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
#[path = "cache/bypass.rs"]
mod bypass;
#[path = "cache/config.rs"]
mod config;
#[path = "common/evil.rs"]
mod evil;
#[path = "cache/load.rs"]
mod load;
#[path = "cache/ops.rs"]
mod ops;
#[path = "cache/probe.rs"]
mod probe;
#[path = "cache/review.rs"]
mod review;
#[path = "cache/sdk.rs"]
mod sdk;
#[path = "cache/setup.rs"]
mod setup;
#[path = "cache/streams.rs"]
mod streams;
#[path = "cache/tenancy.rs"]
mod tenancy;

use std::time::{Duration, Instant};

use common::*;
use probe::*;
use setup::*;

both_drivers!(
    paraphrase_hits_unrelated_misses_exact_skips_the_embedder,
    entries_expire_after_ttl,
    admin_view_flush_and_metrics,
);

/// Issue 10, "done when" 1: a paraphrase is a semantic hit with the stored body byte for byte and
/// no backend call; an unrelated prompt misses; the same prompt again is an exact hit without an
/// embeddings call.
fn paraphrase_hits_unrelated_misses_exact_skips_the_embedder(d: Driver) {
    // A slow backend, so a hit that waited for it would show.
    let gw = Setup {
        llm_mock: "latency_ms = 400".into(),
        ..Setup::default()
    }
    .start(d);

    let a = expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first time");
    for h in ["x-aigw-cache-similarity", "age"] {
        assert!(
            a.resp.header(h).is_none(),
            "{h} on a miss: {}",
            a.describe()
        );
    }
    assert_eq!(llm_calls(&gw), 1, "a miss goes to the backend");
    assert!(
        emb_calls(&gw) >= 1,
        "a miss in exact+semantic mode is embedded"
    );
    wait_entries(&gw, 1, "the first answer");

    // The paraphrase: served from the cache, the stored body verbatim.
    let (llm0, emb0) = (llm_calls(&gw), emb_calls(&gw));
    let p = expect(
        ask(&gw, &[], &chat(COFFEE_WORK)),
        "hit-semantic",
        "a paraphrase (cos 0.928, threshold 0.85)",
    );
    assert_eq!(
        p.resp.text(),
        a.resp.text(),
        "a semantic hit must return the stored answer byte for byte"
    );
    assert_eq!(llm_calls(&gw), llm0, "a hit reached the backend");
    assert_eq!(
        emb_calls(&gw),
        emb0 + 1,
        "one embeddings call for the paraphrase"
    );
    let s = p.similarity();
    assert!(
        (THRESHOLD..=1.0).contains(&s),
        "similarity {s} below the threshold {THRESHOLD} was served"
    );
    assert!(
        (s - 0.928).abs() < 0.03,
        "x-aigw-cache-similarity {s}: the mock embedder gives 0.928 for this pair"
    );
    assert!(
        p.age() <= 2,
        "age {} for an answer stored just now",
        p.age()
    );
    assert!(
        p.took < Duration::from_millis(300),
        "a hit took {:?}: did it wait for the 400 ms backend?",
        p.took
    );

    // Unrelated: a miss, answered by the backend (a new id).
    let b = expect(
        ask(&gw, &[], &chat(MOUNTAIN)),
        "miss",
        "an unrelated prompt",
    );
    assert_eq!(llm_calls(&gw), llm0 + 1);
    assert_ne!(b.id(), a.id(), "an unrelated prompt got the cached answer");
    wait_entries(&gw, 2, "the unrelated answer");

    // Byte-identical: an exact hit, neither the backend nor the embedder is called; the answer
    // carries this caller's request id, not the stored one's.
    let (llm0, emb0) = (llm_calls(&gw), emb_calls(&gw));
    let e = expect(
        post(
            &gw,
            "/v1/chat/completions",
            &[("x-request-id", "cache-probe-7")],
            &chat(COFFEE),
        ),
        "hit-exact",
        "the same body again",
    );
    assert_eq!(
        e.resp.text(),
        a.resp.text(),
        "an exact hit changed the body"
    );
    assert_eq!(llm_calls(&gw), llm0, "an exact hit reached the backend");
    assert_eq!(emb_calls(&gw), emb0, "an exact hit called the embedder");
    assert_eq!(e.resp.header("x-request-id"), Some("cache-probe-7"));
    let _ = e.age();
}

/// Issue 10, "done when" 2 (TTL): with `ttl = "3s"` an answer is served at 1 s (with `age`) and
/// not after 3 s; the expired entry is then evicted and counted (`reason="ttl"`).
fn entries_expire_after_ttl(d: Driver) {
    let gw = Setup::with(CacheCfg {
        ttl: "3s",
        ..CacheCfg::default()
    })
    .start(d);
    let t0 = Instant::now();
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first time");
    wait_entries(&gw, 1, "the answer");
    sleep_until(t0 + Duration::from_millis(1200));
    let h = expect(
        ask(&gw, &[], &chat(COFFEE)),
        "hit-exact",
        "at 1.2 s of a 3 s ttl",
    );
    assert!(
        (1..=2).contains(&h.age()),
        "age {} at 1.2 s after the store",
        h.age()
    );

    // Expired: never served, whichever layer would have found it.
    sleep_until(t0 + Duration::from_millis(3600));
    let calls = llm_calls(&gw);
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "miss",
        "at 3.6 s of a 3 s ttl",
    );
    assert_eq!(llm_calls(&gw), calls + 1, "the expired answer was served");
    // Memory is reclaimed a generation at a time (at most ttl × G/(G−1) after the store); a
    // store of something else lets the indexer rotate if it only does so when it works.
    expect(ask(&gw, &[], &chat(TOASTER)), "miss", "an unrelated prompt");
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let text = metrics(&gw);
        if metric_sum(&text, "aigw_cache_evictions_total", &[("reason", "ttl")]) >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no aigw_cache_evictions_total{{reason=\"ttl\"}} 7 s after a 3 s ttl ran out:\n{}",
            cache_lines(&text)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// `GET /cache` reports entries, partitions, generations and memory; `DELETE /cache` flushes
/// (counted as `reason="flush"` evictions) and is not reachable on the client port; the
/// `aigw_cache_*` metrics count each layer's verdicts.
fn admin_view_flush_and_metrics(d: Driver) {
    let gw = Setup::default().start(d);
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first");
    expect(ask(&gw, &[], &chat(MOUNTAIN)), "miss", "second");
    wait_entries(&gw, 2, "two answers");

    let v = cache_stats(&gw);
    assert_eq!(v["entries"], 2, "{v}");
    for k in ["partitions", "generations", "memory_bytes"] {
        assert!(v[k].is_u64(), "GET /cache lacks a numeric {k}: {v}");
    }
    assert!(v["partitions"].as_u64() >= Some(1), "{v}");
    assert!(v["generations"].as_u64() >= Some(1), "{v}");
    assert!(v["memory_bytes"].as_u64() > Some(0), "{v}");
    wait_metric_at_least(&gw, "aigw_cache_entries", &[], 2.0);

    expect(ask(&gw, &[], &chat(COFFEE)), "hit-exact", "the same body");
    expect(
        ask(&gw, &[], &chat(COFFEE_WORK)),
        "hit-semantic",
        "a paraphrase",
    );
    expect(
        ask(&gw, &[("cache-control", "no-cache")], &chat(COFFEE)),
        "bypass",
        "no-cache",
    );
    // Whether a no-cache answer is stored is not asserted; make sure it is settled either way.
    settle(&gw);

    let lookups = "aigw_cache_lookups_total";
    wait_metric_at_least(
        &gw,
        lookups,
        &[("layer", "semantic"), ("result", "hit")],
        1.0,
    );
    let text = metrics(&gw);
    let got = |labels: &[(&str, &str)]| metric_sum(&text, lookups, labels);
    let all = cache_lines(&text);
    assert_eq!(got(&[("layer", "exact"), ("result", "hit")]), 1.0, "{all}");
    assert_eq!(
        got(&[("layer", "semantic"), ("result", "hit")]),
        1.0,
        "{all}"
    );
    // COFFEE, MOUNTAIN and the paraphrase missed the exact layer; the first two the semantic one.
    assert!(
        got(&[("layer", "exact"), ("result", "miss")]) >= 3.0,
        "{all}"
    );
    assert!(
        got(&[("layer", "semantic"), ("result", "miss")]) >= 2.0,
        "{all}"
    );
    assert!(got(&[("result", "bypass")]) >= 1.0, "{all}");
    assert_eq!(got(&[("result", "error")]), 0.0, "{all}");
    for name in [
        "aigw_cache_store_dropped_total",
        "aigw_cache_embedding_errors_total",
        "aigw_cache_tokens_saved_total",
        "aigw_cache_lookup_seconds_count",
        "aigw_cache_lookup_seconds_bucket",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{all}"
        );
    }
    assert!(
        metric_sum(&text, "aigw_cache_lookup_seconds_count", &[]) >= 4.0,
        "{all}"
    );
    assert!(
        metric_sum(&text, "aigw_cache_tokens_saved_total", &[]) > 0.0,
        "{all}"
    );
    assert_eq!(
        metric_sum(&text, "aigw_cache_embedding_errors_total", &[]),
        0.0
    );

    // The data plane has no /cache: a client cannot flush (nor read) the cache.
    let r = gw.call("DELETE", "/cache", &[], b"");
    assert!(
        r.status >= 400,
        "DELETE /cache on the client port: {}",
        r.status
    );
    let r = gw.call("GET", "/cache", &[], b"");
    assert!(
        r.status >= 400,
        "GET /cache on the client port: {}",
        r.status
    );
    assert!(entries(&gw) >= 2, "the client port flushed the cache");

    // Flush: nothing stored before it is served after it.
    let flushed = entries(&gw);
    let r = gw.admin("DELETE", "/cache");
    assert!(
        (200..300).contains(&r.status),
        "DELETE /cache: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(entries(&gw), 0, "entries right after DELETE /cache");
    let calls = llm_calls(&gw);
    expect(ask(&gw, &[], &chat(COFFEE)), "miss", "after a flush");
    expect(
        ask(&gw, &[], &chat(MOUNTAIN_NOW)),
        "miss",
        "a paraphrase after a flush",
    );
    assert_eq!(llm_calls(&gw), calls + 2);
    wait_metric_at_least(
        &gw,
        "aigw_cache_evictions_total",
        &[("reason", "flush")],
        flushed as f64,
    );
}
