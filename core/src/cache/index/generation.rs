//! Generations: what readers see of one (immutable [`GenView`]) and what the indexer keeps to build
//! the next view ([`GenState`]).
//!
//! A partition is a ring of generations, newest first. Each generation is a run of stores: its
//! vectors in flat chunks, its exact keys, the latest expiry among its entries. Memory is reclaimed a
//! generation at a time (capacity: the oldest anywhere; TTL: once its last entry expired; flush:
//! all). Past `hnsw_min_entries` vectors the indexer builds an hnsw_rs graph for it in the background
//! and publishes frozen copies of it; rows the frozen graph does not cover yet are scanned.

use std::sync::Arc;

use super::bits::Query;
use super::flat::{self, Chunk, TopK};
use super::graph::{Graph, CACHE_TRAVERSE};
use super::hnsw::Builder;
use super::vector::Unit;
use crate::cache::Entry;

/// One generation as published: never changed, replaced whole.
pub(crate) struct GenView {
    /// Flush epoch it was created in; a flush makes every older generation invisible at once.
    pub(crate) epoch: u64,
    /// Latest `expires_ms` of its entries: past it, nothing here can be served.
    pub(crate) max_expires_ms: u64,
    /// Stores it holds (with or without a vector); the tests count what readers can reach by it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) entries: usize,
    pub(crate) dims: usize,
    pub(crate) chunks: Vec<Arc<Chunk>>,
    /// Rows held (`chunks` rows).
    pub(crate) rows: usize,
    /// A frozen graph over rows `0..graph.n`; later rows are scanned.
    pub(crate) graph: Option<Arc<Graph>>,
}

impl GenView {
    /// Offers this generation's nearest rows to `q` to `top`.
    pub(crate) fn search(&self, q: &Query, ef: usize, top: &mut TopK) {
        let covered = match &self.graph {
            Some(g) => {
                g.search(q, ef, CACHE_TRAVERSE, top);
                g.n
            }
            None => 0,
        };
        if covered < self.rows {
            flat::scan(&self.chunks, self.dims, covered, q, top);
        }
    }

    /// Row `r`'s entry.
    pub(crate) fn entry(&self, r: u32) -> Option<&Arc<Entry>> {
        flat::entry(&self.chunks, r as usize)
    }
}

/// A partition's published generations, newest first.
#[derive(Default)]
pub(crate) struct PartitionView {
    pub(crate) gens: Vec<Arc<GenView>>,
}

/// The indexer's side of one generation.
pub(crate) struct GenState {
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) opened_ms: u64,
    /// No more stores go here (full, or older than the rotation span).
    pub(crate) sealed: bool,
    /// Stores applied here (with or without a vector): what capacity counts.
    pub(crate) entries: usize,
    pub(crate) max_expires_ms: u64,
    pub(crate) chunks: Vec<Arc<Chunk>>,
    pub(crate) rows: usize,
    /// Rows applied but not yet in `chunks` (moved there at the next publish, one copy per batch).
    pub(crate) staged: Vec<(Unit, Arc<Entry>)>,
    /// Exact keys stored here, removed from the exact map when the generation goes (if still theirs).
    pub(crate) exact: Vec<(u128, Arc<Entry>)>,
    /// Bytes of answers and texts of the entries.
    pub(crate) payload_bytes: usize,
    pub(crate) builder: Option<Builder>,
    pub(crate) graph: Option<Arc<Graph>>,
    /// The last published view; `None` when something changed since.
    pub(crate) view: Option<Arc<GenView>>,
    /// What [`GenState::memory_bytes`] said when the indexer last added it to its total.
    pub(crate) mem_counted: usize,
}

/// Estimated bytes of an entry besides its vector: answer, text, the struct and the `Arc` counts.
pub(crate) fn entry_bytes(e: &Entry) -> usize {
    e.answer.len() + e.text.len() + std::mem::size_of::<Entry>() + 16
}

/// Estimated bytes of one exact-map node (key, epoch, `Arc`, skiplist tower).
pub(crate) const EXACT_NODE_BYTES: usize = 80;

impl GenState {
    pub(crate) fn new(seq: u64, epoch: u64, now_ms: u64) -> Self {
        GenState {
            seq,
            epoch,
            opened_ms: now_ms,
            sealed: false,
            entries: 0,
            max_expires_ms: 0,
            chunks: Vec::new(),
            rows: 0,
            staged: Vec::new(),
            exact: Vec::new(),
            payload_bytes: 0,
            builder: None,
            graph: None,
            view: None,
            mem_counted: 0,
        }
    }

    /// Records one store (its vector is staged until the next publish).
    pub(crate) fn add(&mut self, exact: Option<u128>, vector: Option<Unit>, entry: Arc<Entry>) {
        self.entries += 1;
        self.max_expires_ms = self.max_expires_ms.max(entry.expires_ms);
        self.payload_bytes += entry_bytes(&entry);
        if let Some(k) = exact {
            self.exact.push((k, Arc::clone(&entry)));
        }
        if let Some(v) = vector {
            self.staged.push((v, entry));
        }
        self.view = None;
    }

    /// Moves staged rows into the chunks.
    pub(crate) fn flush_staged(&mut self, dims: usize) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        self.rows += staged.len();
        flat::append(&mut self.chunks, dims, staged);
        self.view = None;
    }

    /// Vectors held, staged ones included.
    pub(crate) fn vectors(&self) -> usize {
        self.rows + self.staged.len()
    }

    /// The view to publish (cached until the next change).
    pub(crate) fn view(&mut self, dims: usize) -> Arc<GenView> {
        self.flush_staged(dims);
        if let Some(v) = &self.view {
            return Arc::clone(v);
        }
        let v = Arc::new(GenView {
            epoch: self.epoch,
            max_expires_ms: self.max_expires_ms,
            entries: self.entries,
            dims,
            chunks: self.chunks.clone(),
            rows: self.rows,
            graph: self.graph.clone(),
        });
        self.view = Some(Arc::clone(&v));
        v
    }

    /// Rows waiting to go into the builder (0 without a builder).
    pub(crate) fn build_backlog(&self) -> usize {
        self.builder
            .as_ref()
            .map_or(0, |b| self.rows.saturating_sub(b.inserted()))
    }

    /// Estimated bytes held by this generation (vectors, links, builder, entries, exact keys).
    pub(crate) fn memory_bytes(&self, dims: usize) -> usize {
        let vectors: usize = self.chunks.iter().map(|c| c.vector_bytes()).sum::<usize>()
            + self.staged.len() * dims * 4
            + self.vectors() * std::mem::size_of::<Arc<Entry>>();
        let graph = self.graph.as_ref().map_or(0, |g| g.link_bytes());
        let builder = self.builder.as_ref().map_or(0, |b| b.approx_bytes(dims));
        vectors + graph + builder + self.payload_bytes + self.exact.len() * EXACT_NODE_BYTES
    }
}
