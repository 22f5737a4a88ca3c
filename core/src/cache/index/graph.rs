//! A frozen HNSW graph: hnsw_rs's links copied into flat arrays, searched without locks and without
//! allocating.
//!
//! hnsw_rs builds the graph (the expensive, quality-critical part). Its own search read-locks every
//! visited point's neighbour list (parking_lot), allocates a visited `HashMap` and heaps of `Arc`s per
//! call, and was measured slower than this copy at every size here (BENCHMARKS.md). So the indexer
//! copies the links of a graph nobody else can see into CSR arrays of `u32` row ids, readers search
//! that copy, and the vectors are read straight from the generation's chunks (shared, not copied).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::bits::{self, Query};
use super::flat::{self, row, Chunk, TopK};
use super::vector::dot;

/// One upper layer: the rows present there (sorted) and their links.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    pub(crate) ids: Box<[u32]>,
    pub(crate) offs: Box<[u32]>,
    pub(crate) adj: Box<[u32]>,
}

impl Layer {
    fn links(&self, id: u32) -> &[u32] {
        match self.ids.binary_search(&id) {
            Ok(i) => links(&self.offs, &self.adj, i),
            Err(_) => &[],
        }
    }
}

fn links<'a>(offs: &[u32], adj: &'a [u32], i: usize) -> &'a [u32] {
    match (offs.get(i), offs.get(i + 1)) {
        (Some(&a), Some(&b)) => adj.get(a as usize..b as usize).unwrap_or(&[]),
        _ => &[],
    }
}

/// An immutable HNSW graph over rows `0..n` of a generation.
pub(crate) struct Graph {
    pub(crate) n: usize,
    pub(crate) dims: usize,
    pub(crate) chunks: Vec<Arc<Chunk>>,
    pub(crate) entry: u32,
    /// Layer 0: links of every row, CSR.
    pub(crate) l0_offs: Box<[u32]>,
    pub(crate) l0_adj: Box<[u32]>,
    /// Layers 1.. (index 0 here is layer 1).
    pub(crate) upper: Box<[Layer]>,
}

/// A candidate in the beam: similarity and row, ordered by similarity (total order, NaN-proof).
#[derive(Clone, Copy, PartialEq)]
struct Cand(f32, u32);

impl Eq for Cand {}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Per-thread search state, reused: visited stamps and the two heaps.
#[derive(Default)]
struct Scratch {
    stamps: Vec<u32>,
    stamp: u32,
    cands: BinaryHeap<Cand>,
    best: BinaryHeap<Reverse<Cand>>,
}

impl Scratch {
    fn begin(&mut self, n: usize) {
        if self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.stamp = 1;
        }
        self.cands.clear();
        self.best.clear();
    }

    /// Marks `id` visited; false if it already was (or is out of range).
    #[inline]
    fn visit(&mut self, id: u32) -> bool {
        match self.stamps.get_mut(id as usize) {
            Some(s) if *s != self.stamp => {
                *s = self.stamp;
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What a graph search compares while it walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traverse {
    /// Exact f32 similarities at every step (2 KiB read per visited row at 512-d).
    Exact,
    /// Hamming distances of the sign codes (64 B per visited row at 512-d); the `ef` rows found are
    /// then re-ranked by their exact similarity, which is what is reported.
    Codes,
}

/// How the cache walks its graphs (the benchmarks measure both; BENCHMARKS.md).
pub(crate) const CACHE_TRAVERSE: Traverse = Traverse::Codes;

impl Graph {
    #[inline]
    fn sim(&self, q: &[f32], id: u32) -> f32 {
        match row(&self.chunks, id as usize, self.dims) {
            Some(v) => dot(q, v),
            None => f32::NEG_INFINITY,
        }
    }

    /// Searches for `q`'s nearest rows with a beam of `ef` on layer 0, offering them to `top` with
    /// their exact similarity.
    pub(crate) fn search(&self, q: &Query, ef: usize, how: Traverse, top: &mut TopK) {
        if self.n == 0 {
            return;
        }
        let words = bits::words(self.dims);
        let code = q.code();
        match how {
            Traverse::Exact => self.walk(|id| self.sim(q.v, id), ef, top, |_, s| s),
            // Higher is better for the walk: the negated distance.
            Traverse::Codes => self.walk(
                |id| match flat::code(&self.chunks, id as usize, words) {
                    Some(c) => -(bits::hamming(code, c) as f32),
                    None => f32::NEG_INFINITY,
                },
                ef,
                top,
                |id, _| self.sim(q.v, id),
            ),
        }
    }

    /// The walk: greedy descent through the upper layers by `score`, then a beam of `ef` on layer 0;
    /// each row of the beam goes to `top` with the similarity `exact(row, score)` gives.
    fn walk(
        &self,
        score: impl Fn(u32) -> f32,
        ef: usize,
        top: &mut TopK,
        exact: impl Fn(u32, f32) -> f32,
    ) {
        let mut ep = self.entry;
        let mut ep_score = score(ep);
        for layer in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                for &nb in layer.links(ep) {
                    let s = score(nb);
                    if s > ep_score {
                        (ep, ep_score, moved) = (nb, s, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let ef = ef.max(top.k());
        let mut run = |s: &mut Scratch| {
            self.beam(&score, ef, Cand(ep_score, ep), s);
            for Reverse(Cand(sc, id)) in s.best.drain() {
                top.push(exact(id, sc), id);
            }
        };
        // A re-entrant call (impossible today: nothing calls back out during a search) would find the
        // scratch borrowed; it then pays for a fresh one instead of panicking.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => run(&mut s),
            Err(_) => run(&mut Scratch::default()),
        });
    }

    /// Layer 0: the `ef` best rows by `score` reachable from `start`, left in `s.best`.
    fn beam(&self, score: &impl Fn(u32) -> f32, ef: usize, start: Cand, s: &mut Scratch) {
        s.begin(self.n);
        s.visit(start.1);
        s.cands.push(start);
        s.best.push(Reverse(start));
        while let Some(c) = s.cands.pop() {
            if let Some(Reverse(worst)) = s.best.peek() {
                if s.best.len() >= ef && c.0 < worst.0 {
                    break;
                }
            }
            for &nb in links(&self.l0_offs, &self.l0_adj, c.1 as usize) {
                if !s.visit(nb) {
                    continue;
                }
                let sc = score(nb);
                let worst = s.best.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
                if s.best.len() < ef || sc > worst {
                    s.cands.push(Cand(sc, nb));
                    s.best.push(Reverse(Cand(sc, nb)));
                    if s.best.len() > ef {
                        s.best.pop();
                    }
                }
            }
        }
    }

    /// Bytes held by the links (the vectors belong to the chunks).
    pub(crate) fn link_bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .iter()
            .map(|l| l.ids.len() + l.offs.len() + l.adj.len())
            .sum();
        (self.l0_offs.len() + self.l0_adj.len() + upper) * std::mem::size_of::<u32>()
    }
}
