//! Lookups and hnsw_rs's hazards, driven synchronously through `apply_pending`.

mod lifecycle;

use std::sync::Arc;

use super::*;
use crate::cache::Entry;

/// A xorshift generator: tests are reproducible and need no crate.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    pub(super) fn unit(&mut self, dims: usize) -> Unit {
        loop {
            let raw = (0..dims).map(|_| self.f()).collect();
            if let Ok(u) = unit(raw, dims) {
                return u;
            }
        }
    }

    /// `u` plus noise of relative size `eps` (a paraphrase).
    pub(super) fn near(&mut self, u: &Unit, eps: f32) -> Unit {
        let scale = eps * 2.0 / (u.dims() as f32).sqrt();
        let raw = u.as_slice().iter().map(|x| x + self.f() * scale).collect();
        unit(raw, u.dims()).unwrap()
    }
}

pub(super) fn entry(text: &str, now: u64, ttl: u64) -> Arc<Entry> {
    Arc::new(Entry {
        answer: bytes::Bytes::from(format!("{{\"a\":\"{text}\"}}")),
        text: text.into(),
        created_ms: now,
        expires_ms: now + ttl,
        tokens: 7,
    })
}

pub(super) fn params(dims: usize) -> IndexParams {
    IndexParams {
        max_entries: 10_000,
        queue_capacity: 8_192,
        hnsw_min_entries: 64,
        ..IndexParams::new(dims)
    }
}

pub(super) fn job(
    partition: u128,
    exact: Option<u128>,
    v: Option<Unit>,
    e: Arc<Entry>,
) -> StoreJob {
    StoreJob {
        partition,
        exact,
        vector: v,
        entry: e,
    }
}

pub(super) const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn yes(_: &Entry) -> bool {
    true
}

#[test]
fn exact_self_match_is_one_not_above_and_duplicates_never_crash() {
    let dims = 48;
    let cache = Cache::new(params(dims));
    let mut rng = Rng(7);
    let dup = rng.unit(dims);
    // 300 exact duplicates among 300 others: past hnsw_min_entries, so hnsw_rs builds a graph with
    // many zero distances (stock DistDot asserts and aborts on these).
    for i in 0..600u32 {
        let v = if i % 2 == 0 {
            dup.clone()
        } else {
            rng.unit(dims)
        };
        assert!(cache.submit(0, job(1, None, Some(v), entry(&i.to_string(), T0, HOUR))));
    }
    assert_eq!(cache.apply_pending(T0), Some(600));
    assert_eq!(cache.stats().build_backlog, 0);
    // The beam width can change while serving; 0 is clamped to 1 and still finds the duplicate.
    cache.set_ef_search(0);
    assert!(cache.lookup_semantic(1, &dup, 0.99, T0, &mut yes).is_some());
    cache.set_ef_search(usize::MAX);
    assert!(cache.lookup_semantic(1, &dup, 0.99, T0, &mut yes).is_some());
    cache.set_ef_search(32);
    for _ in 0..1_000 {
        let hit = cache.lookup_semantic(1, &dup, 0.99, T0, &mut yes).unwrap();
        assert!(
            hit.similarity <= 1.0 && hit.similarity > 0.9999,
            "{}",
            hit.similarity
        );
        assert_eq!(hit.entry.text.parse::<u32>().unwrap() % 2, 0);
    }
}

#[test]
fn wrong_dims_refused_at_submit_and_lookup() {
    let cache = Cache::new(params(16));
    let mut rng = Rng(3);
    let other = rng.unit(32);
    assert!(!cache.submit(0, job(1, None, Some(other.clone()), entry("x", T0, HOUR))));
    assert!(!cache.submit(0, job(1, None, None, entry("nothing", T0, HOUR))));
    assert_eq!(cache.stats().refused, 2);
    assert_eq!(cache.apply_pending(T0), Some(0));
    assert!(cache
        .lookup_semantic(1, &other, 0.0, T0, &mut yes)
        .is_none());
    // A reload with another dimension is a new cache: the old vectors cannot reach it.
    let v16 = rng.unit(16);
    assert!(cache.submit(0, job(1, None, Some(v16.clone()), entry("y", T0, HOUR))));
    cache.apply_pending(T0);
    let reloaded = Cache::new(params(32));
    assert!(reloaded
        .lookup_semantic(1, &v16, 0.0, T0, &mut yes)
        .is_none());
    assert_eq!(reloaded.stats().entries, 0);
}

#[test]
fn threshold_accept_and_nan_threshold() {
    let dims = 32;
    let cache = Cache::new(params(dims));
    let mut rng = Rng(11);
    let a = rng.unit(dims);
    let a2 = rng.near(&a, 0.05);
    let b = rng.unit(dims);
    cache.submit(0, job(5, None, Some(a.clone()), entry("a", T0, HOUR)));
    cache.submit(0, job(5, None, Some(a2.clone()), entry("a2", T0, HOUR)));
    cache.apply_pending(T0);
    let hit = cache.lookup_semantic(5, &a, 0.9, T0, &mut yes).unwrap();
    assert_eq!(&*hit.entry.text, "a");
    // The guard refuses the best candidate: the next one is served.
    let mut not_a = |e: &Entry| &*e.text != "a";
    let hit = cache.lookup_semantic(5, &a, 0.9, T0, &mut not_a).unwrap();
    assert_eq!(&*hit.entry.text, "a2");
    assert!(cache.lookup_semantic(5, &b, 0.9, T0, &mut yes).is_none());
    assert!(cache
        .lookup_semantic(5, &a, f32::NAN, T0, &mut yes)
        .is_none());
    assert!(
        cache.lookup_semantic(6, &a, 0.0, T0, &mut yes).is_none(),
        "other partition"
    );
    assert!(cache.lookup_semantic(5, &a, 1.01, T0, &mut yes).is_none());
}

#[test]
fn exact_layer_newest_wins_and_expiry() {
    let cache = Cache::new(params(8));
    cache.submit(0, job(1, Some(42), None, entry("old", T0, HOUR)));
    cache.apply_pending(T0);
    assert_eq!(&*cache.lookup_exact(42, T0).unwrap().text, "old");
    cache.submit(0, job(1, Some(42), None, entry("new", T0, 10)));
    cache.apply_pending(T0);
    assert_eq!(&*cache.lookup_exact(42, T0 + 10).unwrap().text, "new");
    assert!(cache.lookup_exact(42, T0 + 11).is_none(), "expired");
    assert!(cache.lookup_exact(43, T0).is_none());
}

#[test]
fn recall_on_planted_near_duplicates_matches_brute_force() {
    let dims = 64;
    let p = IndexParams {
        max_entries: 4_000,
        generations: 1,
        hnsw_min_entries: 512,
        queue_capacity: 8_192,
        ..IndexParams::new(dims)
    };
    let cache = Cache::new(p);
    let mut rng = Rng(99);
    let stored: Vec<Unit> = (0..3_000).map(|_| rng.unit(dims)).collect();
    for (i, v) in stored.iter().enumerate() {
        cache.submit(
            0,
            job(1, None, Some(v.clone()), entry(&i.to_string(), T0, HOUR)),
        );
    }
    cache.apply_pending(T0);
    assert_eq!(cache.stats().build_backlog, 0);
    let (mut agree, total) = (0, 300);
    for i in 0..total {
        let q = rng.near(&stored[i * 7], 0.3);
        let truth = stored
            .iter()
            .enumerate()
            .map(|(j, v)| (similarity(q.as_slice(), v.as_slice()), j))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, j)| j);
        let got = cache.lookup_semantic(1, &q, -1.0, T0, &mut yes);
        let got = got.and_then(|h| h.entry.text.parse::<usize>().ok());
        agree += usize::from(got == truth);
    }
    let recall = agree as f64 / total as f64;
    assert!(recall >= 0.95, "recall@1 {recall}");
}

#[test]
fn graph_and_hnsw_rs_search_agree_with_flat_on_a_segment() {
    let dims = 32;
    let mut rng = Rng(5);
    let vs: Vec<Unit> = (0..1_000).map(|_| rng.unit(dims)).collect();
    let seg = Segment::build(&IndexParams::new(dims), &vs, true);
    assert_eq!(seg.len(), 1_000);
    let mut same = (0, 0, 0, 0);
    for i in 0..100 {
        let q = rng.near(&vs[i * 10], 0.2);
        let exact = seg.search_exact(&q).map(|h| h.0);
        same.0 += usize::from(seg.search_graph(&q, 32, Traverse::Exact).map(|h| h.0) == exact);
        same.3 += usize::from(seg.search_graph(&q, 32, Traverse::Codes) == seg.search_exact(&q));
        same.1 += usize::from(seg.search_hnsw_rs(&q, 32).map(|h| h.0) == exact);
        same.2 += usize::from(seg.search_flat(&q) == seg.search_exact(&q));
        let s = seg
            .search_graph(&q, 32, Traverse::Codes)
            .map_or(0.0, |h| h.1);
        assert!((-1.0..=1.0).contains(&s));
    }
    assert!(
        same.0 >= 95 && same.1 >= 95 && same.2 >= 95 && same.3 >= 95,
        "{same:?}"
    );
    assert!(seg.bytes_per_row() > (dims * 4) as f64);
    assert!(Segment::build(&IndexParams::new(dims), &[], true)
        .search_graph(&vs[0], 8, Traverse::Codes)
        .is_none());
}

#[test]
fn sign_code_prefilter_keeps_recall_on_a_flat_generation() {
    // No graph: every lookup is the prefiltered scan. Paraphrase-like noise (cosine ~0.9 with the
    // planted row) on uniform random vectors, where the sign codes carry the least structure.
    let dims = 128;
    let cache = Cache::new(IndexParams {
        hnsw_min_entries: usize::MAX,
        ..params(dims)
    });
    let mut rng = Rng(1234);
    let stored: Vec<Unit> = (0..4_000).map(|_| rng.unit(dims)).collect();
    for (i, v) in stored.iter().enumerate() {
        cache.submit(
            0,
            job(1, None, Some(v.clone()), entry(&i.to_string(), T0, HOUR)),
        );
    }
    cache.apply_pending(T0);
    let mut agree = 0;
    for i in 0..200 {
        let q = rng.near(&stored[i * 13], 1.0);
        let exact = stored
            .iter()
            .map(|v| similarity(q.as_slice(), v.as_slice()))
            .fold(f32::NEG_INFINITY, f32::max);
        let hit = cache.lookup_semantic(1, &q, -1.0, T0, &mut yes).unwrap();
        assert!(
            (hit.similarity
                - similarity(
                    q.as_slice(),
                    stored[hit.entry.text.parse::<usize>().unwrap()].as_slice()
                ))
            .abs()
                < 1e-6,
            "exact similarity reported"
        );
        agree += usize::from(hit.similarity >= exact);
    }
    assert!(agree >= 190, "recall@1 {agree}/200");
}
