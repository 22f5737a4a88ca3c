//! The semantic cache's index: an exact map and per-partition rings of vector generations, shared by
//! every core, written by one indexer thread.
//!
//! # Shape
//! - **Lookups (any core, lock-free):** the exact layer is a `crossbeam_skiplist::SkipMap<u128, _>`
//!   read with an expiry and flush-epoch check. The semantic layer reads the partition registry (a
//!   `SkipMap<u128, ArcSwap<PartitionView>>`), loads the partition's published generations (newest
//!   first), and searches each: a flat scan of contiguous chunks for small ones (rows ranked by a
//!   one-bit-per-dimension sign code, the 32 nearest re-ranked by their exact f32 similarity), a
//!   frozen HNSW graph walked on the same codes, its beam re-ranked exactly (plus a scan of the rows
//!   it does not cover yet), for big ones. Every similarity handed out is the exact f32 one. Expired, flushed and
//!   `accept`-rejected candidates are skipped; the best one at or above the threshold wins.
//! - **Stores (any core, never blocking):** [`Cache::submit`] pushes onto the core's own bounded
//!   `crossbeam::queue::ArrayQueue`; a full queue drops the job and counts it.
//! - **The indexer (one thread, the only writer):** drains the queues in batches, appends to the
//!   partition's open generation (copy-on-write of one partial chunk), evicts, builds graphs in
//!   5 ms slices, and republishes whole immutable views through `ArcSwap`. It sleeps in
//!   `park_timeout` and a submit unparks it.
//!
//! # Generations
//! A generation holds at most `max_entries / generations` stores and is sealed after
//! `ttl / generations`. Capacity (all partitions together) evicts the oldest generation anywhere,
//! before the store that needs the room becomes visible; TTL reclaims a generation once its last entry
//! expired (each entry's own expiry is checked on read); a flush bumps an epoch that hides everything
//! older at once, and the indexer reclaims it. hnsw_rs has no delete: generations are how entries go.
//!
//! # hnsw_rs
//! hnsw_rs builds the graphs, privately, on the indexer thread; readers search a frozen copy of the
//! links (`graph.rs`). hnsw_rs's own search would be safe on a graph nobody writes any more (it only
//! takes parking_lot read locks then), but it allocates per call and was measured 2–4.5× slower than
//! the frozen copy on the same graph (BENCHMARKS.md), so the lookup path never calls it. Its hazards are fenced: every vector is a
//! validated [`Unit`], the distance is our clamped dot (never NaN, never negative), its parameters are
//! clamped before `Hnsw::new`, and its `Drop` (rayon) runs on a private one-thread pool of the indexer.

mod bits;
mod cache;
mod flat;
mod generation;
mod graph;
mod hnsw;
mod indexer;
mod params;
mod probe;
mod stats;
mod vector;

#[cfg(test)]
mod tests;

pub use cache::{Cache, Hit, StoreJob, SEARCH_K};
pub use graph::Traverse;
pub use params::{
    IndexParams, ParamsError, DEFAULT_EF_SEARCH, DEFAULT_HNSW_MIN_ENTRIES, MAX_EF, MAX_ENTRIES,
    MAX_GENERATIONS, MAX_M,
};
pub use probe::Segment;
pub use stats::{CacheStats, Evictions};
pub use vector::{dot, similarity, unit, ClampedDot, Unit, VectorError, MAX_DIMS};
