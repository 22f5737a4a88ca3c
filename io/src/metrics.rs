//! Metrics without locks on the request path: each worker owns its counters (single writer,
//! `Relaxed` load+store, no read-modify-write), announces new label sets through a lock-free
//! queue, and the admin thread sums every worker's values when `/metrics` is scraped.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;

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

/// All counter families, indexed by position (the `family` argument of [`LocalMetrics::add`]).
pub const FAMILIES: &[&Family] = &[
    &REQUESTS,
    &RETRIES,
    &TOKENS,
    &REJECTIONS,
    &CONSUMER_REQUESTS,
    &ROUTE_REQUESTS,
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

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 120.0,
];

/// A fixed-bucket histogram written by one thread.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Record one observation (single writer: this worker).
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        bump(&self.counts[i], 1);
        bump(
            &self.sum_ns,
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

/// Add without a locked instruction: only the owning worker ever writes this value. Saturating: a
/// counter must never wrap and appear to go backwards.
fn bump(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).saturating_add(v), Relaxed);
}

/// Most bytes of a label value; longer values are cut at a char boundary.
pub const MAX_LABEL_BYTES: usize = 128;

/// A label value as it may be stored and rendered: at most [`MAX_LABEL_BYTES`] bytes, cut at a
/// char boundary, with every control character (C0, DEL, C1: line breaks, escape sequences)
/// replaced by U+FFFD, so that no value can break a line of the text format or a terminal.
/// Borrowed when the value already qualifies (the common case: no allocation).
pub fn label_value(v: &str) -> Cow<'_, str> {
    // Printable ASCII (the common case) needs no char decoding.
    if v.len() <= MAX_LABEL_BYTES
        && (v.bytes().all(|b| (0x20..0x7f).contains(&b)) || !v.chars().any(char::is_control))
    {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len().min(MAX_LABEL_BYTES));
    for c in v.chars() {
        let c = if c.is_control() {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_LABEL_BYTES {
            break;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

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
    /// Total request latency.
    pub latency: Histogram,
    /// Gateway overhead: total minus time spent waiting on the upstream.
    pub overhead: Histogram,
    /// Time to the first body byte of streamed responses.
    pub ttft: Histogram,
    new_series: SegQueue<Series>,
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
    #[allow(clippy::type_complexity)]
    series: RefCell<HashMap<u64, Vec<(Box<[&'static str]>, Box<[String]>, Arc<AtomicU64>)>>>,
    count: std::cell::Cell<usize>,
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
            series: RefCell::new(HashMap::new()),
            count: std::cell::Cell::new(0),
        }
    }

    /// Add `v` to the series of `family` with these label values (in the family's label order).
    pub fn add(&self, family: usize, labels: &[&str], v: u64) {
        self.add_named(family, FAMILIES[family].labels, labels, v);
    }

    /// Add `v` to a series whose label names are given here (families with configurable labels).
    /// Label values are capped and cleaned by [`label_value`] first.
    pub fn add_named(&self, family: usize, names: &[&'static str], labels: &[&str], v: u64) {
        if labels
            .iter()
            .any(|l| matches!(label_value(l), Cow::Owned(_)))
        {
            let clean: Vec<Cow<'_, str>> = labels.iter().map(|l| label_value(l)).collect();
            let clean: Vec<&str> = clean.iter().map(|c| c.as_ref()).collect();
            return self.add_clean(family, names, &clean, v);
        }
        self.add_clean(family, names, labels, v)
    }

    /// [`add_named`](Self::add_named) with label values already through [`label_value`].
    fn add_clean(&self, family: usize, names: &[&'static str], labels: &[&str], v: u64) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
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
                .map(|(n, v)| {
                    if CLIENT_CHOSEN.contains(n) {
                        "_other"
                    } else {
                        *v
                    }
                })
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
    /// Series drained from the workers' queues so far, per worker (admin-thread only).
    known: std::sync::Mutex<Vec<Series>>,
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
        for w in &self.workers {
            while let Some(s) = w.new_series.pop() {
                known.push(s);
            }
        }
        type Key<'k> = (usize, &'k [&'static str], &'k [String]);
        let mut sums: Vec<(Key<'_>, u64)> = Vec::new();
        let mut index: HashMap<Key<'_>, usize> = HashMap::new();
        for s in known.iter() {
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
            for ((_, names, labels), v) in sums.iter().filter(|((x, _, _), _)| *x == fi) {
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
        self.render_hist(
            &mut out,
            "aigw_request_duration_seconds",
            "Total request latency.",
            |w| &w.latency,
        );
        self.render_hist(
            &mut out,
            "aigw_time_to_first_token_seconds",
            "Time from the request to the first body byte of a streamed response.",
            |w| &w.ttft,
        );
        self.render_hist(
            &mut out,
            "aigw_gateway_overhead_seconds",
            "Time spent in the gateway: total latency minus time waiting on the upstream.",
            |w| &w.overhead,
        );
        out
    }

    fn render_hist(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        pick: impl Fn(&WorkerMetrics) -> &Histogram,
    ) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0u64;
        let mut sum_ns = 0u64;
        for (i, le) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
            .enumerate()
        {
            cum = self
                .workers
                .iter()
                .map(|w| pick(w).counts[i].load(Relaxed))
                .fold(cum, u64::saturating_add);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cum}");
        }
        for w in &self.workers {
            sum_ns = sum_ns.saturating_add(pick(w).sum_ns.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {cum}",
            sum_ns as f64 / 1e9
        );
    }
}

/// Escape a label value for the text format (backslash, quote and line feed are its only
/// escapes); values were cleaned by [`label_value`] when stored, so no other control character
/// is left to break a line.
fn escape(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
