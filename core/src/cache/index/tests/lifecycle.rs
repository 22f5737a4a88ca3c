//! Capacity, TTL, flush, queues, the indexer thread and concurrent readers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::*;
use super::{entry, job, params, Rng, T0};
use crate::cache::Entry;

const HOUR: u64 = 3_600_000;

/// The wall clock: the indexer thread sweeps by it, so stores it sees must not be expired by it.
fn real_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn yes(_: &Entry) -> bool {
    true
}

/// Polls `f` until it holds or 30 s pass (generous: the machine is shared).
fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

fn small(dims: usize, max_entries: usize) -> IndexParams {
    IndexParams {
        max_entries,
        generations: 4,
        hnsw_min_entries: 128,
        ..params(dims)
    }
}

#[test]
fn capacity_holds_at_every_observation_one_and_many_partitions() {
    for partitions in [1u128, 7, 3_000] {
        let cache = Cache::new(small(16, 1_000));
        let mut rng = Rng(17);
        for i in 0..3_000u128 {
            let v = rng.unit(16);
            let j = job(
                i % partitions,
                Some(i),
                Some(v),
                entry(&i.to_string(), T0, HOUR),
            );
            assert!(cache.submit(0, j));
            if i % 97 == 0 {
                cache.apply_pending(T0);
                assert!(cache.stats().entries <= 1_000);
                assert!(cache.visible_entries() <= 1_000);
            }
        }
        cache.apply_pending(T0);
        let s = cache.stats();
        assert!(
            s.entries <= 1_000 && cache.visible_entries() <= 1_000,
            "{s:?}"
        );
        assert!(s.evictions.capacity >= 2_000, "{s:?}");
        assert_eq!(s.entries + s.evictions.capacity, 3_000);
        // The newest store survives and is found in both layers; an evicted one is in neither.
        assert!(cache.lookup_exact(2_999, T0).is_some());
        assert!(cache.lookup_exact(0, T0).is_none());
        assert!(s.memory_bytes > 0);
    }
}

#[test]
fn capacity_holds_while_the_indexer_thread_runs() {
    let now = real_now();
    let cache = Cache::new(small(16, 1_000));
    let handle = cache.spawn_indexer().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cache, done) = (Arc::clone(&cache), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen = 0u64;
            while !done.load(Ordering::Acquire) {
                // The counter, not a walk over the partitions: a walk reads each partition's
                // view at a different moment, so it can count one partition before an eviction
                // and another after the store that needed it (1,001 seen, never held). The walk
                // is checked after every step where nothing moves meanwhile, in
                // `capacity_holds_at_every_observation_one_and_many_partitions`.
                assert!(cache.stats().entries <= 1_000);
                seen += 1;
            }
            seen
        })
    };
    let mut rng = Rng(23);
    for i in 0..3_000u128 {
        let v = rng.unit(16);
        while !cache.submit(
            0,
            job(i % 3, Some(i), Some(v.clone()), entry("x", now, HOUR)),
        ) {
            std::thread::yield_now();
        }
    }
    assert!(wait_until(|| cache.stats().stored
        + cache.stats().store_dropped
        >= 3_000));
    done.store(true, Ordering::Release);
    assert!(watcher.join().unwrap() > 0);
    let s = cache.stats();
    assert!(s.entries <= 1_000 && s.evictions.capacity >= 2_000, "{s:?}");
    cache.stop();
    handle.join().unwrap();
}

#[test]
fn ttl_hides_on_read_and_reclaims_generations() {
    let cache = Cache::new(IndexParams {
        ttl_ms: 1_000,
        ..small(8, 100)
    });
    let mut rng = Rng(31);
    let v = rng.unit(8);
    cache.submit(0, job(1, Some(9), Some(v.clone()), entry("a", T0, 1_000)));
    cache.apply_pending(T0);
    assert!(cache.lookup_exact(9, T0 + 1_000).is_some());
    assert!(cache
        .lookup_semantic(1, &v, 0.9, T0 + 999, &mut yes)
        .is_some());
    // Past expiry: invisible before any reclaim.
    assert!(cache.lookup_exact(9, T0 + 1_001).is_none());
    assert!(cache
        .lookup_semantic(1, &v, 0.9, T0 + 1_001, &mut yes)
        .is_none());
    assert_eq!(cache.stats().entries, 1);
    cache.apply_pending(T0 + 1_001);
    let s = cache.stats();
    assert_eq!((s.entries, s.partitions, s.generations), (0, 0, 0), "{s:?}");
    assert_eq!(s.evictions.ttl, 1);
    // Age rotation: stores 300 ms apart with ttl 1 s and 4 generations land in separate generations.
    for i in 0..4u64 {
        let now = T0 + 10_000 + i * 300;
        cache.submit(0, job(2, None, Some(rng.unit(8)), entry("b", now, 1_000)));
        cache.apply_pending(now);
    }
    assert_eq!(cache.stats().generations, 4);
    cache.apply_pending(T0 + 10_000 + 1_650);
    assert_eq!(cache.stats().generations, 1, "the three oldest expired");
}

/// With the indexer thread running, a flush is reported applied once the stats show it (the
/// admin's `DELETE /cache` answers after that, so `GET /cache` right after it agrees).
#[test]
fn a_flush_is_reported_applied_once_the_stats_show_it() {
    let now = real_now();
    let cache = Cache::new(small(8, 1_000));
    let handle = cache.spawn_indexer().unwrap();
    let mut rng = Rng(41);
    for i in 0..50u128 {
        assert!(cache.submit(
            0,
            job(i % 5, Some(i), Some(rng.unit(8)), entry("x", now, HOUR))
        ));
    }
    assert!(wait_until(|| cache.stats().entries == 50));
    let n = cache.flush();
    assert!(wait_until(|| cache.flush_applied(n)));
    let s = cache.stats();
    assert_eq!(
        (s.entries, s.partitions, s.evictions.flush),
        (0, 0, 50),
        "{s:?}"
    );
    cache.stop();
    handle.join().unwrap();
}

#[test]
fn flush_is_immediate_counts_and_drops_queued_stores() {
    let cache = Cache::new(small(8, 1_000));
    let mut rng = Rng(37);
    let v = rng.unit(8);
    for i in 0..10u128 {
        cache.submit(0, job(1, Some(i), Some(rng.unit(8)), entry("x", T0, HOUR)));
    }
    cache.submit(0, job(1, Some(100), Some(v.clone()), entry("v", T0, HOUR)));
    cache.apply_pending(T0);
    assert!(cache.lookup_exact(100, T0).is_some());
    cache.submit(0, job(1, Some(200), None, entry("queued", T0, HOUR)));
    cache.flush();
    // Invisible before the indexer has run.
    assert!(cache.lookup_exact(100, T0).is_none());
    assert!(cache.lookup_semantic(1, &v, 0.5, T0, &mut yes).is_none());
    assert_eq!(cache.apply_pending(T0), Some(0));
    let s = cache.stats();
    assert_eq!(s.evictions.flush, 12, "11 stored + 1 queued, {s:?}");
    assert_eq!((s.entries, s.partitions, s.generations), (0, 0, 0));
    assert!(cache.lookup_exact(200, T0).is_none());
    // Stores after the flush are served.
    cache.submit(0, job(1, Some(100), Some(v.clone()), entry("v2", T0, HOUR)));
    cache.apply_pending(T0);
    assert_eq!(&*cache.lookup_exact(100, T0).unwrap().text, "v2");
    let hit = cache.lookup_semantic(1, &v, 0.5, T0, &mut yes).unwrap();
    assert_eq!(&*hit.entry.text, "v2");
}

#[test]
fn full_queue_drops_and_counts() {
    let cache = Cache::new(IndexParams {
        queue_capacity: 4,
        cores: 2,
        ..small(8, 100)
    });
    let ok: usize = (0..10u128)
        .map(|i| usize::from(cache.submit(1, job(1, Some(i), None, entry("x", T0, HOUR)))))
        .sum();
    assert_eq!(ok, 4);
    assert_eq!(cache.stats().store_dropped, 6);
    // Core 0's queue is separate; a core index past the count wraps.
    assert!(cache.submit(0, job(1, Some(50), None, entry("y", T0, HOUR))));
    assert!(!cache.submit(3, job(1, Some(51), None, entry("z", T0, HOUR))));
    assert_eq!(cache.apply_pending(T0), Some(5));
}

#[test]
fn readers_and_the_indexer_thread_concurrently() {
    let now = real_now();
    let dims = 32;
    let cache = Cache::new(IndexParams {
        hnsw_min_entries: 256,
        ..small(dims, 2_000)
    });
    let handle = cache.spawn_indexer().unwrap();
    assert!(cache.spawn_indexer().is_err(), "only one indexer");
    assert_eq!(cache.apply_pending(now), None, "the thread owns the state");
    let mut rng = Rng(41);
    let vs: Arc<Vec<Unit>> = Arc::new((0..3_000).map(|_| rng.unit(dims)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (cache, vs, done) = (Arc::clone(&cache), Arc::clone(&vs), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut rng = Rng(1_000 + r);
                let (mut hits, mut n) = (0usize, 0usize);
                while !done.load(Ordering::Acquire) || n < 200 {
                    let i = n * 13 % vs.len();
                    let q = rng.near(&vs[i], 0.1);
                    if let Some(h) = cache.lookup_semantic(1, &q, 0.8, now, &mut |_| true) {
                        assert!((0.8..=1.0).contains(&h.similarity), "{}", h.similarity);
                        let j: usize = h.entry.text.parse().unwrap();
                        let s = similarity(q.as_slice(), vs[j].as_slice());
                        assert!((s - h.similarity).abs() < 1e-4);
                        hits += 1;
                    }
                    n += 1;
                }
                hits
            })
        })
        .collect();
    for (i, v) in vs.iter().enumerate() {
        let j = job(
            1,
            Some(i as u128),
            Some(v.clone()),
            entry(&i.to_string(), now, HOUR),
        );
        while !cache.submit(0, j_clone(&j)) {
            std::thread::yield_now();
        }
    }
    assert!(wait_until(|| {
        let s = cache.stats();
        s.stored == 3_000 && s.build_backlog == 0
    }));
    done.store(true, Ordering::Release);
    let hits: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(hits > 0);
    let hit = cache
        .lookup_semantic(1, &vs[2_999], 0.99, now, &mut yes)
        .unwrap();
    assert_eq!(&*hit.entry.text, "2999");
    cache.stop();
    handle.join().unwrap();
}

fn j_clone(j: &StoreJob) -> StoreJob {
    job(j.partition, j.exact, j.vector.clone(), Arc::clone(&j.entry))
}

#[test]
fn indexer_ends_when_the_last_cache_handle_goes() {
    let now = real_now();
    let cache = Cache::new(small(8, 100));
    let handle = cache.spawn_indexer().unwrap();
    let mut rng = Rng(43);
    cache.submit(0, job(1, Some(1), Some(rng.unit(8)), entry("x", now, HOUR)));
    assert!(wait_until(|| cache.stats().stored == 1));
    drop(cache);
    assert!(wait_until(|| handle.is_finished()));
    handle.join().unwrap();
}
