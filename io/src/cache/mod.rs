//! The semantic cache on the request path: the process-wide cache behind an `ArcSwap`
//! ([`host`]), the lookup (`short_circuit`'s plan step, whose only await is the embeddings call,
//! [`lookup`] and [`embed`]), serving a hit ([`serve`]) and handing a complete answer to the
//! indexer ([`store`]).
//!
//! The index itself (exact map, partitions, generations, the indexer thread) and the request
//! analysis (keys, embedded text, guards, replay) are sans-IO, in `aigw_core::cache`.

pub mod admin;
pub mod embed;
pub mod host;
pub mod lookup;
pub mod serve;
pub mod store;

pub use host::{CacheHost, LiveCache};
pub use lookup::{Lookup, StorePlan};

/// The `x-aigw-cache` header.
pub const CACHE_HEADER: &str = "x-aigw-cache";
