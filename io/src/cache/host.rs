//! The process's one cache: built from `[semantic_cache]` at start, kept across reloads that do
//! not change what its entries mean, replaced by an empty one when they do.
//!
//! What an entry means depends on the embedder (model and vector size: vectors of two models are
//! never comparable) and on how the index is laid out (capacity, generations, queues, tuning).
//! Everything else (threshold, guards, TTL of new entries, `vary_by`, bypass rules) is read per
//! request from the config snapshot, so changing it keeps the entries.

use std::sync::Arc;

use aigw_core::cache::index::{Cache, IndexParams};
use aigw_core::cache::prompt::Keyer;
use aigw_core::config::{CacheMode, Config, IndexTuning};
use arc_swap::ArcSwapOption;

/// What an index is built for: when it changes, the entries are dropped.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    mode: CacheMode,
    embedder: Option<(String, usize)>,
    max_entries: usize,
    generations: usize,
    queue_capacity: usize,
    index: IndexTuning,
    workers: usize,
}

impl Identity {
    fn of(cfg: &Config) -> Option<Identity> {
        let c = cfg.semantic_cache.as_ref()?;
        Some(Identity {
            mode: c.mode,
            embedder: c.embedder.as_ref().map(|e| (e.model.clone(), e.dimensions)),
            max_entries: c.max_entries,
            generations: c.generations,
            queue_capacity: c.queue_capacity,
            index: c.index,
            workers: cfg.gateway.workers.max(1),
        })
    }
}

/// A running cache: the index and its indexer thread, stopped when the last request holding it
/// ends after a reload replaced it.
pub struct LiveCache {
    /// The shared index.
    pub cache: Arc<Cache>,
    /// The key its partition and exact hashes are made with: random per cache, so nobody
    /// outside can aim two prompts at one key.
    pub keyer: Keyer,
    identity: Identity,
}

impl Drop for LiveCache {
    fn drop(&mut self) {
        self.cache.stop();
    }
}

/// The process-wide holder of the live cache.
#[derive(Default)]
pub struct CacheHost {
    live: ArcSwapOption<LiveCache>,
}

impl std::fmt::Debug for CacheHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHost")
            .field("live", &self.live.load().is_some())
            .finish()
    }
}

impl CacheHost {
    /// Make the live cache fit `cfg` (called before `cfg` is published, so a worker that sees the
    /// new config also sees its cache). Returns a note when the entries were dropped.
    ///
    /// # Errors
    /// The indexer thread could not be started; the old cache (if any) stays.
    pub fn apply(&self, cfg: &Config) -> Result<Option<String>, String> {
        let want = Identity::of(cfg);
        let current = self.live.load_full();
        let have = current.as_ref().map(|l| &l.identity);
        if have == want.as_ref() {
            return Ok(None);
        }
        let (Some(want), Some(c)) = (want, cfg.semantic_cache.as_ref()) else {
            self.live.store(None);
            return Ok(current.map(|_| "[semantic_cache] removed: its entries are dropped".into()));
        };
        let params = IndexParams {
            dims: c.embedder.as_ref().map_or(0, |e| e.dimensions),
            max_entries: c.max_entries,
            ttl_ms: u64::try_from(c.ttl.as_millis()).unwrap_or(u64::MAX),
            generations: c.generations,
            hnsw_min_entries: c.index.hnsw_min_entries,
            queue_capacity: c.queue_capacity,
            cores: want.workers,
            m: c.index.m,
            ef_construction: c.index.ef_construction,
            ef_search: c.index.ef_search,
        };
        let cache = Cache::new(params);
        cache
            .spawn_indexer()
            .map_err(|e| format!("cannot start the cache's indexer thread: {e}"))?;
        let note = current.map(|_| {
            "the semantic cache's embedder or index settings changed: it starts empty".to_string()
        });
        self.live.store(Some(Arc::new(LiveCache {
            cache,
            keyer: Keyer::random(),
            identity: want,
        })));
        Ok(note)
    }

    /// The live cache, if one is configured.
    pub fn live(&self) -> Option<Arc<LiveCache>> {
        self.live.load_full()
    }
}
