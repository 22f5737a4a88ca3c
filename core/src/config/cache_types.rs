//! `[semantic_cache]`, validated: the types the gateway reads (checked in `cache.rs`).

use std::time::Duration;

/// `mode`: which layers look up and store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// A canonical hash of the request only; no embedder.
    Exact,
    /// Embeddings only (an identical prompt is found as a similarity of 1).
    Semantic,
    /// The exact layer first, the semantic one on its miss. The default.
    ExactSemantic,
}

impl CacheMode {
    /// The exact layer is consulted.
    pub fn exact(self) -> bool {
        matches!(self, CacheMode::Exact | CacheMode::ExactSemantic)
    }
    /// The semantic layer is consulted (an embedder is configured).
    pub fn semantic(self) -> bool {
        matches!(self, CacheMode::Semantic | CacheMode::ExactSemantic)
    }
}

/// One `vary_by` entry: a value of the request that splits the cache into partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryBy {
    /// The consumer's name (the caller's key picks it); an open gateway has one anonymous consumer.
    Consumer,
    /// The client's IP address.
    Ip,
    /// The model asked for (it is always in the partition; listing it changes nothing).
    Model,
    /// A request header, lowercased; a request without it is not cached (bypass).
    Header(String),
}

/// `embed`: what text is embedded and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedWindow {
    /// The last user message; every other message goes into the partition key. The default.
    LastUser,
    /// The whole conversation (APIM's behaviour), without system messages when
    /// `ignore_system_messages`.
    Conversation,
}

/// A `guards` entry: a lexical check a semantic candidate must also pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheGuard {
    /// The multisets of numbers in both texts are equal.
    Numbers,
    /// Both texts are negated, or neither is.
    Negation,
}

/// `[semantic_cache.index]`: how the semantic layer searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTuning {
    /// A generation of a partition is scanned flat below this many entries, searched as an HNSW
    /// graph from it.
    pub hnsw_min_entries: usize,
    /// HNSW links per node (at most 64).
    pub m: usize,
    /// HNSW build breadth.
    pub ef_construction: usize,
    /// HNSW search breadth.
    pub ef_search: usize,
}

/// `[semantic_cache.embedder]`: the pool that turns text into vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEmbedder {
    /// The pool whose members serve `embeddings` (failover, credentials and breakers apply).
    pub pool: super::PoolId,
    /// The embedding model asked for.
    pub model: String,
    /// Vector size, sent as `dimensions`; every vector must have it.
    pub dimensions: usize,
    /// Longest wait for a vector; then the lookup fails open (a miss, counted).
    pub timeout: Duration,
}

/// `[semantic_cache]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticCache {
    /// Which layers are used.
    pub mode: CacheMode,
    /// Operations cached (any of `chat/completions`, `completions`, `responses`).
    pub operations: Vec<String>,
    /// The least cosine similarity of a semantic hit (`1 - score_threshold`).
    pub min_similarity: f32,
    /// How long an answer is served after it was stored.
    pub ttl: Duration,
    /// Most answers held, all partitions together.
    pub max_entries: usize,
    /// Generations per partition: eviction takes the oldest `1/generations` of the entries at once.
    pub generations: usize,
    /// What splits the cache into partitions (besides operation, model and prompt context).
    pub vary_by: Vec<VaryBy>,
    /// What is embedded.
    pub embed: EmbedWindow,
    /// `embed = "conversation"` leaves system (and developer) messages out entirely.
    pub ignore_system_messages: bool,
    /// Longer conversations are not cached.
    pub max_message_count: usize,
    /// Lexical checks on semantic candidates.
    pub guards: Vec<CacheGuard>,
    /// Streamed answers are stored (only once complete).
    pub store_streams: bool,
    /// Hits are charged to token limits as if the backend had answered.
    pub charge_hits: bool,
    /// `Cache-Control: no-cache` skips the lookup, `no-store` the store.
    pub respect_cache_control: bool,
    /// Store jobs queued per worker for the indexer; more are dropped and counted.
    pub queue_capacity: usize,
    /// Largest entry stored: the answer (decoded bytes) and the text it is found by; a larger
    /// answer is relayed and not stored, a longer text bypasses the cache.
    pub max_entry_bytes: usize,
    /// Index tuning.
    pub index: IndexTuning,
    /// The embedder (`None` in `mode = "exact"`).
    pub embedder: Option<CacheEmbedder>,
}
