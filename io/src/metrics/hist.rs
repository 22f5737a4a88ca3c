//! Request timing histograms (total latency, gateway overhead, time to first token), labelled by
//! `backend` and `model`. Each worker owns the histograms of the label sets it has seen (single
//! writer, `Relaxed` load+store), finds them by a hash of the label values (no allocation once a
//! label set exists) and announces a new one through its lock-free queue; the admin thread merges
//! the workers' histograms of one label set when `/metrics` is scraped.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::labels::{escape, label_value, RequestLabels, MAX_CLIENT_MODELS, OTHER};
use super::{bump, WorkerMetrics};

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

/// The timings of one label set on one worker.
#[derive(Debug, Default)]
pub struct Timings {
    /// Total request latency.
    pub latency: Histogram,
    /// Gateway overhead: total minus time spent waiting on the upstream.
    pub overhead: Histogram,
    /// Time to the first body byte of streamed responses.
    pub ttft: Histogram,
}

/// What one finished request observed.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    /// Total latency.
    pub total: Duration,
    /// Total minus time waiting on upstreams.
    pub overhead: Duration,
    /// Time to the first body byte, for a stream.
    pub ttft: Option<Duration>,
}

/// A label set's timings announced to the admin thread: `[backend, model]` and the histograms.
#[derive(Debug)]
pub(super) struct TimingSeries {
    labels: [Box<str>; 2],
    timings: Arc<Timings>,
}

/// The worker-local index of its timing series.
#[derive(Debug, Default)]
pub(super) struct LocalTimings {
    /// By the hash of `[backend, model]`; a hash shared by two label sets holds both.
    #[allow(clippy::type_complexity)]
    series: RefCell<HashMap<u64, Vec<([Box<str>; 2], Arc<Timings>)>, super::PreHashed>>,
    /// The key of the label-set hashes (see `LocalMetrics`).
    seed: foldhash::fast::RandomState,
    /// The client-chosen models (routed by `"*"`) this worker keeps as label values.
    client_models: RefCell<HashSet<Box<str>, foldhash::fast::RandomState>>,
}

impl LocalTimings {
    /// `labels` with a client-chosen model this worker does not keep as a label value folded
    /// into [`OTHER`]: it keeps the first [`MAX_CLIENT_MODELS`] it sees.
    pub(super) fn bound<'a>(&self, labels: RequestLabels<'a>) -> RequestLabels<'a> {
        if !labels.client_chosen {
            return labels;
        }
        let model = label_value(labels.model);
        let mut kept = self.client_models.borrow_mut();
        if !kept.contains(model.as_ref()) {
            if kept.len() >= MAX_CLIENT_MODELS {
                return RequestLabels {
                    model: OTHER,
                    client_chosen: false,
                    ..labels
                };
            }
            kept.insert(model.as_ref().into());
        }
        labels
    }

    /// Record `obs` under `labels` (already [`bound`](Self::bound)), creating the label set's
    /// histograms (and announcing them on `shared`'s queue) the first time it is seen.
    pub(super) fn observe(&self, shared: &WorkerMetrics, labels: RequestLabels<'_>, obs: Observed) {
        let (backend, model) = (label_value(labels.backend), label_value(labels.model));
        let mut h = self.seed.build_hasher();
        backend.hash(&mut h);
        model.hash(&mut h);
        let mut map = self.series.borrow_mut();
        let bucket = map.entry(h.finish()).or_default();
        let found = bucket
            .iter()
            .position(|(l, _)| *l[0] == *backend && *l[1] == *model);
        let i = found.unwrap_or_else(|| {
            let labels: [Box<str>; 2] = [backend.as_ref().into(), model.as_ref().into()];
            let timings = Arc::new(Timings::default());
            shared.new_timings.push(TimingSeries {
                labels: labels.clone(),
                timings: timings.clone(),
            });
            bucket.push((labels, timings));
            bucket.len() - 1
        });
        // Borrowed, not cloned: no reference count is touched on the request path.
        let t = &bucket[i].1;
        t.latency.observe(obs.total);
        t.overhead.observe(obs.overhead);
        if let Some(d) = obs.ttft {
            t.ttft.observe(d);
        }
    }
}

/// The three histogram families: name, help text, which histogram, and whether label sets with
/// no observation are left out (time to first token: only label sets that streamed).
type HistFamily = (&'static str, &'static str, fn(&Timings) -> &Histogram, bool);

const HIST_FAMILIES: [HistFamily; 3] = [
    (
        "aigw_request_duration_seconds",
        "Total request latency, by backend and model.",
        |t| &t.latency,
        false,
    ),
    (
        "aigw_time_to_first_token_seconds",
        "Time from the request to the first body byte of a streamed response, by backend and model.",
        |t| &t.ttft,
        true,
    ),
    (
        "aigw_gateway_overhead_seconds",
        "Time spent in the gateway: total latency minus time waiting on the upstream, by backend and model.",
        |t| &t.overhead,
        false,
    ),
];

/// Render every histogram family, merging the workers' series of one label set (sorted by
/// backend, then model).
pub(super) fn render(out: &mut String, known: &[TimingSeries]) {
    use std::fmt::Write;
    let mut sets: BTreeMap<(&str, &str), Vec<&Timings>> = BTreeMap::new();
    for s in known {
        sets.entry((&s.labels[0], &s.labels[1]))
            .or_default()
            .push(&s.timings);
    }
    let les: Vec<String> = BUCKETS
        .iter()
        .map(f64::to_string)
        .chain(["+Inf".to_string()])
        .collect();
    for (name, help, pick, skip_empty) in HIST_FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for ((backend, model), ts) in &sets {
            let count = |i: usize| {
                ts.iter()
                    .map(|t| pick(t).counts[i].load(Relaxed))
                    .fold(0, u64::saturating_add)
            };
            let counts: Vec<u64> = (0..les.len()).map(count).collect();
            if skip_empty && counts.iter().all(|&c| c == 0) {
                continue;
            }
            let labels = format!(
                "backend=\"{}\",model=\"{}\"",
                escape(backend),
                escape(model)
            );
            let mut cum = 0u64;
            for (le, c) in les.iter().zip(counts) {
                cum = cum.saturating_add(c);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
            }
            let sum_ns = ts
                .iter()
                .map(|t| pick(t).sum_ns.load(Relaxed))
                .fold(0, u64::saturating_add);
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {cum}",
                sum_ns as f64 / 1e9
            );
        }
    }
}

/// Render one unlabelled histogram family, merged over `hists` (one per worker).
pub(super) fn render_plain(out: &mut String, name: &str, help: &str, hists: &[&Histogram]) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0u64;
    for i in 0..=BUCKETS.len() {
        let c = hists
            .iter()
            .map(|h| h.counts[i].load(Relaxed))
            .fold(0, u64::saturating_add);
        cum = cum.saturating_add(c);
        let le = BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), f64::to_string);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cum}");
    }
    let sum_ns = hists
        .iter()
        .map(|h| h.sum_ns.load(Relaxed))
        .fold(0, u64::saturating_add);
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {cum}",
        sum_ns as f64 / 1e9
    );
}
