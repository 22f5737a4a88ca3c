//! The wrapper over hnsw_rs: a private builder the indexer inserts into, and the copy of its links
//! into a [`Graph`] that readers search.
//!
//! Rules this file keeps:
//! - only vectors of a generation's chunks go in, and they are [`super::Unit`]s (validated);
//! - the distance is [`ClampedDot`] (never NaN, never negative), never hnsw_rs's `DistDot` or
//!   `DistCosine`;
//! - `m`, `ef_construction` and the layer count are clamped before `Hnsw::new` (it exits the process
//!   for `m > 256`);
//! - a builder is only ever touched by the thread that owns it (the indexer): readers never see one,
//!   so its internal parking_lot locks are never contended;
//! - dropping a builder runs a rayon `into_par_iter` (hnsw_rs's `Drop for PointIndexation`); the
//!   owner decides on which pool (see `indexer.rs`).

use std::sync::Arc;

use hnsw_rs::hnsw::{Hnsw, Neighbour};

use super::flat::{row, Chunk};
use super::graph::{Graph, Layer};
use super::params::{IndexParams, MAX_EF, MAX_M};
use super::vector::ClampedDot;

/// hnsw_rs's layer cap is 16; with `m >= 2` more than 12 levels has probability ~2^-12 per point.
const MAX_LAYERS: usize = 16;

/// An hnsw_rs graph being built over rows `0..inserted()` of one generation.
pub(crate) struct Builder {
    hnsw: Hnsw<'static, f32, ClampedDot>,
    inserted: usize,
}

impl Builder {
    /// A new, empty builder sized for about `expected` rows.
    pub(crate) fn new(p: &IndexParams, expected: usize) -> Self {
        let m = p.m.clamp(2, MAX_M);
        let efc = p.ef_construction.clamp(1, MAX_EF);
        // `max_elements` only pre-sizes hnsw_rs's layer tables; cap it so a huge cap costs nothing.
        let hint = expected.clamp(1, 1 << 16);
        Builder {
            hnsw: Hnsw::new(m, hint, MAX_LAYERS, efc, ClampedDot),
            inserted: 0,
        }
    }

    /// Rows inserted so far (always the first ones: rows go in in order).
    pub(crate) fn inserted(&self) -> usize {
        self.inserted
    }

    /// Inserts the next row (`inserted()`) from `chunks`; false if there is none.
    pub(crate) fn insert_next(&mut self, chunks: &[Arc<Chunk>], dims: usize) -> bool {
        let Some(v) = row(chunks, self.inserted, dims) else {
            return false;
        };
        self.hnsw.insert_slice((v, self.inserted));
        self.inserted += 1;
        true
    }

    /// hnsw_rs's own search (for the benchmarks' comparison): `(row, similarity)` best first.
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let found: Vec<Neighbour> = self.hnsw.search(q, k.max(1), ef.max(k).max(1));
        found
            .into_iter()
            .map(|n| (n.d_id, (1.0 - n.distance).clamp(-1.0, 1.0)))
            .collect()
    }

    /// Copies the links built so far into an immutable [`Graph`] over rows `0..inserted()`.
    ///
    /// Reads hnsw_rs's structures through its public accessors (each takes a read lock on a lock
    /// only this thread uses). Links to rows that are not (yet) in the graph are dropped.
    pub(crate) fn freeze(&self, chunks: &[Arc<Chunk>], dims: usize) -> Graph {
        let n = self.inserted;
        if n == 0 {
            // hnsw_rs's point iterator unwraps the entry point: never iterate an empty graph.
            return Graph {
                n: 0,
                dims,
                chunks: Vec::new(),
                entry: 0,
                l0_offs: Box::new([0]),
                l0_adj: Box::new([]),
                upper: Box::new([]),
            };
        }
        let pi = self.hnsw.get_point_indexation();
        let top = usize::from(pi.get_max_level_observed()).min(MAX_LAYERS - 1);
        let mut l0: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut upper: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top];
        let valid = |id: usize| (id < n).then_some(id as u32);
        for point in pi {
            let Some(id) = valid(point.get_origin_id()) else {
                continue;
            };
            let level = usize::from(point.get_point_id().0).min(top);
            let hood = point.get_neighborhood_id();
            for (l, links) in hood.iter().enumerate().take(level + 1) {
                let ids: Vec<u32> = links.iter().filter_map(|nb| valid(nb.d_id)).collect();
                match l {
                    0 => l0[id as usize] = ids,
                    _ => upper[l - 1].push((id, ids)),
                }
            }
        }
        // The entry point: hnsw_rs's is the first point that reached the top level.
        let entry = pi
            .get_layer_iterator(top)
            .find_map(|p| valid(p.get_origin_id()))
            .unwrap_or(0);
        let (l0_offs, l0_adj) = csr(l0.iter().map(Vec::as_slice));
        let upper = upper
            .into_iter()
            .map(|mut nodes| {
                nodes.sort_unstable_by_key(|(id, _)| *id);
                let ids = nodes.iter().map(|(id, _)| *id).collect();
                let (offs, adj) = csr(nodes.iter().map(|(_, l)| l.as_slice()));
                Layer { ids, offs, adj }
            })
            .collect();
        Graph {
            n,
            dims,
            chunks: chunks.to_vec(),
            entry,
            l0_offs,
            l0_adj,
            upper,
        }
    }

    /// Rough bytes held: hnsw_rs copies each vector and keeps `Arc`ed links and 16 layer `Vec`s per
    /// point (measured ~3.1 KB per point at m = 16 on top of the vector, semantic-cache notes §2.6).
    pub(crate) fn approx_bytes(&self, dims: usize) -> usize {
        self.inserted * (dims * 4 + 3_100)
    }
}

/// Offsets and concatenated links of a sequence of link lists.
fn csr<'a>(lists: impl Iterator<Item = &'a [u32]>) -> (Box<[u32]>, Box<[u32]>) {
    let mut offs = vec![0u32];
    let mut adj = Vec::new();
    for l in lists {
        adj.extend_from_slice(l);
        offs.push(adj.len() as u32);
    }
    (offs.into_boxed_slice(), adj.into_boxed_slice())
}
