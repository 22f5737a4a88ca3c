//! Flat storage: a generation's vectors in immutable, contiguous chunks, and the brute-force scan.
//!
//! A generation's rows live in [`Chunk`]s of [`CHUNK_ROWS`] rows; every chunk but the last is full,
//! so row `r` is `chunks[r / CHUNK_ROWS]`, slot `r % CHUNK_ROWS`. Chunks are never changed once
//! published: the indexer appends by copying the last, partial chunk (at most `CHUNK_ROWS - 1` rows)
//! into a new one, so a republish costs at most one chunk's copy, and the full chunks are shared by
//! every view of the generation and by its frozen graph.
//!
//! Each chunk also holds the rows' sign codes (`bits.rs`): a scan longer than `2 × RERANK` rows ranks
//! rows by code and computes exact similarities for the nearest `RERANK` only.

use std::sync::Arc;

use super::bits::{self, hamming, Nearest, Query, RERANK};
use super::vector::{clamp_similarity, dot, Unit};
use crate::cache::Entry;

/// Rows per chunk: 64 rows of 512 f32 = 128 KiB, big enough that the scan runs over long contiguous
/// runs, small enough that the copy-on-write of a partial chunk stays cheap.
pub(crate) const CHUNK_ROWS: usize = 64;

/// The most candidates one search keeps.
pub(crate) const K_MAX: usize = 8;

/// Up to [`CHUNK_ROWS`] vectors (contiguous, row-major) and their entries.
pub(crate) struct Chunk {
    data: Box<[f32]>,
    /// Sign codes, `bits::words(dims)` words per row.
    codes: Box<[u64]>,
    entries: Box<[Arc<Entry>]>,
}

impl Chunk {
    /// Rows held.
    #[inline]
    pub(crate) fn rows(&self) -> usize {
        self.entries.len()
    }

    /// Row `i`'s vector (`dims` wide), if it exists.
    #[inline]
    pub(crate) fn row(&self, i: usize, dims: usize) -> Option<&[f32]> {
        self.data.get(i * dims..(i + 1) * dims)
    }

    /// Row `i`'s sign code (`words` wide), if it exists.
    #[inline]
    pub(crate) fn code(&self, i: usize, words: usize) -> Option<&[u64]> {
        self.codes.get(i * words..(i + 1) * words)
    }

    /// Row `i`'s entry, if it exists.
    #[inline]
    pub(crate) fn entry(&self, i: usize) -> Option<&Arc<Entry>> {
        self.entries.get(i)
    }

    /// Bytes of vector data (and codes) held.
    pub(crate) fn vector_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>() + self.codes.len() * 8
    }
}

/// Appends `rows` to `chunks` (all of `dims` dimensions): the last, partial chunk is replaced by a
/// copy with rows added; full chunks are untouched and stay shared.
pub(crate) fn append(chunks: &mut Vec<Arc<Chunk>>, dims: usize, rows: Vec<(Unit, Arc<Entry>)>) {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let w = bits::words(dims);
        let (mut data, mut codes, mut entries) = match chunks.last() {
            Some(last) if last.rows() < CHUNK_ROWS => {
                let mut data = Vec::with_capacity(CHUNK_ROWS * dims);
                data.extend_from_slice(&last.data);
                let mut codes = Vec::with_capacity(CHUNK_ROWS * w);
                codes.extend_from_slice(&last.codes);
                let mut entries = Vec::with_capacity(CHUNK_ROWS);
                entries.extend(last.entries.iter().cloned());
                chunks.pop();
                (data, codes, entries)
            }
            _ => (Vec::new(), Vec::new(), Vec::new()),
        };
        while entries.len() < CHUNK_ROWS {
            let Some((v, e)) = rows.next() else { break };
            data.extend_from_slice(v.as_slice());
            let at = codes.len();
            codes.resize(at + w, 0);
            bits::sign_code(v.as_slice(), &mut codes[at..]);
            entries.push(e);
        }
        chunks.push(Arc::new(Chunk {
            data: data.into_boxed_slice(),
            codes: codes.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
        }));
    }
}

/// Row `r` of a chunk list.
#[inline]
pub(crate) fn row(chunks: &[Arc<Chunk>], r: usize, dims: usize) -> Option<&[f32]> {
    chunks.get(r / CHUNK_ROWS)?.row(r % CHUNK_ROWS, dims)
}

/// Row `r`'s sign code in a chunk list.
#[inline]
pub(crate) fn code(chunks: &[Arc<Chunk>], r: usize, words: usize) -> Option<&[u64]> {
    chunks.get(r / CHUNK_ROWS)?.code(r % CHUNK_ROWS, words)
}

/// Row `r`'s entry in a chunk list.
#[inline]
pub(crate) fn entry(chunks: &[Arc<Chunk>], r: usize) -> Option<&Arc<Entry>> {
    chunks.get(r / CHUNK_ROWS)?.entry(r % CHUNK_ROWS)
}

/// Scans rows `from..` of `chunks` against `q` into `top`: exactly when there are few rows, else
/// through the sign-code prefilter (the [`RERANK`] nearest codes get an exact similarity).
pub(crate) fn scan(chunks: &[Arc<Chunk>], dims: usize, from: usize, q: &Query, top: &mut TopK) {
    let rows = chunks.iter().map(|c| c.rows()).sum::<usize>();
    if rows.saturating_sub(from) <= 2 * RERANK {
        scan_exact(chunks, dims, from, q.v, top);
        return;
    }
    let w = bits::words(dims);
    let code = q.code();
    let mut near = Nearest::new();
    for (ci, chunk) in chunks.iter().enumerate().skip(from / CHUNK_ROWS) {
        let base = ci * CHUNK_ROWS;
        let start = from.saturating_sub(base);
        for (i, c) in chunk.codes.chunks_exact(w).enumerate().skip(start) {
            let d = hamming(code, c);
            if d < near.bar() {
                near.offer(d, (base + i) as u32);
            }
        }
    }
    for r in near.rows() {
        if let Some(v) = row(chunks, r as usize, dims) {
            top.push(dot(q.v, v), r);
        }
    }
}

/// Scans rows `from..` exactly (f32 dot products of every row).
pub(crate) fn scan_exact(
    chunks: &[Arc<Chunk>],
    dims: usize,
    from: usize,
    q: &[f32],
    top: &mut TopK,
) {
    for (ci, chunk) in chunks.iter().enumerate().skip(from / CHUNK_ROWS) {
        let base = ci * CHUNK_ROWS;
        let start = from.saturating_sub(base);
        // `chunks_exact` over the contiguous block: no per-row bounds checks in the hot loop.
        for (i, v) in chunk.data.chunks_exact(dims).enumerate().skip(start) {
            top.push(dot(q, v), (base + i) as u32);
        }
    }
}

/// The best `k` (≤ [`K_MAX`]) rows seen, by similarity, best first; rows under `floor` are ignored.
/// Ties go to the higher row (the newer store). Fixed-size: a search allocates nothing for it.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    items: [(f32, u32); K_MAX],
    len: usize,
    k: usize,
    floor: f32,
}

impl TopK {
    /// Keeps up to `k` (clamped to `1..=K_MAX`) rows with similarity at least `floor`.
    pub(crate) fn new(k: usize, floor: f32) -> Self {
        TopK {
            items: [(f32::NEG_INFINITY, 0); K_MAX],
            len: 0,
            k: k.clamp(1, K_MAX),
            floor,
        }
    }

    /// Empties it, keeping `k`, with a new floor.
    pub(crate) fn reset(&mut self, floor: f32) {
        self.len = 0;
        self.floor = floor;
    }

    /// Offers a row with raw dot `sim` (clamped here).
    #[inline]
    pub(crate) fn push(&mut self, sim: f32, row: u32) {
        if sim.is_nan() || sim < self.floor {
            return;
        }
        if self.len == self.k {
            let (ls, lr) = self.items[self.len - 1];
            if sim < ls || (sim == ls && row <= lr) {
                return;
            }
            self.len -= 1;
        }
        let mut i = self.len;
        while i > 0 {
            let (s, r) = self.items[i - 1];
            if s > sim || (s == sim && r > row) {
                break;
            }
            self.items[i] = self.items[i - 1];
            i -= 1;
        }
        self.items[i] = (sim, row);
        self.len += 1;
    }

    /// The rows kept, best first, with similarities clamped to `[-1, 1]`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (f32, u32)> + '_ {
        self.items[..self.len]
            .iter()
            .map(|&(s, r)| (clamp_similarity(s), r))
    }

    /// How many rows it keeps at most.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Rows kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::index::vector::unit;

    fn entry(n: u64) -> Arc<Entry> {
        Arc::new(Entry {
            answer: bytes::Bytes::new(),
            text: n.to_string().into(),
            created_ms: n,
            expires_ms: u64::MAX,
            tokens: 0,
        })
    }

    #[test]
    fn append_copies_only_the_partial_chunk_and_rows_stay_addressable() {
        let dims = 3;
        let mut chunks = Vec::new();
        let mut next = 0u64;
        for batch in [1usize, 62, 1, 1, 130, 5] {
            let rows = (0..batch)
                .map(|_| {
                    next += 1;
                    (
                        unit(vec![next as f32, 1.0, 0.0], dims).unwrap(),
                        entry(next),
                    )
                })
                .collect();
            let before: Vec<_> = chunks.iter().map(Arc::as_ptr).collect();
            append(&mut chunks, dims, rows);
            // Every previously full chunk is the same allocation.
            for (i, p) in before.iter().enumerate() {
                if chunks[i].rows() == CHUNK_ROWS && i + 1 < before.len() {
                    assert_eq!(Arc::as_ptr(&chunks[i]), *p);
                }
            }
        }
        let total: usize = chunks.iter().map(|c| c.rows()).sum();
        assert_eq!(total as u64, next);
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.rows() == CHUNK_ROWS));
        for r in 0..total {
            assert_eq!(entry_of(&chunks, r), r as u64 + 1);
            assert!(row(&chunks, r, dims).is_some());
        }
        assert!(row(&chunks, total, dims).is_none());
    }

    fn entry_of(chunks: &[Arc<Chunk>], r: usize) -> u64 {
        super::entry(chunks, r).map(|e| e.created_ms).unwrap_or(0)
    }

    #[test]
    fn topk_keeps_best_prefers_newer_on_ties_and_respects_floor() {
        let mut t = TopK::new(3, 0.5);
        for (s, r) in [(0.9, 1), (0.4, 2), (0.95, 3), (0.9, 4), (0.7, 5), (0.9, 6)] {
            t.push(s, r);
        }
        let got: Vec<_> = t.iter().collect();
        assert_eq!(got, vec![(0.95, 3), (0.9, 6), (0.9, 4)]);
        t.reset(2.0);
        t.push(1.5, 1);
        assert_eq!(t.len(), 0);
        t.reset(0.0);
        t.push(1.000_001, 9);
        assert_eq!(t.iter().next(), Some((1.0, 9)));
        t.push(f32::NAN, 10);
        assert_eq!(t.len(), 1);
    }
}
