//! Counters and gauges of the index, all atomics: the cores bump `store_dropped` / `refused`, the
//! indexer everything else, and [`super::Cache::stats`] reads them without a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Entries evicted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Their generation's last entry expired.
    pub ttl: u64,
    /// The cache was full: the oldest generation anywhere went.
    pub capacity: u64,
    /// A flush (stores still queued at the flush included).
    pub flush: u64,
}

/// A snapshot of the index's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Live entries (every applied store not evicted yet; expired entries count until their
    /// generation is reclaimed). Never above `max_entries`.
    pub entries: u64,
    /// Partitions holding at least one generation.
    pub partitions: u64,
    /// Generations over all partitions.
    pub generations: u64,
    /// Estimated bytes: vectors, graph links, graphs being built, answers and texts, exact keys.
    pub memory_bytes: u64,
    /// Entries evicted, by reason.
    pub evictions: Evictions,
    /// Store jobs dropped because their core's queue was full.
    pub store_dropped: u64,
    /// Store jobs refused: a vector of the wrong dimension, or nothing to index.
    pub refused: u64,
    /// Store jobs applied by the indexer.
    pub stored: u64,
    /// Vectors waiting to be inserted into a graph (indexer backlog).
    pub build_backlog: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) entries: AtomicU64,
    pub(crate) partitions: AtomicU64,
    pub(crate) generations: AtomicU64,
    pub(crate) memory_bytes: AtomicU64,
    pub(crate) evicted_ttl: AtomicU64,
    pub(crate) evicted_capacity: AtomicU64,
    pub(crate) evicted_flush: AtomicU64,
    pub(crate) store_dropped: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) build_backlog: AtomicU64,
}

/// Why a generation (or a queued store) went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Ttl,
    Capacity,
    Flush,
}

impl Counters {
    pub(crate) fn evicted(&self, reason: Reason, n: usize) {
        let c = match reason {
            Reason::Ttl => &self.evicted_ttl,
            Reason::Capacity => &self.evicted_capacity,
            Reason::Flush => &self.evicted_flush,
        };
        c.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.load(Relaxed),
            partitions: self.partitions.load(Relaxed),
            generations: self.generations.load(Relaxed),
            memory_bytes: self.memory_bytes.load(Relaxed),
            evictions: Evictions {
                ttl: self.evicted_ttl.load(Relaxed),
                capacity: self.evicted_capacity.load(Relaxed),
                flush: self.evicted_flush.load(Relaxed),
            },
            store_dropped: self.store_dropped.load(Relaxed),
            refused: self.refused.load(Relaxed),
            stored: self.stored.load(Relaxed),
            build_backlog: self.build_backlog.load(Relaxed),
        }
    }
}
