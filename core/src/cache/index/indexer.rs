//! The indexer: the one writer. It drains the cores' store queues, appends to generations, evicts
//! (capacity, TTL, flush), builds HNSW graphs in time slices, and republishes partitions.
//!
//! Publication order keeps the capacity promise for readers: an eviction is published at once,
//! before the store that needed the room becomes visible, so the published views never hold more
//! than `max_entries` stores.
//!
//! hnsw_rs builders are dropped only here, inside a private one-thread rayon pool: hnsw_rs's `Drop`
//! clears neighbour lists with `into_par_iter`, which would otherwise wake rayon's global pool (one
//! thread per CPU, competing with the cores). The pool is built on the first drop; the process-wide
//! global pool is left alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::cache::{Cache, ExactSlot, Queued};
use super::flat::CHUNK_ROWS;
use super::generation::{GenState, PartitionView};
use super::hnsw::Builder;
use super::stats::Reason;

/// Stores taken from one queue per round before publishing.
const DRAIN_PER_QUEUE: usize = 1_024;
/// Graph building per round when a thread runs it (then the queues are looked at again).
const BUILD_SLICE: Duration = Duration::from_millis(5);
/// The longest the thread sleeps without a submit (TTL sweeps, noticing the cache is gone).
const TICK: Duration = Duration::from_millis(200);
/// How often TTL sweeps and age-based sealing run.
const MAINTAIN_EVERY_MS: u64 = 200;

/// The indexer's private state: all partitions' generations, oldest first, and the global order.
pub(crate) struct Indexer {
    parts: HashMap<u128, Vec<GenState>>,
    /// Generation seq → partition: the capacity eviction order (oldest first).
    order: BTreeMap<u64, u128>,
    next_seq: u64,
    epoch: u64,
    total: usize,
    mem: usize,
    backlog: usize,
    last_maintain_ms: Option<u64>,
    pool: Option<rayon::ThreadPool>,
    pool_failed: bool,
}

/// The thread body: runs until `stop`, or until the cache is gone.
pub(crate) fn run(weak: Weak<Cache>, mut st: Indexer) {
    while let Some(c) = weak.upgrade() {
        if c.stop.load(Ordering::Acquire) {
            break;
        }
        let applied = st.run_once(&c, unix_ms(), Some(BUILD_SLICE));
        if applied > 0 || st.backlog > 0 {
            continue;
        }
        c.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let idle = c.queues_empty()
            && c.epoch.load(Ordering::Acquire) == st.epoch
            && !c.stop.load(Ordering::Acquire);
        if idle {
            std::thread::park_timeout(TICK);
        }
        c.sleeping.store(false, Ordering::SeqCst);
        // `c` is dropped here: if it was the last `Arc`, the cache goes on this thread.
    }
    // Builders are dropped here, on this thread, through the pool (`Drop for Indexer`).
    drop(st);
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Indexer {
    pub(crate) fn new(epoch: u64) -> Self {
        Indexer {
            parts: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            epoch,
            total: 0,
            mem: 0,
            backlog: 0,
            last_maintain_ms: None,
            pool: None,
            pool_failed: false,
        }
    }

    /// One round: flush, drain, sweep, publish, build (for `budget`, or to the end); returns the
    /// stores applied.
    pub(crate) fn run_once(&mut self, c: &Cache, now_ms: u64, budget: Option<Duration>) -> usize {
        let epoch = c.epoch.load(Ordering::Acquire);
        if epoch != self.epoch {
            self.flush_all(c, epoch);
        }
        let mut dirty = HashSet::new();
        let mut applied = 0;
        for q in c.queues.iter() {
            for _ in 0..DRAIN_PER_QUEUE {
                let Some(job) = q.pop() else { break };
                applied += usize::from(self.apply(c, job, now_ms, &mut dirty));
            }
        }
        let due = self
            .last_maintain_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= MAINTAIN_EVERY_MS);
        if due || budget.is_none() {
            self.maintain(c, now_ms, &mut dirty);
            self.last_maintain_ms = Some(now_ms);
        }
        for part in dirty.drain() {
            self.publish(c, part);
        }
        self.build(c, budget);
        self.gauges(c);
        applied
    }

    /// Applies one store; false if it was dropped (flushed) or refused.
    fn apply(&mut self, c: &Cache, q: Queued, now_ms: u64, dirty: &mut HashSet<u128>) -> bool {
        if q.epoch != self.epoch {
            c.counters.evicted(Reason::Flush, 1);
            return false;
        }
        let job = q.job;
        if job.vector.as_ref().is_some_and(|v| v.dims() != c.p.dims) {
            c.counters.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Room first, so the store never becomes visible next to what it displaces.
        while self.total >= c.p.max_entries {
            if !self.evict_oldest(c, Reason::Capacity) {
                break;
            }
        }
        let cap = c.p.generation_cap();
        let span = c.p.generation_span_ms();
        let gens = self.parts.entry(job.partition).or_default();
        let open = gens.last().is_some_and(|g| {
            !g.sealed
                && g.entries < cap
                && span.is_none_or(|s| now_ms.saturating_sub(g.opened_ms) < s)
        });
        if !open {
            if let Some(g) = gens.last_mut() {
                seal(g, c);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            gens.push(GenState::new(seq, self.epoch, now_ms));
            self.order.insert(seq, job.partition);
        }
        let Some(g) = gens.last_mut() else {
            return false;
        };
        g.add(job.exact, job.vector, Arc::clone(&job.entry));
        if g.builder.is_none() && g.vectors() >= c.p.hnsw_min_entries {
            g.builder = Some(Builder::new(&c.p, cap));
        }
        if let Some(k) = job.exact {
            let slot = ExactSlot {
                entry: job.entry,
                epoch: self.epoch,
            };
            c.exact.insert(k, slot);
        }
        self.total += 1;
        c.counters.stored.fetch_add(1, Ordering::Relaxed);
        dirty.insert(job.partition);
        true
    }

    /// Evicts the oldest generation anywhere; false if there is none.
    fn evict_oldest(&mut self, c: &Cache, reason: Reason) -> bool {
        match self.order.first_key_value() {
            Some((&seq, &part)) => {
                self.evict(c, part, seq, reason);
                true
            }
            None => false,
        }
    }

    /// Removes generation `seq` of `part`, its exact keys (those still pointing at its entries), and
    /// publishes the partition at once.
    fn evict(&mut self, c: &Cache, part: u128, seq: u64, reason: Reason) {
        self.order.remove(&seq);
        let Some(gens) = self.parts.get_mut(&part) else {
            return;
        };
        let Some(i) = gens.iter().position(|g| g.seq == seq) else {
            return;
        };
        let mut g = gens.remove(i);
        self.total = self.total.saturating_sub(g.entries);
        self.mem = self.mem.saturating_sub(g.mem_counted);
        c.counters.evicted(reason, g.entries);
        for (k, e) in &g.exact {
            if let Some(found) = c.exact.get(k) {
                if Arc::ptr_eq(&found.value().entry, e) {
                    found.remove();
                }
            }
        }
        self.publish(c, part);
        if let Some(b) = g.builder.take() {
            self.drop_builder(b);
        }
    }

    /// Republishes `part` from the state (or removes it from the registry when it has nothing left).
    fn publish(&mut self, c: &Cache, part: u128) {
        let dims = c.p.dims;
        let Some(gens) = self.parts.get_mut(&part) else {
            c.registry.remove(&part);
            return;
        };
        if gens.is_empty() {
            self.parts.remove(&part);
            c.registry.remove(&part);
            return;
        }
        let mut view = PartitionView::default();
        for g in gens.iter_mut().rev() {
            view.gens.push(g.view(dims));
            let now = g.memory_bytes(dims);
            self.mem = self.mem.saturating_sub(g.mem_counted) + now;
            g.mem_counted = now;
        }
        match c.registry.get(&part) {
            Some(found) => found.value().store(Arc::new(view)),
            None => {
                c.registry.insert(part, ArcSwap::from_pointee(view));
            }
        }
    }

    /// TTL sweep (generations whose every entry expired) and age-based sealing.
    fn maintain(&mut self, c: &Cache, now_ms: u64, dirty: &mut HashSet<u128>) {
        let span = c.p.generation_span_ms();
        let mut expired = Vec::new();
        for (&part, gens) in self.parts.iter_mut() {
            for g in gens.iter_mut() {
                if g.max_expires_ms < now_ms {
                    expired.push((part, g.seq));
                } else if !g.sealed && span.is_some_and(|s| now_ms.saturating_sub(g.opened_ms) >= s)
                {
                    seal(g, c);
                    dirty.insert(part);
                }
            }
        }
        for (part, seq) in expired {
            self.evict(c, part, seq, Reason::Ttl);
        }
    }

    /// Everything goes (a flush); the state moves to `epoch`.
    fn flush_all(&mut self, c: &Cache, epoch: u64) {
        let all: Vec<(u64, u128)> = self.order.iter().map(|(&s, &p)| (s, p)).collect();
        for (seq, part) in all {
            self.evict(c, part, seq, Reason::Flush);
        }
        for e in c.exact.iter() {
            if e.value().epoch != epoch {
                e.remove();
            }
        }
        for p in c.registry.iter() {
            p.remove();
        }
        self.epoch = epoch;
        self.gauges(c);
        c.flushed.fetch_max(epoch, Ordering::Release);
    }

    /// Inserts pending rows into builders (for `budget`, or all), freezes graphs that moved far
    /// enough, and drops builders of sealed generations once complete.
    fn build(&mut self, c: &Cache, budget: Option<Duration>) {
        let dims = c.p.dims;
        let step = (c.p.hnsw_min_entries / 4).max(CHUNK_ROWS);
        let deadline = budget.map(|b| Instant::now() + b);
        let mut out_of_time = false;
        let mut done = Vec::new();
        let mut changed = Vec::new();
        for (&part, gens) in self.parts.iter_mut() {
            for g in gens.iter_mut() {
                let Some(b) = g.builder.as_mut() else {
                    continue;
                };
                let mut n = 0usize;
                while !out_of_time && b.insert_next(&g.chunks, dims) {
                    n += 1;
                    // One insert is ~1 ms at 512-d: look at the clock every 4.
                    if n & 3 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                        out_of_time = true;
                    }
                }
                let covered = g.graph.as_ref().map_or(0, |gr| gr.n);
                let caught_up = b.inserted() == g.rows;
                let far = b.inserted() >= covered + step;
                if far || (caught_up && g.sealed && covered < b.inserted()) {
                    g.graph = Some(Arc::new(b.freeze(&g.chunks, dims)));
                    g.view = None;
                    changed.push(part);
                }
                if g.sealed && caught_up && g.graph.as_ref().is_some_and(|gr| gr.n == g.rows) {
                    done.push((part, g.seq));
                }
            }
        }
        for (part, seq) in done {
            let b = self
                .parts
                .get_mut(&part)
                .and_then(|gens| gens.iter_mut().find(|g| g.seq == seq))
                .and_then(|g| {
                    g.view = None;
                    g.builder.take()
                });
            if let Some(b) = b {
                self.drop_builder(b);
                changed.push(part);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for part in changed {
            self.publish(c, part);
        }
        self.backlog = self
            .parts
            .values()
            .flat_map(|gens| gens.iter())
            .map(|g| g.build_backlog() + usize::from(g.sealed && g.builder.is_some()))
            .sum();
    }

    fn gauges(&self, c: &Cache) {
        let k = &c.counters;
        k.entries.store(self.total as u64, Ordering::Relaxed);
        k.partitions
            .store(self.parts.len() as u64, Ordering::Relaxed);
        k.generations
            .store(self.order.len() as u64, Ordering::Relaxed);
        k.memory_bytes.store(self.mem as u64, Ordering::Relaxed);
        k.build_backlog
            .store(self.backlog as u64, Ordering::Relaxed);
    }

    /// Drops an hnsw_rs builder inside the private one-thread pool (see the module docs).
    fn drop_builder(&mut self, b: Builder) {
        if self.pool.is_none() && !self.pool_failed {
            let built = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "aigw-cache-drop".into())
                .build();
            match built {
                Ok(p) => self.pool = Some(p),
                Err(_) => self.pool_failed = true,
            }
        }
        match &self.pool {
            Some(p) => p.install(move || drop(b)),
            None => drop(b),
        }
    }
}

/// Drops every builder through the pool (the rest of the state holds no hnsw_rs structure).
impl Drop for Indexer {
    fn drop(&mut self) {
        let builders: Vec<Builder> = self
            .parts
            .values_mut()
            .flat_map(|gens| gens.iter_mut())
            .filter_map(|g| g.builder.take())
            .collect();
        for b in builders {
            self.drop_builder(b);
        }
    }
}

/// No more stores go into `g`; it gets a builder if it is big enough.
fn seal(g: &mut GenState, c: &Cache) {
    g.sealed = true;
    if g.builder.is_none() && g.vectors() >= c.p.hnsw_min_entries {
        g.builder = Some(Builder::new(&c.p, g.vectors()));
    }
}
