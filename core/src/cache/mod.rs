//! The response cache: an exact layer (a request's key) and a semantic layer (its embedding's nearest
//! neighbours), shared by every core.
//!
//! - [`index`]: the data structures and the indexer thread.
//! - [`prompt`]: the request and response side: cache keys and the text to embed from a request
//!   body, the lexical guards, what of a finished answer is stored, and the SSE replay of a
//!   stored answer.
//!
//! An [`Entry`] is the unit both layers hand out: it is stored once, in an `Arc`, and every core
//! serves the same bytes from it.

pub mod index;
pub mod prompt;

pub use index::{
    unit, Cache, CacheStats, Evictions, Hit, IndexParams, ParamsError, StoreJob, Unit, VectorError,
};

/// One cached answer, shared by every core (held in `Arc`).
#[derive(Debug)]
pub struct Entry {
    /// The answer as stored: a complete, decoded (identity-encoded) JSON body of a 200 answer.
    pub answer: bytes::Bytes,
    /// The text that was embedded / looked up for it (the guards compare a query's text with this).
    pub text: Box<str>,
    /// Unix ms when stored; `age` = now - created.
    pub created_ms: u64,
    /// Unix ms after which it is never served.
    pub expires_ms: u64,
    /// Total tokens of the call that produced it (added to tokens-saved on each hit).
    pub tokens: u64,
}

impl Entry {
    /// Whether the entry may still be served at `now_ms` (the last servable ms is `expires_ms`).
    #[inline]
    pub fn live_at(&self, now_ms: u64) -> bool {
        now_ms <= self.expires_ms
    }
}
