//! The index's parameters, their defaults (from BENCHMARKS.md's measurements) and their limits.
//!
//! hnsw_rs prints and calls `std::process::exit(1)` for `max_nb_connection > 256`, and unwraps an
//! empty `Uniform` range for zero layers, so the limits are checked here, before anything reaches
//! it: [`IndexParams::check`] for a config loader that wants to refuse, and [`IndexParams::sanitized`]
//! (what [`super::Cache::new`] applies) that clamps into range instead.

use super::vector::MAX_DIMS;

/// Largest `m` (links per node and layer; layer 0 keeps twice as many).
pub const MAX_M: usize = 64;
/// Largest `ef_construction` / `ef_search`.
pub const MAX_EF: usize = 4_096;
/// Largest `generations`.
pub const MAX_GENERATIONS: usize = 64;
/// Largest `max_entries`: row ids are `u32` inside a generation.
pub const MAX_ENTRIES: usize = 1 << 30;

/// Tuning and limits of the semantic index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexParams {
    /// Vector dimension; any other is refused.
    pub dims: usize,
    /// Live entries over all partitions together.
    pub max_entries: usize,
    /// The configured time to live: generations rotate every `ttl_ms / generations` (0 = never by age).
    /// Each entry's own `expires_ms` decides whether it is served.
    pub ttl_ms: u64,
    /// Ring size per partition: a generation holds at most `max_entries / generations` entries.
    pub generations: usize,
    /// A generation with this many vectors gets an HNSW graph; smaller ones are only scanned.
    pub hnsw_min_entries: usize,
    /// Store jobs each core may have waiting; more are dropped and counted.
    pub queue_capacity: usize,
    /// Cores submitting (one queue each).
    pub cores: usize,
    /// HNSW links per node and layer.
    pub m: usize,
    /// HNSW beam width while building.
    pub ef_construction: usize,
    /// HNSW beam width while searching.
    pub ef_search: usize,
}

/// A parameter out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `name` must lie in `min..=max`.
    #[error("{name} = {value} is out of range {min}..={max}")]
    Range {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
}

impl IndexParams {
    /// Defaults for `dims`-wide vectors.
    pub fn new(dims: usize) -> Self {
        IndexParams {
            dims,
            max_entries: 100_000,
            ttl_ms: 600_000,
            generations: 4,
            hnsw_min_entries: DEFAULT_HNSW_MIN_ENTRIES,
            queue_capacity: 1_024,
            cores: 1,
            m: 16,
            ef_construction: 64,
            ef_search: DEFAULT_EF_SEARCH,
        }
    }

    fn ranges(&self) -> [(&'static str, usize, usize, usize); 9] {
        [
            ("dims", self.dims, 1, MAX_DIMS),
            ("max_entries", self.max_entries, 1, MAX_ENTRIES),
            ("generations", self.generations, 1, MAX_GENERATIONS),
            ("hnsw_min_entries", self.hnsw_min_entries, 2, usize::MAX),
            ("queue_capacity", self.queue_capacity, 1, 1 << 20),
            ("cores", self.cores, 1, 4_096),
            ("m", self.m, 2, MAX_M),
            ("ef_construction", self.ef_construction, 1, MAX_EF),
            ("ef_search", self.ef_search, 1, MAX_EF),
        ]
    }

    /// The first parameter out of range, if any.
    pub fn check(&self) -> Result<(), ParamsError> {
        for (name, value, min, max) in self.ranges() {
            if !(min..=max).contains(&value) {
                return Err(ParamsError::Range {
                    name,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Every parameter clamped into its range (dims too: a vector of another size is then refused).
    pub fn sanitized(&self) -> Self {
        let c = |v: usize, name: &str| {
            self.ranges()
                .iter()
                .find(|r| r.0 == name)
                .map_or(v, |&(_, v, min, max)| v.clamp(min, max))
        };
        IndexParams {
            dims: c(self.dims, "dims"),
            max_entries: c(self.max_entries, "max_entries"),
            ttl_ms: self.ttl_ms,
            generations: c(self.generations, "generations"),
            hnsw_min_entries: c(self.hnsw_min_entries, "hnsw_min_entries"),
            queue_capacity: c(self.queue_capacity, "queue_capacity"),
            cores: c(self.cores, "cores"),
            m: c(self.m, "m"),
            ef_construction: c(self.ef_construction, "ef_construction"),
            ef_search: c(self.ef_search, "ef_search"),
        }
    }

    /// Entries one generation holds at most.
    pub(crate) fn generation_cap(&self) -> usize {
        (self.max_entries / self.generations).max(1)
    }

    /// Age at which the open generation is sealed (`None`: never by age).
    pub(crate) fn generation_span_ms(&self) -> Option<u64> {
        (self.ttl_ms > 0).then(|| (self.ttl_ms / self.generations as u64).max(1))
    }
}

/// Default size at which a generation gets a graph. Measured at 512-d on 2 shared vCPUs, in cache
/// (BENCHMARKS.md, "Semantic cache index"): the flat scan (sign-code prefilter, exact re-rank of
/// 32) took 30 µs at 1,024 rows and 76 µs at 4,096; the graph walked on codes at ef 32 took 57 µs
/// and 45 µs. They cross near 2k; at 4,096 the graph clearly wins, and below it a graph would not
/// pay for its build (~1–2 ms of indexer time per row).
pub const DEFAULT_HNSW_MIN_ENTRIES: usize = 4_096;

/// Default beam width of a graph search. The cache walks graphs on sign codes (`graph.rs`), whose
/// coarse distances need a wider beam than f32 ones: recall@1 on planted near-duplicates at 32k
/// rows was 0.924 at ef 16 and 0.988 at ef 32 (f32 walk: 0.996 / 0.998), BENCHMARKS.md.
pub const DEFAULT_EF_SEARCH: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_are_named_and_clamped() {
        assert_eq!(IndexParams::new(512).check(), Ok(()));
        let mut p = IndexParams::new(512);
        p.m = 300;
        assert!(matches!(
            p.check(),
            Err(ParamsError::Range { name: "m", .. })
        ));
        p.generations = 0;
        p.dims = 0;
        let s = p.sanitized();
        assert_eq!((s.m, s.generations, s.dims), (MAX_M, 1, 1));
        assert_eq!(s.check(), Ok(()));
    }
}
