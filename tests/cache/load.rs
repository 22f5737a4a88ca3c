//! The cache under stress and failure (issue 10, "done when" 2, 6, 8, 9): a down, failing or slow
//! embedder fails open; hits are not charged to token limits and count as tokens saved;
//! `max_entries` holds while 3,000 answers are stored; 1,000 lookups of one vector in
//! `semantic` mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    a_down_failing_or_slow_embedder_fails_open,
    hits_are_not_charged_and_count_tokens_saved,
    capacity_is_bounded_and_evictions_are_counted,
    a_thousand_duplicate_lookups_in_semantic_mode,
);

/// The embedder down (nobody listens), answering 500, or slower than `timeout`: every request is
/// answered 200 by the backend, `x-aigw-cache: error`, counted in
/// `aigw_cache_embedding_errors_total` and as `lookups_total{layer="semantic",result="error"}`.
fn a_down_failing_or_slow_embedder_fails_open(d: Driver) {
    let cases = [
        (
            "down",
            Setup {
                emb_url: Some("http://{addr:nowhere}".into()),
                ..Setup::default()
            },
        ),
        (
            "answering 500",
            Setup {
                emb_mock: "fail_status = 500\nfail_every = 1".into(),
                ..Setup::default()
            },
        ),
        (
            "slower than the 300 ms timeout",
            Setup {
                emb_mock: "latency_ms = 3000".into(),
                ..Setup::with(CacheCfg {
                    timeout: "300ms",
                    ..CacheCfg::default()
                })
            },
        ),
    ];
    for (what, setup) in cases {
        let gw = setup.start(d);
        let prompts = [COFFEE, MOUNTAIN, TOASTER];
        for (i, p) in prompts.iter().enumerate() {
            let a = expect(
                ask(&gw, &[], &chat(p)),
                "error",
                &format!("embedder {what}"),
            );
            assert!(
                a.json()["choices"][0]["message"]["content"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Mock response from llm")),
                "{}",
                a.describe()
            );
            assert!(
                a.took < Duration::from_millis(2000),
                "embedder {what}: took {:?}",
                a.took
            );
            assert_eq!(llm_calls(&gw), i as u64 + 1, "embedder {what}");
        }
        let n = prompts.len() as f64;
        wait_metric_at_least(&gw, "aigw_cache_embedding_errors_total", &[], n);
        wait_metric_at_least(
            &gw,
            "aigw_cache_lookups_total",
            &[("layer", "semantic"), ("result", "error")],
            n,
        );
        assert_eq!(health(gw.addr("admin")), Some(200), "embedder {what}");
    }
}

const ALICE: (&str, &str) = ("api-key", "key-alice");

/// Issue 10, "done when" 9: with a token limit, a hit leaves `x-ratelimit-remaining-tokens` where
/// the miss left it (only the refill can raise it) and adds the stored call's `total_tokens` to
/// `aigw_cache_tokens_saved_total`, once per hit. With `charge_hits = true` a hit is charged.
fn hits_are_not_charged_and_count_tokens_saved(d: Driver) {
    // 600 tokens per minute: the refill (10 per second) is far below one answer's tokens.
    let alice = "[consumers.alice]\nkeys = [\"key-alice\"]\ntokens_per_minute = 600\n";
    let setup = Setup {
        extra: alice.into(),
        ..Setup::default()
    };
    let gw = setup.start(d);
    let a = expect(ask(&gw, &[ALICE], &chat(COFFEE)), "miss", "first");
    let left = a.num("x-ratelimit-remaining-tokens");
    let t = a.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        t > 10 && left + t <= 600,
        "remaining {left} after {t} tokens"
    );
    wait_entries(&gw, 1, "the answer");
    let saved = "aigw_cache_tokens_saved_total";

    let h = expect(ask(&gw, &[ALICE], &chat(COFFEE)), "hit-exact", "again");
    let after = h.num("x-ratelimit-remaining-tokens");
    assert!(
        after >= left,
        "an exact hit was charged: remaining {left} -> {after}"
    );
    wait_metric_at_least(&gw, saved, &[], t as f64);
    assert_eq!(
        metric(&gw, saved, &[]),
        t as f64,
        "one hit saves the stored call's tokens"
    );

    let s = expect(
        ask(&gw, &[ALICE], &chat(COFFEE_WORK)),
        "hit-semantic",
        "paraphrase",
    );
    let after = s.num("x-ratelimit-remaining-tokens");
    assert!(
        after >= left,
        "a semantic hit was charged: remaining {left} -> {after}"
    );
    wait_metric_at_least(&gw, saved, &[], 2.0 * t as f64);
    assert_eq!(metric(&gw, saved, &[]), 2.0 * t as f64);

    let gw = Setup {
        cache: CacheCfg {
            charge_hits: true,
            ..CacheCfg::default()
        },
        ..setup
    }
    .start(d);
    let a = expect(
        ask(&gw, &[ALICE], &chat(COFFEE)),
        "miss",
        "first, charge_hits",
    );
    let left = a.num("x-ratelimit-remaining-tokens");
    wait_entries(&gw, 1, "the answer");
    let h = expect(
        ask(&gw, &[ALICE], &chat(COFFEE)),
        "hit-exact",
        "again, charge_hits",
    );
    let after = h.num("x-ratelimit-remaining-tokens");
    assert!(
        after < left,
        "charge_hits = true: a hit left remaining at {left} -> {after}"
    );
}

/// Issue 10, "done when" 2 (capacity): `max_entries = 1000`, `generations = 4`, 3,000 distinct
/// answers stored over four keep-alive connections. `GET /cache` never shows more than 1,000
/// entries (sampled every 10 ms throughout), every store is accounted for as live, evicted for
/// capacity or dropped, at least 2,000 were evicted (allowing for a few dropped), the newest
/// answer is served and the oldest is gone.
fn capacity_is_bounded_and_evictions_are_counted(d: Driver) {
    const N: u64 = 3000;
    const MAX: u64 = 1000;
    const CLIENTS: u64 = 4;
    let gw = Setup::with(CacheCfg {
        max_entries: MAX,
        generations: 4,
        ..CacheCfg::default()
    })
    .start(d);
    // Four words used by no other prompt: unrelated to each other (cos ≈ 0 ± 0.06).
    let prompt = |i: u64| format!("alpha{i} bravo{i} charlie{i} delta{i}");
    let done = AtomicBool::new(false);
    let most = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(entries(&gw), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let (gw, prompt) = (&gw, &prompt);
                s.spawn(move || {
                    let mut c = gw.client();
                    for i in (k..N).step_by(CLIENTS as usize) {
                        let a = post_on(&mut c, "/v1/chat/completions", &[], &chat(&prompt(i)));
                        assert!(
                            a.resp.status == 200 && a.cache() == "miss",
                            "store {i}: {}",
                            a.describe()
                        );
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("a client thread failed");
        }
        // Let the indexer finish: every store is live, evicted or dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            most.fetch_max(entries(&gw), Ordering::Relaxed);
            let text = metrics(&gw);
            let accounted = entries(&gw) as f64
                + metric_sum(
                    &text,
                    "aigw_cache_evictions_total",
                    &[("reason", "capacity")],
                )
                + metric_sum(&text, "aigw_cache_store_dropped_total", &[]);
            if accounted >= N as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{accounted} of {N} stores accounted for 10 s after the last answer:\n{}\n{}",
                cache_lines(&text),
                cache_stats(&gw)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::Relaxed);
    });
    eprintln!("capacity: {N} stores in {:?}", t0.elapsed());

    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= MAX,
        "GET /cache showed {most} entries, max_entries is {MAX}"
    );
    let text = metrics(&gw);
    let live = entries(&gw);
    let evicted = metric_sum(
        &text,
        "aigw_cache_evictions_total",
        &[("reason", "capacity")],
    );
    let dropped = metric_sum(&text, "aigw_cache_store_dropped_total", &[]);
    let gauge = metric_sum(&text, "aigw_cache_entries", &[]);
    let all = cache_lines(&text);
    assert!(live > 0 && live <= MAX, "{live} entries at the end\n{all}");
    assert!(gauge <= MAX as f64, "aigw_cache_entries {gauge}\n{all}");
    assert!(
        dropped <= (N / 10) as f64,
        "{dropped} of {N} stores dropped at 4 clients: the indexer cannot keep up\n{all}"
    );
    assert!(
        evicted + dropped >= (N - MAX) as f64,
        "{evicted} capacity evictions, {dropped} dropped, {live} live of {N}\n{all}"
    );
    expect(
        ask(&gw, &[], &chat(&prompt(N - 1))),
        "hit-exact",
        "the newest answer",
    );
    expect(
        ask(&gw, &[], &chat(&prompt(0))),
        "miss",
        "the oldest answer (evicted)",
    );
}

/// Issue 10, "done when" 6: with the exact layer off (`mode = "semantic"`), the byte-identical
/// prompt looked up 1,000 times (the same vector each time, similarity 1) is a semantic hit every
/// time, and the process is alive after it.
fn a_thousand_duplicate_lookups_in_semantic_mode(d: Driver) {
    let mut gw = Setup::with(CacheCfg {
        mode: "semantic",
        ..CacheCfg::default()
    })
    .start(d);
    let a = expect(ask(&gw, &[], &chat(COFFEE)), "miss", "first");
    wait_entries(&gw, 1, "first");
    let mut c = gw.client();
    let t0 = Instant::now();
    for i in 0..1000 {
        let h = post_on(&mut c, "/v1/chat/completions", &[], &chat(COFFEE));
        assert!(
            h.resp.status == 200 && h.cache() == "hit-semantic",
            "lookup {i} of 1000: {}",
            h.describe()
        );
        if i % 97 == 0 {
            assert!(h.similarity() >= 0.9999, "{}", h.describe());
            assert_eq!(h.id(), a.id());
        }
    }
    eprintln!("1000 semantic hits in {:?}", t0.elapsed());
    assert!(gw.proc.alive(), "aigw died: {}", gw.proc.stderr());
    assert_eq!(health(gw.addr("admin")), Some(200));
    assert_eq!(llm_calls(&gw), 1, "a duplicate reached the backend");
    let text = metrics(&gw);
    assert_eq!(
        metric_sum(
            &text,
            "aigw_cache_lookups_total",
            &[("layer", "exact"), ("result", "hit")]
        ),
        0.0,
        "mode = \"semantic\" has no exact layer:\n{}",
        cache_lines(&text)
    );
}
