//! The pool pick: priority group, smooth weighted round-robin (or random) and the shared
//! [`BackendState`] reads (bench deadline, breaker) plus the acquire, per request.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]

use std::hint::black_box;

use aigw_core::balance::{pick, BackendState, Candidate, Picked, WrrState};
use aigw_core::config::Strategy;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Members in two priority groups: the first `n - n / 3` in group 1 with weights 1..=5, the rest
/// in group 2.
fn members(states: &[BackendState]) -> Vec<Candidate<'_>> {
    let best = states.len() - states.len() / 3;
    states
        .iter()
        .enumerate()
        .map(|(i, state)| Candidate {
            priority: if i < best { 1 } else { 2 },
            weight: (i % 5) as u32 + 1,
            state,
        })
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let now = 1_000_000u64;
    let mut g = c.benchmark_group("pick");
    for n in [3usize, 30] {
        let states: Vec<BackendState> = (0..n).map(|_| BackendState::default()).collect();
        let m = members(&states);
        for (label, strategy) in [
            ("weighted", Strategy::Weighted),
            ("random", Strategy::Random),
        ] {
            let mut wrr = WrrState::default();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            g.bench_with_input(BenchmarkId::new(label, n), &m, |b, m| {
                b.iter(|| {
                    let r = pick(
                        black_box(m),
                        strategy,
                        &mut wrr,
                        |_| false,
                        black_box(now),
                        || {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            (x >> 11) as f64 / (1u64 << 53) as f64
                        },
                    );
                    debug_assert!(matches!(r, Picked::Member(_)));
                    black_box(r)
                });
            });
        }
        // The whole best group benched (a 429 storm): every pick scans past it to group 2.
        let benched: Vec<BackendState> = (0..n).map(|_| BackendState::default()).collect();
        let m = members(&benched);
        for c in m.iter().filter(|c| c.priority == 1) {
            c.state.bench(now, 60_000);
        }
        let mut wrr = WrrState::default();
        g.bench_with_input(
            BenchmarkId::new("weighted_group1_benched", n),
            &m,
            |b, m| {
                b.iter(|| {
                    black_box(pick(
                        black_box(m),
                        Strategy::Weighted,
                        &mut wrr,
                        |_| false,
                        black_box(now),
                        || 0.5,
                    ))
                });
            },
        );
        // A retry: the member just tried is excluded.
        let mut wrr = WrrState::default();
        let m = members(&states);
        g.bench_with_input(
            BenchmarkId::new("weighted_retry_excluding_one", n),
            &m,
            |b, m| {
                b.iter(|| {
                    black_box(pick(
                        black_box(m),
                        Strategy::Weighted,
                        &mut wrr,
                        |i| i == 0,
                        black_box(now),
                        || 0.5,
                    ))
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
