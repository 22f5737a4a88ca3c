//! [`Segment`]: one generation's worth of vectors outside a cache, searchable the three ways the index
//! can search it. The benchmarks use it to find the flat/graph crossover and to compare the frozen
//! graph with hnsw_rs's own search on the same graph.

use std::sync::Arc;

use super::bits::Query;
use super::flat::{self, Chunk, TopK};
use super::graph::{Graph, Traverse};
use super::hnsw::Builder;
use super::params::IndexParams;
use super::vector::Unit;
use crate::cache::Entry;

/// Vectors in flat chunks, optionally with an hnsw_rs graph and its frozen copy.
pub struct Segment {
    dims: usize,
    chunks: Vec<Arc<Chunk>>,
    rows: usize,
    builder: Option<Builder>,
    graph: Option<Graph>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("dims", &self.dims)
            .field("rows", &self.rows)
            .field("graph", &self.graph.is_some())
            .finish()
    }
}

impl Segment {
    /// Stores `vectors` (row `i` = `vectors[i]`; vectors of another dimension than `p.dims` are
    /// skipped) and, if `graph`, builds an hnsw_rs graph with `p`'s `m` / `ef_construction`
    /// (sequential inserts, as the indexer does) and freezes it.
    pub fn build(p: &IndexParams, vectors: &[Unit], graph: bool) -> Segment {
        let p = p.sanitized();
        let empty = Arc::new(Entry {
            answer: bytes::Bytes::new(),
            text: "".into(),
            created_ms: 0,
            expires_ms: u64::MAX,
            tokens: 0,
        });
        let rows: Vec<(Unit, Arc<Entry>)> = vectors
            .iter()
            .filter(|v| v.dims() == p.dims)
            .map(|v| (v.clone(), Arc::clone(&empty)))
            .collect();
        let n = rows.len();
        let mut chunks = Vec::new();
        flat::append(&mut chunks, p.dims, rows);
        let (builder, frozen) = if graph {
            let mut b = Builder::new(&p, n);
            while b.insert_next(&chunks, p.dims) {}
            let g = b.freeze(&chunks, p.dims);
            (Some(b), Some(g))
        } else {
            (None, None)
        };
        Segment {
            dims: p.dims,
            chunks,
            rows: n,
            builder,
            graph: frozen,
        }
    }

    /// Rows stored.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The best row by the cache's flat scan (sign-code prefilter, exact re-rank): `(row, similarity)`.
    pub fn search_flat(&self, q: &Unit) -> Option<(usize, f32)> {
        let mut top = TopK::new(1, -1.0);
        flat::scan(
            &self.chunks,
            self.dims,
            0,
            &Query::new(q.as_slice()),
            &mut top,
        );
        best(&top)
    }

    /// The best row by brute force over every f32 row: `(row, similarity)`.
    pub fn search_exact(&self, q: &Unit) -> Option<(usize, f32)> {
        let mut top = TopK::new(1, -1.0);
        flat::scan_exact(&self.chunks, self.dims, 0, q.as_slice(), &mut top);
        best(&top)
    }

    /// The best row through the frozen graph with beam `ef`, walking by `how` (`None` without a
    /// graph).
    pub fn search_graph(&self, q: &Unit, ef: usize, how: Traverse) -> Option<(usize, f32)> {
        let mut top = TopK::new(1, -1.0);
        let query = Query::new(q.as_slice());
        self.graph.as_ref()?.search(&query, ef, how, &mut top);
        best(&top)
    }

    /// The best row through hnsw_rs's own `search` with beam `ef` (`None` without a graph).
    pub fn search_hnsw_rs(&self, q: &Unit, ef: usize) -> Option<(usize, f32)> {
        self.builder
            .as_ref()?
            .search(q.as_slice(), 1, ef)
            .first()
            .copied()
    }

    /// Estimated bytes per row as the cache would hold it: the vector, the entry pointer and the
    /// frozen links (the hnsw_rs builder is dropped once a generation is complete).
    pub fn bytes_per_row(&self) -> f64 {
        let vectors: usize = self.chunks.iter().map(|c| c.vector_bytes()).sum();
        let links = self.graph.as_ref().map_or(0, Graph::link_bytes);
        let ptrs = self.rows * std::mem::size_of::<Arc<Entry>>();
        (vectors + links + ptrs) as f64 / self.rows.max(1) as f64
    }
}

fn best(top: &TopK) -> Option<(usize, f32)> {
    top.iter().next().map(|(s, r)| (r as usize, s))
}
