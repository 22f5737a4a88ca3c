//! The per-worker root: its view of the config, its upstream pools, its metrics and cursors.
//! Everything here is touched by one thread only (`Rc`, `Cell`, `RefCell`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use aigw_core::balance::{BackendState, WrrState};
use aigw_core::config::{Config, Dialect};
use arc_swap::ArcSwap;

use crate::admission::{Limiters, Policy};
use crate::bufpool::BufPool;
use crate::control::Shutdown;
use crate::health::HealthRegistry;
use crate::metrics::LocalMetrics;
use crate::record::{RequestId, Sinks};
use crate::tls::{TlsClients, Transport};
use crate::upstream::UpstreamPools;
use crate::workers::Shared;

/// What a request sees of the config: it holds this `Rc` until it ends, so a reload never changes
/// a request in flight.
pub struct Snapshot {
    /// The validated config.
    pub cfg: Arc<Config>,
    /// Pool key per backend: name, URL, addresses and TLS settings, so a change gets fresh connections.
    pub backend_keys: Vec<String>,
    /// How to connect to each backend (plain or TLS with its shared client config).
    pub transports: Vec<Transport>,
    /// The credential header each backend is sent (`api-key` or `authorization: Bearer …`),
    /// formatted once per config instead of once per attempt.
    pub auth: Vec<Option<(&'static str, String)>>,
    /// `GET /v1/models` answer, built once per config.
    pub models_json: bytes::Bytes,
    /// Shared health per backend id.
    pub health: Vec<Arc<BackendState>>,
    /// Live (re-resolved) addresses per backend id.
    pub addrs: Vec<crate::health::LiveAddrs>,
    /// Smooth weighted round-robin state per pool (per worker).
    pub wrr: Vec<RefCell<WrrState>>,
    /// Key table and consumer limits.
    pub policy: Policy,
    /// The semantic cache this config runs with (`[semantic_cache]`).
    pub cache: Option<Arc<crate::cache::LiveCache>>,
}

impl Snapshot {
    fn new(
        cfg: Arc<Config>,
        registry: &HealthRegistry,
        limiters: &Limiters,
        tls: &TlsClients,
        cache: &crate::cache::CacheHost,
    ) -> Self {
        let backend_keys = cfg.backends.iter().map(backend_key).collect();
        let transports = tls.transports(&cfg);
        let auth = cfg
            .backends
            .iter()
            .map(|b| {
                b.api_key.as_ref().map(|k| match b.dialect {
                    Dialect::Azure | Dialect::AzureV1 => ("api-key", k.clone()),
                    Dialect::OpenAi => ("authorization", format!("Bearer {k}")),
                })
            })
            .collect();
        let mut names: Vec<&String> = cfg.models.exact.keys().collect();
        names.sort();
        let data: Vec<_> = names
            .iter()
            .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "aigw"}))
            .collect();
        let models_json = serde_json::json!({"object": "list", "data": data})
            .to_string()
            .into();
        let health = registry.resolve(&cfg);
        let addrs = registry.addrs(&cfg);
        let wrr = cfg
            .pools
            .iter()
            .map(|_| RefCell::new(WrrState::default()))
            .collect();
        let policy = Policy::new(&cfg, limiters);
        // The host applied this config's cache before publishing it; a config without one
        // must not pick up a cache another config left there.
        let cache = cfg.semantic_cache.as_ref().and(cache.live());
        Snapshot {
            cfg,
            backend_keys,
            transports,
            auth,
            models_json,
            health,
            addrs,
            wrr,
            policy,
            cache,
        }
    }
}

/// The pool key of a backend: what its connections depend on.
fn backend_key(b: &aigw_core::config::Backend) -> String {
    use std::hash::{Hash, Hasher};
    let mut key = format!("{}|{}|{:?}", b.name, b.url, b.addrs);
    if let Some(t) = &b.tls_options {
        // The roots by digest: a changed ca_file gets fresh connections without a key as long as it.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.extra_roots.hash(&mut h);
        key += &format!("|{}|{:016x}", t.server_name, h.finish());
    }
    key
}

/// Size of a worker's reusable head buffers: a head with a small body behind it (a request's up to
/// `aigw_core::request::COALESCE_MAX`, an answer's up to the same 16 KiB) and room to spare.
const HEAD_BUFFER: usize = 20 * 1024;
/// Head buffers a worker keeps: two per request in flight (upstream and client head) for a few
/// requests at once; under more concurrency the extra ones are allocated and freed.
const HEAD_BUFFERS: usize = 8;

/// One worker's state.
pub struct Shard {
    /// Worker index.
    pub id: usize,
    global: Arc<ArcSwap<Config>>,
    current: RefCell<Rc<Snapshot>>,
    /// Idle upstream connections.
    pub pools: UpstreamPools,
    /// This worker's metrics.
    pub metrics: LocalMetrics,
    /// Process-wide shutdown flag.
    pub shutdown: Arc<Shutdown>,
    /// Shared backend health.
    pub health: Arc<HealthRegistry>,
    /// Shared token budgets.
    pub limiters: Arc<Limiters>,
    /// Shared TLS client configs.
    pub tls: Arc<TlsClients>,
    /// Access log and message store.
    pub sinks: Arc<Sinks>,
    /// Which backend holds each stored response.
    pub affinity: Arc<aigw_core::request::Affinity>,
    /// The semantic cache's holder.
    pub cache: Arc<crate::cache::CacheHost>,
    /// Buffers for the heads this worker writes, reused from request to request.
    pub bufs: BufPool,
    /// The access-log line being written, reused from request to request.
    pub log_line: RefCell<Vec<u8>>,
    rng: Cell<u64>,
    requests: Cell<u64>,
    seed: u64,
}

impl Shard {
    /// A shard reading config from `global`.
    pub fn new(
        id: usize,
        global: Arc<ArcSwap<Config>>,
        metrics: LocalMetrics,
        shared: &Shared,
    ) -> Self {
        let (shutdown, health, limiters, sinks, tls) = (
            shared.shutdown.clone(),
            shared.health.clone(),
            shared.limiters.clone(),
            shared.sinks.clone(),
            shared.tls.clone(),
        );
        let snap = Rc::new(Snapshot::new(
            global.load_full(),
            &health,
            &limiters,
            &tls,
            &shared.control.cache,
        ));
        let pools = UpstreamPools::new(metrics.shared.clone());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((id as u64) << 56);
        Shard {
            id,
            global,
            current: RefCell::new(snap),
            pools,
            metrics,
            shutdown,
            health,
            limiters,
            sinks,
            tls,
            affinity: shared.affinity.clone(),
            cache: shared.control.cache.clone(),
            bufs: BufPool::new(HEAD_BUFFER, HEAD_BUFFERS),
            log_line: RefCell::new(Vec::new()),
            rng: Cell::new(seed | 1),
            requests: Cell::new(0),
            seed,
        }
    }

    /// The config for a new request: one atomic load and a pointer compare when nothing changed.
    pub fn snapshot(&self) -> Rc<Snapshot> {
        let latest = self.global.load();
        if !Arc::ptr_eq(&latest, &self.current.borrow().cfg) {
            let snap = Rc::new(Snapshot::new(
                Arc::clone(&latest),
                &self.health,
                &self.limiters,
                &self.tls,
                &self.cache,
            ));
            // Keep warm connections to backends whose name and address did not change.
            self.pools.retain(&snap.backend_keys);
            *self.current.borrow_mut() = snap;
        }
        self.current.borrow().clone()
    }

    /// A new request id: unique per process run without any shared counter.
    pub fn next_request_id(&self) -> RequestId {
        let n = self.requests.get() + 1;
        self.requests.set(n);
        RequestId::format(format_args!("{:016x}{:016x}", self.seed, n))
    }

    /// A cheap per-worker pseudo-random number in 0..1 (xorshift over the request counter).
    pub fn rand01(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
