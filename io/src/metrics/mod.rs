//! Metrics without locks on the request path: each worker owns its counters and histograms
//! (single writer, `Relaxed` load+store, no read-modify-write), announces new label sets through
//! lock-free queues, and the admin thread sums every worker's values when `/metrics` is scraped.
//!
//! Counters are here; the timing histograms (by `backend` and `model`) in `hist.rs`; label values,
//! their cap and which ones a request is counted under in `labels.rs`.

mod hist;
mod labels;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;

use labels::escape;

/// A labelled counter family: name, help text and label names.
#[derive(Debug)]
pub struct Family {
    /// Metric name (prefixed `aigw_`).
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Label names, in the order values are given.
    pub labels: &'static [&'static str],
}

/// Requests answered, by model, backend and status.
pub const REQUESTS: Family = Family {
    name: "aigw_requests_total",
    help: "Requests answered, by model, backend and status.",
    labels: &["model", "backend", "status"],
};

/// Retries: attempts after the first, by pool and the backend retried on.
pub const RETRIES: Family = Family {
    name: "aigw_retries_total",
    help: "Attempts after the first one, by pool and the backend they went to.",
    labels: &["pool", "backend"],
};

/// Tokens, by type and the configured dimensions (label names vary with `[metrics] dimensions`).
pub const TOKENS: Family = Family {
    name: "aigw_tokens_total",
    help: "Tokens counted from upstream usage (or the streamed text), by type and the configured dimensions.",
    labels: &[],
};

/// Requests refused by a token limit or quota.
pub const REJECTIONS: Family = Family {
    name: "aigw_ratelimit_rejections_total",
    help: "Requests refused before reaching a backend by a token rate limit or quota.",
    labels: &["consumer", "reason"],
};

/// Requests per consumer.
pub const CONSUMER_REQUESTS: Family = Family {
    name: "aigw_consumer_requests_total",
    help: "Requests answered, by consumer and status.",
    labels: &["consumer", "status"],
};

/// Requests of `[routes.NAME]` (non-LLM APIs), also counted in [`REQUESTS`] under an empty model.
pub const ROUTE_REQUESTS: Family = Family {
    name: "aigw_route_requests_total",
    help: "Requests to the routes (non-LLM APIs behind the gateway), by route and status.",
    labels: &["route", "status"],
};

/// Semantic cache lookups, by layer (`exact`, `semantic`, `none` for a bypass) and result.
pub const CACHE_LOOKUPS: Family = Family {
    name: "aigw_cache_lookups_total",
    help: "Semantic cache lookups, by layer (exact, semantic; none for a bypass) and result (hit, miss, bypass, error).",
    labels: &["layer", "result"],
};

/// Tokens not spent because a cache hit answered.
pub const CACHE_TOKENS_SAVED: Family = Family {
    name: "aigw_cache_tokens_saved_total",
    help: "Tokens of the stored answers served by cache hits (what the backends did not have to produce again).",
    labels: &[],
};

/// Embedder failures (the lookup then failed open).
pub const CACHE_EMBED_ERRORS: Family = Family {
    name: "aigw_cache_embedding_errors_total",
    help: "Semantic cache lookups whose embeddings call failed or timed out (the request went on to the backends).",
    labels: &[],
};

/// All counter families, indexed by position (the `family` argument of [`LocalMetrics::add`]).
pub const FAMILIES: &[&Family] = &[
    &REQUESTS,
    &RETRIES,
    &TOKENS,
    &REJECTIONS,
    &CONSUMER_REQUESTS,
    &ROUTE_REQUESTS,
    &CACHE_LOOKUPS,
    &CACHE_TOKENS_SAVED,
    &CACHE_EMBED_ERRORS,
];
/// Index of [`TOKENS`] in [`FAMILIES`].
pub const F_TOKENS: usize = 2;
/// Index of [`REJECTIONS`] in [`FAMILIES`].
pub const F_REJECTIONS: usize = 3;
/// Index of [`CONSUMER_REQUESTS`] in [`FAMILIES`].
pub const F_CONSUMER_REQUESTS: usize = 4;
/// Index of [`REQUESTS`] in [`FAMILIES`].
pub const F_REQUESTS: usize = 0;
/// Index of [`RETRIES`] in [`FAMILIES`].
pub const F_RETRIES: usize = 1;
/// Index of [`ROUTE_REQUESTS`] in [`FAMILIES`].
pub const F_ROUTE_REQUESTS: usize = 5;
/// Index of [`CACHE_LOOKUPS`] in [`FAMILIES`].
pub const F_CACHE_LOOKUPS: usize = 6;
/// Index of [`CACHE_TOKENS_SAVED`] in [`FAMILIES`].
pub const F_CACHE_TOKENS_SAVED: usize = 7;
/// Index of [`CACHE_EMBED_ERRORS`] in [`FAMILIES`].
pub const F_CACHE_EMBED_ERRORS: usize = 8;

/// Add without a locked instruction: only the owning worker ever writes this value. Saturating: a
/// counter must never wrap and appear to go backwards.
fn bump(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).saturating_add(v), Relaxed);
}

pub use hist::{Histogram, Observed, Timings};
pub use labels::{
    label_value, request_labels, RequestLabels, MAX_CLIENT_MODELS, MAX_LABEL_BYTES, NONE, OTHER,
};

/// One counter series announced to the admin thread.
#[derive(Debug)]
struct Series {
    family: usize,
    names: Box<[&'static str]>,
    labels: Box<[String]>,
    value: Arc<AtomicU64>,
}

/// What one worker publishes; shared with the admin thread by `Arc`.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Requests being answered right now.
    pub in_flight: CachePadded<AtomicI64>,
    /// Upstream connections open (idle in the pool or in use).
    pub upstream_conns: CachePadded<AtomicI64>,
    /// Upstream connections opened since start.
    pub upstream_connects: CachePadded<AtomicU64>,
    /// Semantic cache lookup time (exact and semantic layers, the embeddings call included).
    pub cache_lookup: Histogram,
    new_series: SegQueue<Series>,
    /// Timing histograms of label sets this worker has just created.
    new_timings: SegQueue<hist::TimingSeries>,
}

impl WorkerMetrics {
    /// Change a gauge owned by this worker.
    pub fn gauge_add(g: &AtomicI64, d: i64) {
        g.store(g.load(Relaxed) + d, Relaxed);
    }
}

/// The worker-local face of the metrics: a map from label values to the worker's own counters.
#[derive(Debug)]
pub struct LocalMetrics {
    /// The shared half.
    pub shared: Arc<WorkerMetrics>,
    series: RefCell<SeriesMap>,
    /// The key of the series hashes: random per worker, so label values a client chooses
    /// (`x-user-id`, model names) cannot be picked to pile into one bucket.
    seed: foldhash::fast::RandomState,
    count: std::cell::Cell<usize>,
    timings: hist::LocalTimings,
}

/// The series of a worker by the keyed hash of (family, label names, label values); a hash shared
/// by two label sets holds both.
type SeriesMap = HashMap<u64, Vec<(Box<[&'static str]>, Box<[String]>, Arc<AtomicU64>)>, PreHashed>;

/// For maps keyed by a hash already computed with a keyed hasher: the key is its own hash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PreHashed;

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;
    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

/// The hasher of [`PreHashed`]: passes a `u64` key through.
#[derive(Debug, Default)]
pub(crate) struct PreHashedHasher(u64);

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this; anything else still gets a usable hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Labels whose values a client can choose freely; these fold into `_other` past the cap.
const CLIENT_CHOSEN: [&str; 3] = ["model", "user", "client_ip"];

/// Most label sets one worker creates before folding new ones into `_other`.
const MAX_SERIES_PER_WORKER: usize = 4096;

impl LocalMetrics {
    /// Local face of `shared`.
    pub fn new(shared: Arc<WorkerMetrics>) -> Self {
        LocalMetrics {
            shared,
            series: RefCell::new(SeriesMap::default()),
            seed: foldhash::fast::RandomState::default(),
            count: std::cell::Cell::new(0),
            timings: hist::LocalTimings::default(),
        }
    }

    /// A request's [`request_labels`] as this worker counts them: a model only `"*"` routes (the
    /// client's choice) is itself for the first [`MAX_CLIENT_MODELS`] such names the worker sees,
    /// [`OTHER`] after that.
    pub fn bound<'a>(&self, labels: RequestLabels<'a>) -> RequestLabels<'a> {
        self.timings.bound(labels)
    }

    /// Record one finished request's timings under its `backend` and `model` labels (as
    /// [`bound`](Self::bound) gave them).
    pub fn observe(&self, labels: RequestLabels<'_>, obs: Observed) {
        self.timings.observe(&self.shared, labels, obs);
    }

    /// Add `v` to the series of `family` with these label values (in the family's label order).
    pub fn add(&self, family: usize, labels: &[&str], v: u64) {
        self.add_named(family, FAMILIES[family].labels, labels, v);
    }

    /// Add `v` to a series whose label names are given here (families with configurable labels).
    /// Label values are capped and cleaned by [`label_value`] first.
    pub fn add_named(&self, family: usize, names: &[&'static str], labels: &[&str], v: u64) {
        let unchanged = |l: &&str| matches!(label_value(l), Cow::Borrowed(c) if c.len() == l.len());
        if !labels.iter().all(unchanged) {
            let clean: Vec<Cow<'_, str>> = labels.iter().map(|l| label_value(l)).collect();
            let clean: Vec<&str> = clean.iter().map(|c| c.as_ref()).collect();
            return self.add_clean(family, names, &clean, v);
        }
        self.add_clean(family, names, labels, v)
    }

    /// [`add_named`](Self::add_named) with label values already through [`label_value`].
    fn add_clean(&self, family: usize, names: &[&'static str], labels: &[&str], v: u64) {
        let mut h = self.seed.build_hasher();
        family.hash(&mut h);
        names.hash(&mut h);
        labels.hash(&mut h);
        let key = h.finish();
        let mut map = self.series.borrow_mut();
        let bucket = map.entry(key).or_default();
        if let Some((_, _, c)) = bucket.iter().find(|(n, l, _)| {
            n[..] == *names && l.iter().map(String::as_str).eq(labels.iter().copied())
        }) {
            bump(c, v);
            return;
        }
        // Some label values come from clients (model names via "*", x-user-id, addresses): past
        // the cap, new series fold those labels into "_other" (keeping the rest, e.g. the token
        // type, exact) instead of growing without bound.
        if self.count.get() >= MAX_SERIES_PER_WORKER {
            let folded: Vec<&str> = names
                .iter()
                .zip(labels)
                .map(|(n, v)| if CLIENT_CHOSEN.contains(n) { OTHER } else { *v })
                .collect();
            if folded[..] != *labels {
                drop(map);
                return self.add_clean(family, names, &folded, v);
            }
        }
        self.count.set(self.count.get() + 1);
        let labels: Box<[String]> = labels.iter().map(|s| s.to_string()).collect();
        let names: Box<[&'static str]> = names.into();
        let value = Arc::new(AtomicU64::new(v));
        self.shared.new_series.push(Series {
            family,
            names: names.clone(),
            labels: labels.clone(),
            value: value.clone(),
        });
        bucket.push((names, labels, value));
    }
}

/// Every worker's metrics, read by the admin thread.
#[derive(Debug, Default)]
pub struct Registry {
    workers: Vec<Arc<WorkerMetrics>>,
    /// Series drained from the workers' queues so far (admin-thread only).
    known: std::sync::Mutex<Known>,
}

/// Every series announced so far, by every worker.
#[derive(Debug, Default)]
struct Known {
    counters: Vec<Series>,
    timings: Vec<hist::TimingSeries>,
}

impl Registry {
    /// A registry for `n` workers.
    pub fn new(n: usize) -> Self {
        Registry {
            workers: (0..n).map(|_| Arc::default()).collect(),
            known: Default::default(),
        }
    }

    /// Worker `i`'s shared metrics.
    pub fn worker(&self, i: usize) -> Arc<WorkerMetrics> {
        self.workers[i].clone()
    }

    /// Sum of the in-flight gauges.
    pub fn in_flight(&self) -> i64 {
        self.workers.iter().map(|w| w.in_flight.load(Relaxed)).sum()
    }

    /// Render everything in the Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        // The mutex is taken only by scrapes on the admin thread, never by a worker.
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let known = &mut *known;
        for w in &self.workers {
            while let Some(s) = w.new_series.pop() {
                known.counters.push(s);
            }
            while let Some(s) = w.new_timings.pop() {
                known.timings.push(s);
            }
        }
        type Key<'k> = (usize, &'k [&'static str], &'k [String]);
        let mut sums: Vec<(Key<'_>, u64)> = Vec::new();
        let mut index: HashMap<Key<'_>, usize> = HashMap::new();
        for s in &known.counters {
            let v = s.value.load(Relaxed);
            let key = (s.family, &s.names[..], &s.labels[..]);
            match index.get(&key) {
                Some(&i) => sums[i].1 = sums[i].1.saturating_add(v),
                None => {
                    index.insert(key, sums.len());
                    sums.push((key, v));
                }
            }
        }
        let mut out = String::with_capacity(4096);
        for (fi, f) in FAMILIES.iter().enumerate() {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                f.name, f.help, f.name
            );
            // A family without labels is one series: shown (as 0) before its first count.
            if f.labels.is_empty() && fi != F_TOKENS && !sums.iter().any(|((x, _, _), _)| *x == fi)
            {
                let _ = writeln!(out, "{} 0", f.name);
            }
            for ((_, names, labels), v) in sums.iter().filter(|((x, _, _), _)| *x == fi) {
                if names.is_empty() {
                    let _ = writeln!(out, "{} {v}", f.name);
                    continue;
                }
                let _ = write!(out, "{}{{", f.name);
                for (i, (n, val)) in names.iter().zip(labels.iter()).enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}{n}=\"{}\"", escape(val));
                }
                let _ = writeln!(out, "}} {v}");
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "aigw_in_flight_requests",
            "Requests being answered now.",
            self.in_flight(),
        );
        let conns = self
            .workers
            .iter()
            .map(|w| w.upstream_conns.load(Relaxed))
            .sum();
        gauge(
            &mut out,
            "aigw_upstream_connections",
            "Upstream connections open (idle or in use).",
            conns,
        );
        let connects: u64 = self
            .workers
            .iter()
            .map(|w| w.upstream_connects.load(Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "# HELP aigw_upstream_connects_total Upstream connections opened.\n# TYPE aigw_upstream_connects_total counter\naigw_upstream_connects_total {connects}"
        );
        hist::render(&mut out, &known.timings);
        let lookups: Vec<&Histogram> = self.workers.iter().map(|w| &w.cache_lookup).collect();
        hist::render_plain(
            &mut out,
            "aigw_cache_lookup_seconds",
            "Semantic cache lookup time (both layers, the embeddings call included).",
            &lookups,
        );
        out
    }
}

#[cfg(test)]
mod tests;
