//! Sign codes: one bit per dimension (64 bytes for a 512-d vector), the prefilter of the flat scan.
//!
//! On this VM a flat scan of f32 rows that are not in cache is memory-bound (0.3–0.8 µs per 2 KiB
//! row at 16–32k rows, BENCHMARKS.md); the Hamming distance of two 512-bit codes costs ~10–20 ns. So a long scan ranks
//! every row by its code, keeps the [`RERANK`] nearest, and computes the exact f32 similarity of those
//! only: the similarity reported is always exact, the prefilter only decides which rows get that far.
//! Graph searches walk on the same codes (`graph.rs`).
//! The angle between two vectors is `π · hamming / dims` in expectation (sign random projection on
//! the coordinate axes), so a near-duplicate (cosine ≥ 0.9, ≤ 26°) sits ~60 bits away at 512-d while
//! unrelated rows sit ~150–256 bits away; a recall test and the bench's recall guard the choice.

use super::vector::MAX_DIMS;

/// Rows whose exact similarity is computed after the prefilter.
pub(crate) const RERANK: usize = 32;

/// Words of a code at the largest dimension.
pub(crate) const MAX_WORDS: usize = MAX_DIMS / 64;

/// Words per code for `dims` dimensions.
#[inline]
pub(crate) fn words(dims: usize) -> usize {
    dims.div_ceil(64)
}

/// Writes `v`'s sign code (bit i = component i is positive) into `out` (`words(v.len())` long).
pub(crate) fn sign_code(v: &[f32], out: &mut [u64]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            if let Some(w) = out.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }
}

/// Hamming distance of two codes.
#[inline]
pub(crate) fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// A query: its components and its sign code (on the stack: no allocation per lookup).
pub(crate) struct Query<'a> {
    pub(crate) v: &'a [f32],
    code: [u64; MAX_WORDS],
    words: usize,
}

impl<'a> Query<'a> {
    pub(crate) fn new(v: &'a [f32]) -> Self {
        let words = words(v.len()).min(MAX_WORDS);
        let mut code = [0u64; MAX_WORDS];
        sign_code(v, &mut code[..words]);
        Query { v, code, words }
    }

    #[inline]
    pub(crate) fn code(&self) -> &[u64] {
        &self.code[..self.words]
    }
}

/// The [`RERANK`] rows with the smallest Hamming distance seen (ties: the first seen stays).
pub(crate) struct Nearest {
    items: [(u32, u32); RERANK],
    len: usize,
    /// Index of the current worst (largest distance) once full.
    worst: usize,
}

impl Nearest {
    pub(crate) fn new() -> Self {
        Nearest {
            items: [(0, 0); RERANK],
            len: 0,
            worst: 0,
        }
    }

    /// The distance a row must beat to get in (`u32::MAX` while not full).
    #[inline]
    pub(crate) fn bar(&self) -> u32 {
        if self.len < RERANK {
            u32::MAX
        } else {
            self.items[self.worst].0
        }
    }

    #[inline]
    pub(crate) fn offer(&mut self, dist: u32, row: u32) {
        if self.len < RERANK {
            self.items[self.len] = (dist, row);
            self.len += 1;
            if self.len == RERANK {
                self.find_worst();
            }
        } else if dist < self.items[self.worst].0 {
            self.items[self.worst] = (dist, row);
            self.find_worst();
        }
    }

    fn find_worst(&mut self) {
        let mut w = 0;
        for (i, it) in self.items[..self.len].iter().enumerate() {
            if it.0 > self.items[w].0 {
                w = i;
            }
        }
        self.worst = w;
    }

    /// The rows kept (unordered).
    pub(crate) fn rows(&self) -> impl Iterator<Item = u32> + '_ {
        self.items[..self.len].iter().map(|&(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_hamming() {
        let v = [1.0f32, -1.0, 0.0, 2.0];
        let mut c = [0u64; 1];
        sign_code(&v, &mut c);
        assert_eq!(c[0], 0b1001);
        let q = Query::new(&v);
        assert_eq!(q.code(), &[0b1001]);
        assert_eq!(hamming(&[0b1111, 1], &[0b0001, 0]), 4);
        let long: Vec<f32> = (0..130)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert_eq!(Query::new(&long).code().len(), 3);
    }

    #[test]
    fn nearest_keeps_the_smallest_distances() {
        let mut n = Nearest::new();
        for r in 0..200u32 {
            n.offer((r * 37) % 101, r);
        }
        let mut kept: Vec<u32> = n.rows().map(|r| (r * 37) % 101).collect();
        kept.sort_unstable();
        // 200 rows cover each distance 0..101 about twice: the 32 smallest are 0..16, twice each.
        assert_eq!(kept.len(), RERANK);
        assert!(kept.iter().all(|&d| d < 16), "{kept:?}");
        assert!(n.bar() < 16);
    }
}
