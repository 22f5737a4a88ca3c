//! The shared [`Cache`]: the exact map, the partition registry, the per-core store queues, the flush
//! epoch and the counters. Every method here is called from the cores and never locks; the only
//! `Mutex` (the indexer's state, when no indexer thread owns it) is taken by the indexer thread or by
//! [`Cache::apply_pending`], never by a lookup or a submit.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};

use arc_swap::ArcSwap;
use crossbeam::queue::ArrayQueue;
use crossbeam_skiplist::SkipMap;

use super::bits::Query;
use super::flat::TopK;
use super::generation::PartitionView;
use super::indexer::{self, Indexer};
use super::params::{IndexParams, MAX_EF};
use super::stats::{CacheStats, Counters};
use super::vector::Unit;
use crate::cache::Entry;

/// Candidates taken from each generation before the expiry / flush / `accept` checks.
pub const SEARCH_K: usize = 4;

/// A store, as a core hands it to the indexer.
#[derive(Debug)]
pub struct StoreJob {
    /// The semantic partition (who asks, and the context that is not embedded).
    pub partition: u128,
    /// The exact key, if the exact layer is on.
    pub exact: Option<u128>,
    /// The embedding, if the semantic layer is on.
    pub vector: Option<Unit>,
    /// What to serve.
    pub entry: Arc<Entry>,
}

/// A semantic hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The stored answer.
    pub entry: Arc<Entry>,
    /// Cosine similarity with the query, in `[-1, 1]`.
    pub similarity: f32,
}

/// A value of the exact map: the entry and the flush epoch it was stored in.
pub(crate) struct ExactSlot {
    pub(crate) entry: Arc<Entry>,
    pub(crate) epoch: u64,
}

/// A queued store with the flush epoch it was submitted in (a flush drops older ones).
pub(crate) struct Queued {
    pub(crate) epoch: u64,
    pub(crate) job: StoreJob,
}

/// The semantic cache's index, shared by every core as `Arc<Cache>`.
pub struct Cache {
    pub(crate) p: IndexParams,
    /// `p.ef_search`, changeable while serving ([`Cache::set_ef_search`]).
    ef_search: AtomicUsize,
    pub(crate) exact: SkipMap<u128, ExactSlot>,
    pub(crate) registry: SkipMap<u128, ArcSwap<PartitionView>>,
    pub(crate) queues: Box<[ArrayQueue<Queued>]>,
    pub(crate) epoch: AtomicU64,
    /// The last flush epoch the indexer has applied (its gauges then show the flush).
    pub(crate) flushed: AtomicU64,
    pub(crate) counters: Counters,
    /// The indexer's state while no thread owns it ([`Cache::apply_pending`] drives it then).
    pub(crate) state: Mutex<Option<Indexer>>,
    pub(crate) thread: OnceLock<Thread>,
    /// Set by the indexer just before it parks; a submit that sees it unparks the indexer.
    pub(crate) sleeping: AtomicBool,
    pub(crate) stop: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("params", &self.p)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A new, empty cache. Parameters out of range are clamped ([`IndexParams::sanitized`]).
    pub fn new(p: IndexParams) -> Arc<Cache> {
        let p = p.sanitized();
        let queues = (0..p.cores)
            .map(|_| ArrayQueue::new(p.queue_capacity))
            .collect();
        Arc::new(Cache {
            exact: SkipMap::new(),
            registry: SkipMap::new(),
            queues,
            epoch: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            counters: Counters::default(),
            state: Mutex::new(Some(Indexer::new(0))),
            thread: OnceLock::new(),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ef_search: AtomicUsize::new(p.ef_search),
            p,
        })
    }

    /// The parameters it was built with (after clamping; `ef_search` as at creation).
    pub fn params(&self) -> &IndexParams {
        &self.p
    }

    /// Changes the graph search's beam width for the next lookups (clamped to `1..=MAX_EF`): a
    /// reload can retune recall against latency without rebuilding the index.
    pub fn set_ef_search(&self, ef: usize) {
        self.ef_search.store(ef.clamp(1, MAX_EF), Ordering::Relaxed);
    }

    /// The entry stored under `key`, if it is live at `now_ms` and not flushed. Lock-free (a skiplist
    /// read under a crossbeam-epoch pin), no allocation.
    pub fn lookup_exact(&self, key: u128, now_ms: u64) -> Option<Arc<Entry>> {
        let found = self.exact.get(&key)?;
        let slot = found.value();
        if slot.epoch != self.epoch.load(Ordering::Acquire) || !slot.entry.live_at(now_ms) {
            return None;
        }
        Some(Arc::clone(&slot.entry))
    }

    /// The most similar live entry of `partition` with similarity at least `min_similarity` that
    /// `accept` takes (called on candidates best first, at most a few per generation).
    ///
    /// Lock-free: a skiplist read, an `ArcSwap` load, then a scan of contiguous chunks or a search of
    /// frozen graphs with this thread's reusable scratch. Nothing a writer holds is touched: the
    /// indexer only ever replaces whole views. Allocation-free once the thread's scratch is warm.
    pub fn lookup_semantic(
        &self,
        partition: u128,
        q: &Unit,
        min_similarity: f32,
        now_ms: u64,
        accept: &mut dyn FnMut(&Entry) -> bool,
    ) -> Option<Hit> {
        if q.dims() != self.p.dims || min_similarity.is_nan() {
            return None;
        }
        let found = self.registry.get(&partition)?;
        let view = found.value().load();
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut best: Option<Hit> = None;
        let mut top = TopK::new(SEARCH_K, min_similarity);
        let query = Query::new(q.as_slice());
        let ef = self.ef_search.load(Ordering::Relaxed);
        for g in &view.gens {
            if g.epoch != epoch || g.max_expires_ms < now_ms {
                continue;
            }
            // Later generations only matter if they beat what is already found (ties: newer wins).
            top.reset(best.as_ref().map_or(min_similarity, |b| b.similarity));
            g.search(&query, ef, &mut top);
            for (sim, row) in top.iter() {
                if best.as_ref().is_some_and(|b| sim <= b.similarity) {
                    break;
                }
                let Some(entry) = g.entry(row) else { continue };
                if entry.live_at(now_ms) && accept(entry) {
                    best = Some(Hit {
                        entry: Arc::clone(entry),
                        similarity: sim,
                    });
                    break;
                }
            }
            if best.as_ref().is_some_and(|b| b.similarity >= 1.0) {
                break;
            }
        }
        best
    }

    /// Queues a store on `core`'s queue (`core` modulo the number of queues). False when it was
    /// dropped (queue full: counted in `store_dropped`) or refused (a vector of another dimension, or
    /// neither a key nor a vector: counted in `refused`). Never blocks.
    pub fn submit(&self, core: usize, job: StoreJob) -> bool {
        let wrong_dims = job.vector.as_ref().is_some_and(|v| v.dims() != self.p.dims);
        if wrong_dims || (job.exact.is_none() && job.vector.is_none()) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(queue) = self.queues.get(core % self.queues.len().max(1)) else {
            return false;
        };
        let queued = Queued {
            epoch: self.epoch.load(Ordering::Acquire),
            job,
        };
        if queue.push(queued).is_err() {
            self.counters.store_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.wake();
        true
    }

    /// Makes everything stored or queued so far invisible at once; the indexer reclaims it.
    /// Returns the flush's number: [`flush_applied`](Self::flush_applied) tells when the
    /// indexer has reclaimed it (and [`stats`](Self::stats) shows it).
    pub fn flush(&self) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake();
        epoch
    }

    /// Has the indexer applied flush number `epoch` (or a later one)?
    pub fn flush_applied(&self, epoch: u64) -> bool {
        self.flushed.load(Ordering::Acquire) >= epoch
    }

    /// Counters and gauges.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    /// Starts the indexer thread. It ends after [`Cache::stop`], or once every `Arc<Cache>` outside it
    /// is gone (it notices within a tick, 200 ms). Only one: a second call is an error.
    pub fn spawn_indexer(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        let taken = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(state) = taken else {
            return Err(std::io::Error::other(
                "the cache indexer is already running",
            ));
        };
        let weak = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name("aigw-cache-indexer".into())
            .spawn(move || indexer::run(weak, state));
        match handle {
            Ok(h) => {
                let _ = self.thread.set(h.thread().clone());
                Ok(h)
            }
            Err(e) => {
                // The state went down with the closure; start over so `apply_pending` still works.
                let epoch = self.epoch.load(Ordering::Acquire);
                *self.state.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Indexer::new(epoch));
                Err(e)
            }
        }
    }

    /// Asks the indexer thread to end (it finishes its current batch).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Without an indexer thread: applies every queued store, expiry and flush, and finishes every
    /// graph being built, on the caller's thread, as of `now_ms`; returns the stores applied. With an
    /// indexer thread running: `None` (the thread does this). For tests, benches and tools.
    pub fn apply_pending(&self, now_ms: u64) -> Option<usize> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.as_mut()?;
        let mut applied = 0;
        loop {
            applied += state.run_once(self, now_ms, None);
            if self.queues_empty() {
                return Some(applied);
            }
        }
    }

    /// Unparks the indexer if it said it sleeps. The fence pairs with the indexer's between setting
    /// `sleeping` and its last look at the queues: one of the two sides sees the other.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Whether every store queue is empty.
    pub(crate) fn queues_empty(&self) -> bool {
        self.queues.iter().all(ArrayQueue::is_empty)
    }

    /// Entries in the published views (what lookups can reach), for tests.
    #[cfg(test)]
    pub(crate) fn visible_entries(&self) -> usize {
        let epoch = self.epoch.load(Ordering::Acquire);
        self.registry
            .iter()
            .map(|p| {
                let view = p.value().load();
                view.gens
                    .iter()
                    .filter(|g| g.epoch == epoch)
                    .map(|g| g.entries)
                    .sum::<usize>()
            })
            .sum()
    }
}
