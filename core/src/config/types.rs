//! The validated, immutable configuration types (what the rest of aigw reads).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use super::policy_types::*;

/// Index of a backend in [`Config::backends`].
pub type BackendId = usize;
/// Index of a pool in [`Config::pools`].
pub type PoolId = usize;

/// The whole validated configuration. Built once per load; never mutated afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bumped by every successful load or reload, so workers notice a new config with one compare.
    pub generation: u64,
    /// The file this came from; `None` for the built-in demo.
    pub source: Option<PathBuf>,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[mocks.NAME]`, sorted by name.
    pub mocks: Vec<MockSpec>,
    /// `[backends.NAME]`, sorted by name; [`BackendId`] indexes this.
    pub backends: Vec<Backend>,
    /// `[pools.NAME]`, sorted by name; [`PoolId`] indexes this.
    pub pools: Vec<Pool>,
    /// `[models]`.
    pub models: ModelMap,
    /// `[consumers.NAME]`, sorted by name; empty means an open gateway (no key is asked for).
    pub consumers: Vec<Consumer>,
    /// `[routes.NAME]`, sorted by name; [`RouteId`](super::RouteId) indexes this. No two
    /// prefixes overlap.
    pub routes: Vec<super::Route>,
    /// `[token_limit]`: the tokens-per-minute limit of callers without their own; `None` = no limit.
    pub token_limit: Option<TokenLimit>,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[semantic_cache]`; `None` = no cache.
    pub semantic_cache: Option<super::SemanticCache>,
}

/// `[gateway]`: listeners, workers, limits and timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// The client-facing listener. Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// The admin listener (`/healthz`, `/metrics`, `/reload`). Default 127.0.0.1:9090; `""` disables.
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads; 0 in the file means one per CPU, resolved at load.
    pub workers: usize,
    /// Largest request body. Default 32 MiB; beyond it the answer is 413.
    pub max_body_bytes: u64,
    /// Largest request head. Default 64 KiB (431).
    pub max_head_bytes: usize,
    /// Most request headers. Default 100 (431).
    pub max_headers: usize,
    /// Time from sending a request upstream to its response head, and between body reads. Default 300 s.
    pub upstream_timeout: Duration,
    /// TCP connect timeout to a backend. Default 5 s.
    pub connect_timeout: Duration,
    /// A keep-alive client connection with no request for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// A request head (or body) that takes longer than this to arrive closes the connection. Default 10 s.
    pub header_timeout: Duration,
    /// Most idle upstream connections kept per backend per worker. Default 64.
    pub max_idle_per_backend: usize,
    /// Request body bytes one worker buffers at once, all requests together; a body that does
    /// not fit is answered 503 with `Retry-After`. Default 256 MiB, at least `max_body_bytes`.
    pub max_buffered_body_bytes: u64,
    /// On SIGTERM, how long requests in flight (streams included) may take to finish. Default 120 s.
    pub drain_timeout: Duration,
    /// Longest an upstream's hint (`Retry-After`, `retry-after-ms`, `x-ratelimit-reset-*`) may
    /// bench a member or hold its breaker open. Default 1 h.
    pub max_upstream_hint: Duration,
    /// How long a backend host name's addresses are used before it is resolved again. Default 30 s.
    pub dns_ttl: Duration,
    /// An idle pooled upstream connection older than this is closed instead of reused. Default 4 s:
    /// below the 5 s keep-alive of uvicorn (vLLM), Node and Apache, so the gateway, not the
    /// upstream, ends idle connections.
    pub upstream_idle_timeout: Duration,
}

/// How a backend wants its URL and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{url}/v1/{operation}`, credential as `Authorization: Bearer`.
    OpenAi,
    /// Azure OpenAI's classic API: `{url}/openai/deployments/{model}/{operation}?api-version=…`
    /// for the deployment operations (chat, completions, embeddings, images, audio),
    /// `{url}/openai/{operation}?api-version=…` with the model in the body for the rest (the
    /// Responses API); credential as `api-key`.
    Azure,
    /// Azure OpenAI's v1 API: `{url}/openai/v1/{operation}`, the model in the body, no
    /// `api-version`; credential as `api-key`.
    AzureV1,
}

/// `[backends.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// The table name.
    pub name: String,
    /// The URL as written.
    pub url: String,
    /// `https` was asked for (then [`tls_options`](Self::tls_options) is `Some`).
    pub tls: bool,
    /// How to verify an `https://` backend; `None` for `http://`.
    pub tls_options: Option<BackendTls>,
    /// Host name or address from the URL (for `Host`, and the default TLS server name).
    pub host: String,
    /// Port from the URL (default 80/443).
    pub port: u16,
    /// The `Host` header value: `host` or `host:port` when the port is not the scheme's default.
    pub authority: String,
    /// Addresses resolved at load time, so no worker ever blocks on DNS. A host name is
    /// resolved again every `dns_ttl` by the resolver thread, which keeps the live list.
    pub addrs: Vec<SocketAddr>,
    /// Any path in the URL, without a trailing slash (prefixed to what we send).
    pub base_path: String,
    /// URL and credential style.
    pub dialect: Dialect,
    /// The backend's own key, already read from the environment for `env:NAME`.
    pub api_key: Option<String>,
    /// `api-version` sent to azure backends when the client gave none. Default "2024-10-21".
    pub api_version: String,
    /// `[backends.NAME.circuit_breaker]`; `None` when the table is absent (no breaker).
    pub circuit_breaker: Option<BreakerConfig>,
}

/// TLS settings of an `https://` backend, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Sent as SNI and matched against the certificate: `tls_server_name`, default the URL host.
    pub server_name: String,
    /// `ca_file` as written, when given.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file` (DER), trusted on top of the built-in web PKI roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// `[backends.NAME.circuit_breaker]`: when to stop sending to a failing backend, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures inside `window` that open the breaker (>= 1). Default 3.
    pub failures: u32,
    /// The sliding window failures are counted in. Default 5 min.
    pub window: Duration,
    /// Upstream statuses that count as failures. Default 429 and 500-599.
    pub status: Vec<StatusRange>,
    /// How long an open breaker stays open. Default 1 min.
    pub open_for: Duration,
    /// Open for the upstream's `Retry-After` instead of `open_for` when it sends one. Default true.
    pub honor_retry_after: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            window: Duration::from_secs(300),
            status: vec![
                StatusRange { lo: 429, hi: 429 },
                StatusRange { lo: 500, hi: 599 },
            ],
            open_for: Duration::from_secs(60),
            honor_retry_after: true,
        }
    }
}

impl BreakerConfig {
    /// Does `status` count as a failure?
    pub fn counts(&self, status: u16) -> bool {
        self.status.iter().any(|r| r.contains(status))
    }
}

/// How a pool chooses inside its best priority group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Smooth weighted round-robin (equal weights give plain round-robin).
    Weighted,
    /// Uniformly at random.
    Random,
}

/// One member of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolMember {
    /// Which backend.
    pub backend: BackendId,
    /// Lower wins. Default 1.
    pub priority: u32,
    /// Relative share inside its priority group. Default 1.
    pub weight: u32,
}

/// An inclusive range of HTTP statuses, e.g. 429..=429 or 500..=599.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status in the range.
    pub lo: u16,
    /// Highest status in the range.
    pub hi: u16,
}

impl StatusRange {
    /// Is `status` inside?
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

/// `[pools.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The table name.
    pub name: String,
    /// Members in file order.
    pub members: Vec<PoolMember>,
    /// Default [`Strategy::Weighted`].
    pub strategy: Strategy,
    /// Statuses that move a request to another member. Default 429, 500, 502, 503, 504.
    pub retry_on: Vec<StatusRange>,
    /// Most attempts per request. Default: the number of members.
    pub max_attempts: usize,
    /// How long a member sits out after a failure that gave no hint. Default 10 s.
    pub bench_for: Duration,
}

/// `[models]`: model or deployment name to pool.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelMap {
    /// Exact names.
    pub exact: HashMap<String, PoolId>,
    /// The `"*"` entry.
    pub fallback: Option<PoolId>,
}

impl Config {
    /// Does admission estimate prompts up front (any token rate limit or quota)? Then the
    /// tokenizer should be loaded before requests need it.
    pub fn estimates_tokens(&self) -> bool {
        self.token_limit.is_some()
            || self
                .consumers
                .iter()
                .any(|c| c.tokens_per_minute.is_some() || c.quota.is_some())
    }
}

impl ModelMap {
    /// The pool serving `model`, if any.
    pub fn resolve(&self, model: &str) -> Option<PoolId> {
        self.exact.get(model).copied().or(self.fallback)
    }
}

/// How a mock injects faults without per-request instructions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailMode {
    /// Never.
    Never,
    /// This fraction of requests (0.0..=1.0), chosen at random.
    Rate(f64),
    /// Every Nth request (N >= 1).
    Every(u64),
}

/// Behaviour of one built-in mock upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct MockOptions {
    /// Reported in `x-ms-region` and used as the simulation key. Default "mock".
    pub region: String,
    /// Delay before answering. Default 0.
    pub latency_ms: u64,
    /// Content chunks in a streamed answer. Default 5.
    pub chunks: u32,
    /// Delay between streamed chunks. Default 0.
    pub chunk_delay_ms: u64,
    /// Status of an injected failure. Default none.
    pub fail_status: Option<u16>,
    /// When failures are injected.
    pub fail: FailMode,
    /// `Retry-After` seconds on injected 429s. Default 5.
    pub retry_after_secs: u64,
    /// How answers are compressed (`compress`). Default off.
    pub compress: MockCompress,
}

/// A content coding the mock can compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockCoding {
    /// `gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped, RFC 9110).
    Deflate,
    /// `br`.
    Br,
    /// `zstd`.
    Zstd,
}

impl MockCoding {
    /// The coding's `Content-Encoding` token (case-insensitive), if it is one the mock makes.
    pub fn from_token(token: &str) -> Option<Self> {
        let t = token.trim();
        let is = |name: &str| t.eq_ignore_ascii_case(name);
        Some(if is("gzip") || is("x-gzip") {
            MockCoding::Gzip
        } else if is("deflate") {
            MockCoding::Deflate
        } else if is("br") {
            MockCoding::Br
        } else if is("zstd") {
            MockCoding::Zstd
        } else {
            return None;
        })
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            MockCoding::Gzip => "gzip",
            MockCoding::Deflate => "deflate",
            MockCoding::Br => "br",
            MockCoding::Zstd => "zstd",
        }
    }
}

/// `compress` of a mock: whether and how it compresses its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MockCompress {
    /// Never, unless a request says `x-mock-force-encoding` (the default).
    #[default]
    Off,
    /// As the request's `Accept-Encoding` asks, like a real server (`"honour"`).
    Honour,
    /// Always with this coding, whatever the request accepts: a backend that ignores `identity`.
    Force(MockCoding),
}

impl MockCompress {
    /// `"off"`, `"honour"` (or `"honor"`), or a coding to force (`"gzip"`, `"deflate"`, `"br"`,
    /// `"zstd"`).
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(v: &str) -> Result<Self, String> {
        let s = v.trim();
        if s.eq_ignore_ascii_case("off") {
            Ok(MockCompress::Off)
        } else if s.eq_ignore_ascii_case("honour") || s.eq_ignore_ascii_case("honor") {
            Ok(MockCompress::Honour)
        } else {
            MockCoding::from_token(s).map(MockCompress::Force).ok_or_else(|| {
                format!("{s:?} is not one of \"off\", \"honour\", \"gzip\", \"deflate\", \"br\", \"zstd\"")
            })
        }
    }
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            region: "mock".into(),
            latency_ms: 0,
            chunks: 5,
            chunk_delay_ms: 0,
            fail_status: None,
            fail: FailMode::Never,
            retry_after_secs: 5,
            compress: MockCompress::Off,
        }
    }
}

/// `[mocks.NAME]`: a mock upstream started beside the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct MockSpec {
    /// The table name.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// How it behaves.
    pub options: MockOptions,
    /// Serve HTTPS with this certificate (`tls_cert` and `tls_key`); `None` = plain HTTP.
    pub tls: Option<MockTls>,
}

/// A mock's TLS certificate and key, read and checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockTls {
    /// `tls_cert` as written: PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `tls_key` as written: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The certificates of `cert_file` (DER), leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of `key_file` (its `Debug` never prints the key).
    pub key: Arc<PrivateKeyDer<'static>>,
}
