//! The lock-free `TokenBucket` (reserve + settle) against a `Mutex<HashMap>` token bucket, 1 and 2 threads.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aigw_core::limit::TokenBucket;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Tokens per minute: high enough that every reservation in the run is admitted.
const TPM: u64 = 1_000_000_000;
/// The counter key both limiters are looked up by.
const KEY: &str = "tenant-7f3a/gpt-4o-mini";
/// Simulated clock step per op: 1 µs refills ~16.7 tokens, above the 4 spent per op per thread, and
/// a thread can lag the other by 60 s / 1 µs = 6e7 ops before its clock reading looks stale.
const STEP_NS: u64 = 1_000;
/// Tokens reserved per request.
const RESERVE: u64 = 5;
/// Tokens the request really used: every settle refunds one.
const ACTUAL: u64 = 4;

/// The baseline: a classic f64 token bucket per key behind one mutex.
struct MutexLimiter {
    capacity: f64,
    tokens_per_ns: f64,
    map: Mutex<HashMap<String, (f64, u64)>>,
}

impl MutexLimiter {
    fn new(tpm: u64) -> Self {
        let capacity = tpm as f64;
        let map = HashMap::from([(KEY.to_owned(), (capacity, 0))]);
        Self {
            capacity,
            tokens_per_ns: capacity / 60e9,
            map: Mutex::new(map),
        }
    }

    fn try_reserve(&self, key: &str, n: u64, now_ns: u64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((tokens, last)) = map.get_mut(key) else {
            return false;
        };
        let refill = now_ns.saturating_sub(*last) as f64 * self.tokens_per_ns;
        *tokens = (*tokens + refill).min(self.capacity);
        *last = (*last).max(now_ns);
        if *tokens >= n as f64 {
            *tokens -= n as f64;
            true
        } else {
            false
        }
    }

    fn settle(&self, key: &str, reserved: u64, actual: u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tokens, _)) = map.get_mut(key) {
            *tokens = (*tokens + reserved as f64 - actual as f64).min(self.capacity);
        }
    }
}

/// One request through the lock-free bucket; returns whether it was admitted.
fn atomic_op(bucket: &TokenBucket, now_ns: u64) -> bool {
    match bucket.try_reserve(black_box(RESERVE), now_ns) {
        Ok(r) => {
            bucket.settle(r, black_box(ACTUAL), now_ns);
            true
        }
        Err(_) => false,
    }
}

/// One request through the lock-free bucket found in a (read-only) map by key, as a gateway would.
fn atomic_map_op(map: &HashMap<String, TokenBucket>, now_ns: u64) -> bool {
    map.get(black_box(KEY))
        .is_some_and(|bucket| atomic_op(bucket, now_ns))
}

/// One request through the mutex baseline.
fn mutex_op(limiter: &MutexLimiter, now_ns: u64) -> bool {
    let key = black_box(KEY);
    let admitted = limiter.try_reserve(key, black_box(RESERVE), now_ns);
    if admitted {
        limiter.settle(key, RESERVE, black_box(ACTUAL));
    }
    admitted
}

/// Runs `iters` ops on each of `threads` threads, started together; the time of the slowest thread.
/// Every thread walks its own clock from the same start, as per-core clocks would.
fn run_threads(
    threads: usize,
    iters: u64,
    clock: &mut u64,
    op: &(dyn Fn(u64) -> bool + Sync),
) -> Duration {
    let start_ns = *clock;
    *clock += iters * STEP_NS;
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    let mut admitted = 0u64;
                    for i in 0..iters {
                        admitted += u64::from(op(start_ns + i * STEP_NS));
                    }
                    let elapsed = t.elapsed();
                    assert_eq!(admitted, iters, "the bench must measure admitted requests");
                    elapsed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .max()
            .unwrap_or_default()
    })
}

fn bench_limiter(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut g = c.benchmark_group(format!("limiter_{threads}t"));
        // Elements = ops across all threads, so criterion's throughput is the aggregate rate.
        g.throughput(Throughput::Elements(threads as u64));

        let bucket = TokenBucket::new(TPM);
        let mut clock = 1_000_000_000;
        g.bench_function("token_bucket", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut clock, &|now| atomic_op(&bucket, now))
            });
        });

        let map = HashMap::from([(KEY.to_owned(), TokenBucket::new(TPM))]);
        let mut clock = 1_000_000_000;
        g.bench_function("token_bucket_in_map", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut clock, &|now| atomic_map_op(&map, now))
            });
        });

        let limiter = MutexLimiter::new(TPM);
        let mut clock = 1_000_000_000;
        g.bench_function("mutex_hashmap", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &mut clock, &|now| mutex_op(&limiter, now))
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench_limiter);
criterion_main!(benches);
