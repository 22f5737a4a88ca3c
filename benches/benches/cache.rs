//! The semantic cache's index (issue 10): flat scan vs frozen HNSW graph vs hnsw_rs's own search per
//! segment size (the crossover), lookup latency and recall@1 at 100k × 512, the exact layer, the
//! indexer's insert rate and memory per entry.
//!
//! Data: unit vectors in 1,000 Gaussian clusters (σ = 0.9/√d); queries are planted near-duplicates
//! (a stored vector plus noise, mean cosine ≈ 0.97 with it), as in the semantic-cache notes §2.6.
//! Criterion measures means/medians; p50/p99 and recall come from a timed loop printed to stderr.
//! `CACHE_BENCH_N` (default 100000) sets the big index's size.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigw_core::cache::index::{
    similarity, unit, Cache, IndexParams, Segment, StoreJob, Traverse, Unit,
};
use aigw_core::cache::Entry;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const DIMS: usize = 512;
const NOW: u64 = 1_700_000_000_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Approximately standard normal (sum of 4 uniforms, scaled).
    fn gauss(&mut self) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (s - 2.0) * 1.732
    }
}

/// `n` clustered units and `q` planted near-duplicate queries (with the row they were planted from).
fn data(n: usize, q: usize, seed: u64) -> (Vec<Unit>, Vec<(Unit, usize)>) {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..1_000)
        .map(|_| (0..DIMS).map(|_| rng.gauss()).collect())
        .collect();
    let sigma = 0.9 / (DIMS as f32).sqrt();
    let noisy = |base: &[f32], s: f32, rng: &mut Rng| {
        let raw = base.iter().map(|x| x + rng.gauss() * s).collect();
        unit(raw, DIMS).unwrap()
    };
    let vs: Vec<Unit> = (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let c = unit(c.clone(), DIMS).unwrap();
            noisy(c.as_slice(), sigma, &mut rng)
        })
        .collect();
    let qs = (0..q)
        .map(|_| {
            let i = (rng.next() % n as u64) as usize;
            (
                noisy(vs[i].as_slice(), 0.25 / (DIMS as f32).sqrt(), &mut rng),
                i,
            )
        })
        .collect();
    (vs, qs)
}

fn entry(i: usize) -> Arc<Entry> {
    Arc::new(Entry {
        answer: bytes::Bytes::from(vec![b'x'; 512]),
        text: i.to_string().into(),
        created_ms: NOW,
        expires_ms: NOW + 3_600_000,
        tokens: 100,
    })
}

fn brute(vs: &[Unit], q: &Unit) -> usize {
    let mut best = (f32::NEG_INFINITY, 0);
    for (i, v) in vs.iter().enumerate() {
        let s = similarity(q.as_slice(), v.as_slice());
        if s > best.0 {
            best = (s, i);
        }
    }
    best.1
}

fn pct(mut ns: Vec<u64>, p: f64) -> f64 {
    ns.sort_unstable();
    let i = ((ns.len() as f64 - 1.0) * p).round() as usize;
    ns[i] as f64 / 1_000.0
}

/// Flat vs graph vs hnsw_rs at each segment size; recall@1 of each vs brute force, to stderr.
fn bench_crossover(c: &mut Criterion) {
    if std::env::var("CACHE_BENCH_SEGMENTS").is_ok_and(|v| v == "0") {
        return;
    }
    let mut g = c.benchmark_group("segment");
    g.sample_size(20);
    let p = IndexParams::new(DIMS);
    for n in [256usize, 1_024, 4_096, 16_384, 32_768] {
        let (vs, qs) = data(n, 500, 7 + n as u64);
        let t = Instant::now();
        let seg = Segment::build(&p, &vs, true);
        let build = t.elapsed();
        let truth: Vec<usize> = qs.iter().map(|(q, _)| brute(&vs, q)).collect();
        let rf = recall(&qs, &truth, |q| seg.search_flat(q).map(|h| h.0));
        eprintln!("segment n={n}: recall@1 flat (sign-code prefilter) {rf:.3}");
        for ef in [16usize, 32] {
            let rg = recall(&qs, &truth, |q| {
                seg.search_graph(q, ef, Traverse::Exact).map(|h| h.0)
            });
            let rc = recall(&qs, &truth, |q| {
                seg.search_graph(q, ef, Traverse::Codes).map(|h| h.0)
            });
            let rh = recall(&qs, &truth, |q| seg.search_hnsw_rs(q, ef).map(|h| h.0));
            eprintln!("segment n={n} ef={ef}: recall@1 graph {rg:.3} graph on codes {rc:.3} hnsw_rs {rh:.3}");
        }
        eprintln!(
            "segment n={n}: build {:.0} inserts/s, {:.0} B/row",
            n as f64 / build.as_secs_f64(),
            seg.bytes_per_row()
        );
        let mut i = 0;
        let mut next = || {
            i = (i + 1) % qs.len();
            &qs[i].0
        };
        g.bench_with_input(BenchmarkId::new("flat", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_flat(next())))
        });
        g.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_exact(next())))
        });
        g.bench_with_input(BenchmarkId::new("graph_ef16", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_graph(next(), 16, Traverse::Exact)))
        });
        g.bench_with_input(BenchmarkId::new("graph_codes_ef16", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_graph(next(), 16, Traverse::Codes)))
        });
        g.bench_with_input(BenchmarkId::new("graph_codes_ef32", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_graph(next(), 32, Traverse::Codes)))
        });
        g.bench_with_input(BenchmarkId::new("graph_ef32", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_graph(next(), 32, Traverse::Exact)))
        });
        g.bench_with_input(BenchmarkId::new("hnsw_rs_ef32", n), &n, |b, _| {
            b.iter(|| black_box(seg.search_hnsw_rs(next(), 32)))
        });
    }
    g.finish();
}

fn recall(qs: &[(Unit, usize)], truth: &[usize], f: impl Fn(&Unit) -> Option<usize>) -> f64 {
    let ok = qs
        .iter()
        .zip(truth)
        .filter(|((q, _), t)| f(q) == Some(**t))
        .count();
    ok as f64 / qs.len() as f64
}

/// A cache of `n` entries in `parts` partitions, built through the indexer (`apply_pending`).
fn filled(n: usize, parts: usize, p: IndexParams, vs: &[Unit]) -> (Arc<Cache>, Duration) {
    let cache = Cache::new(IndexParams {
        queue_capacity: n,
        max_entries: n,
        ..p
    });
    let t = Instant::now();
    for (i, v) in vs.iter().enumerate().take(n) {
        let job = StoreJob {
            partition: (i % parts) as u128,
            exact: Some(i as u128),
            vector: Some(v.clone()),
            entry: entry(i),
        };
        assert!(cache.submit(0, job));
    }
    cache.apply_pending(NOW);
    (cache, t.elapsed())
}

/// Lookups in a big cache: one partition (G generations with graphs) and spread over partitions.
fn bench_lookup(c: &mut Criterion) {
    let n: usize = std::env::var("CACHE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let (vs, qs) = data(n, 2_000, 11);
    let mut g = c.benchmark_group("lookup");
    g.sample_size(20);
    // (label, partitions, generations, hnsw_min_entries, ef_search)
    let configs = [
        ("one_partition_g4", 1usize, 4usize, 8_192usize, 32usize),
        ("one_partition_flat", 1, 4, usize::MAX, 32),
        ("100_partitions", 100, 4, 8_192, 32),
        ("1000_partitions", 1_000, 4, 8_192, 32),
    ];
    for (label, parts, gens, hnsw_min_entries, ef_search) in configs {
        let p = IndexParams {
            generations: gens,
            hnsw_min_entries,
            ef_search,
            ..IndexParams::new(DIMS)
        };
        let ef = p.ef_search;
        let (cache, took) = filled(n, parts, p, &vs);
        let s = cache.stats();
        eprintln!(
            "{label}: n={n} built in {:.1} s = {:.0} stores/s (graphs included); \
             {} generations, {:.0} B/entry (memory_bytes/entries, 512-B answers)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            s.generations,
            s.memory_bytes as f64 / s.entries as f64,
        );
        // Graph beams to report: the default, plus 16 and 48 where there are graphs.
        let efs: &[usize] = if parts == 1 && hnsw_min_entries < n {
            &[16, 32, 48]
        } else {
            &[ef]
        };
        for &ef in efs {
            cache.set_ef_search(ef);
            let mut ns = Vec::with_capacity(qs.len());
            let mut ok = 0;
            for (q, planted) in &qs {
                let part = (*planted % parts) as u128;
                let t = Instant::now();
                let hit = cache.lookup_semantic(part, q, 0.0, NOW, &mut |_| true);
                ns.push(t.elapsed().as_nanos() as u64);
                ok += usize::from(hit.is_some_and(|h| h.entry.text.parse() == Ok(*planted)));
            }
            // Brute force over the query's partition, for the first 300 queries.
            let sub = &qs[..qs.len().min(300)];
            let agree = sub
                .iter()
                .filter(|(q, planted)| {
                    let part = *planted % parts;
                    let mut best = (f32::NEG_INFINITY, 0);
                    for (i, v) in vs.iter().enumerate().take(n).skip(part).step_by(parts) {
                        let s = similarity(q.as_slice(), v.as_slice());
                        if s > best.0 {
                            best = (s, i);
                        }
                    }
                    let hit = cache.lookup_semantic(part as u128, q, 0.0, NOW, &mut |_| true);
                    hit.is_some_and(|h| h.entry.text.parse() == Ok(best.1))
                })
                .count();
            eprintln!(
                "{label}: ef={ef} p50 {:.1} µs p99 {:.1} µs, recall@1 planted {:.3}, vs brute force {:.3}",
                pct(ns.clone(), 0.5),
                pct(ns, 0.99),
                ok as f64 / qs.len() as f64,
                agree as f64 / sub.len() as f64
            );
        }
        cache.set_ef_search(ef);
        let mut i = 0;
        g.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                let (q, planted) = &qs[i];
                let part = (*planted % parts) as u128;
                black_box(cache.lookup_semantic(part, q, 0.0, NOW, &mut |_| true))
            })
        });
        if label == "one_partition_flat" {
            let mut k = 0u128;
            g.bench_function("exact", |b| {
                b.iter(|| {
                    k = (k + 7_919) % n as u128;
                    black_box(cache.lookup_exact(k, NOW))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_crossover, bench_lookup);
criterion_main!(benches);
