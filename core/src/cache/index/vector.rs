//! Vectors: the only door into the index ([`unit`]), the dot product every search uses, and the
//! clamped distance handed to hnsw_rs.
//!
//! hnsw_rs aborts a `panic = "abort"` process on a NaN distance (`Ord for PointWithOrder`) and its
//! stock `DistDot` asserts `1 - dot >= 0`, which a vector's dot with itself breaks by rounding; its
//! `DistCosine` says 0 (a perfect match) for a zero vector. So nothing reaches it unchecked: a
//! [`Unit`] is finite, of the cache's dimension and L2-normalised, and [`ClampedDot`] can only return
//! a number in `[0, 2]`.

use hnsw_rs::anndists::dist::distances::Distance;

/// The most dimensions a vector may have (text-embedding-3-large has 3,072; this leaves room).
pub const MAX_DIMS: usize = 16_384;

/// A norm at or under this is a zero vector: it would match everything (or nothing) by accident.
const MIN_NORM: f64 = 1e-6;

/// Why a raw vector was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// Not the cache's dimension (a reload changed the model, or the embedder ignored `dimensions`).
    #[error("vector has {got} dimensions, the index has {want}")]
    Dims {
        /// Dimensions of the vector.
        got: usize,
        /// Dimensions of the index.
        want: usize,
    },
    /// A NaN or an infinity.
    #[error("vector has a non-finite component")]
    NonFinite,
    /// All zeros, or a norm so small that normalising it means nothing.
    #[error("vector is (nearly) zero")]
    Zero,
}

/// A validated vector: finite, of the right dimension, L2 norm 1 (to f32 rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit(Box<[f32]>);

impl Unit {
    /// The components.
    #[inline]
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The dimension.
    #[inline]
    pub fn dims(&self) -> usize {
        self.0.len()
    }
}

/// Validates and normalises `raw` for an index of `dims` dimensions.
///
/// The norm is summed in f64, so components up to `f32::MAX` neither overflow nor lose the small ones.
pub fn unit(raw: Vec<f32>, dims: usize) -> Result<Unit, VectorError> {
    if raw.len() != dims || dims == 0 || dims > MAX_DIMS {
        return Err(VectorError::Dims {
            got: raw.len(),
            want: dims,
        });
    }
    let mut sum = 0f64;
    for x in &raw {
        if !x.is_finite() {
            return Err(VectorError::NonFinite);
        }
        sum += f64::from(*x) * f64::from(*x);
    }
    let norm = sum.sqrt();
    if norm.is_nan() || norm <= MIN_NORM || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    let mut v = raw.into_boxed_slice();
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    // Belt and braces: division by a finite norm above MIN_NORM cannot produce a non-finite value,
    // but this check is what the index relies on, so it is made where it is cheap.
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::NonFinite);
    }
    Ok(Unit(v))
}

/// Lanes the dot product keeps apart: 16 f32 = four SSE registers (two AVX), enough independent
/// additions to hide the add latency. The core crate forbids `unsafe`, so no intrinsics and no
/// runtime feature detection: this shape (fixed-size array chunks, so no bounds checks inside) is
/// what LLVM turns into packed multiplies and adds on the baseline x86-64 target (and on NEON).
/// Written over plain slices it stayed scalar: an exact scan of 256 rows of 512-d took 33.8 µs
/// against 17.9 µs in this shape (BENCHMARKS.md, "Semantic cache index").
const LANES: usize = 16;

/// The dot product of two slices (over the shorter length), written so it auto-vectorises.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const ZERO: [f32; LANES] = [0.0; LANES];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        // `chunks_exact` guarantees the length; the fallback is never taken.
        let x: &[f32; LANES] = x.try_into().unwrap_or(&ZERO);
        let y: &[f32; LANES] = y.try_into().unwrap_or(&ZERO);
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// Cosine similarity of two units, clamped to `[-1, 1]`: a vector's dot with itself can round to
/// 1.0000001, and a caller comparing with a threshold must never see a similarity above 1.
#[inline]
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    clamp_similarity(dot(a, b))
}

/// Clamps a raw dot product of units into `[-1, 1]`; NaN (impossible for units) becomes -1.
#[inline]
pub(crate) fn clamp_similarity(d: f32) -> f32 {
    if d.is_nan() {
        -1.0
    } else {
        d.clamp(-1.0, 1.0)
    }
}

/// The distance given to hnsw_rs: `1 - dot`, clamped to `[0, 2]`, never NaN. hnsw_rs asserts
/// non-negative distances in its search and panics on NaN; neither can happen through this.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClampedDot;

impl Distance<f32> for ClampedDot {
    #[inline]
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        1.0 - clamp_similarity(dot(va, vb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nan_inf_zero_tiny_and_wrong_dims() {
        assert_eq!(unit(vec![1.0, f32::NAN], 2), Err(VectorError::NonFinite));
        assert_eq!(
            unit(vec![f32::INFINITY, 1.0], 2),
            Err(VectorError::NonFinite)
        );
        assert_eq!(
            unit(vec![f32::NEG_INFINITY, 1.0], 2),
            Err(VectorError::NonFinite)
        );
        assert_eq!(unit(vec![0.0; 8], 8), Err(VectorError::Zero));
        assert_eq!(unit(vec![1e-9; 8], 8), Err(VectorError::Zero));
        assert_eq!(
            unit(vec![1.0; 3], 4),
            Err(VectorError::Dims { got: 3, want: 4 })
        );
        assert_eq!(
            unit(Vec::new(), 0),
            Err(VectorError::Dims { got: 0, want: 0 })
        );
    }

    #[test]
    fn normalises_extreme_but_finite_values() {
        let u = unit(vec![f32::MAX, f32::MAX, 0.0], 3).unwrap();
        let n: f32 = u.as_slice().iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5, "{n}");
        let u = unit(vec![1e-30, 0.0, 0.0, 2e-30, 0.0], 5);
        assert_eq!(u, Err(VectorError::Zero));
    }

    #[test]
    fn dot_matches_scalar_on_odd_lengths() {
        for n in [1usize, 7, 15, 16, 17, 100, 511, 512, 513] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32) * 0.5).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-2, "n={n}");
        }
    }

    #[test]
    fn self_similarity_is_one_not_more_and_distance_never_negative_or_nan() {
        // Many random-ish units: the raw dot with itself is sometimes above 1 by rounding.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000 {
            let raw: Vec<f32> = (0..384)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let u = unit(raw, 384).unwrap();
            let s = similarity(u.as_slice(), u.as_slice());
            assert!(s <= 1.0 && s > 0.9999, "{s}");
            let d = ClampedDot.eval(u.as_slice(), u.as_slice());
            assert!((0.0..=1e-4).contains(&d), "{d}");
        }
        let nan = [f32::NAN; 4];
        let d = ClampedDot.eval(&nan, &nan);
        assert!(d.is_finite() && (0.0..=2.0).contains(&d));
    }
}
