//! Configuration: the TOML file (raw serde types) checked once into the immutable [`Config`].
//!
//! Loading is two steps: `raw` deserializes the file with every key optional and unknown keys
//! refused, then `validate` applies defaults, checks ranges and cross references, reads `env:`
//! keys and resolves backend host names. Every error names the file, line, column and key:
//! `gateway.toml:12:1: backends.eastus.dialect: unknown dialect "x" (expected "openai" or "azure")`.

mod backend;
mod cache;
#[cfg(test)]
mod cache_tests;
mod cache_types;
mod duration;
#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod limits_tests;
mod locate;
mod policy;
#[cfg(test)]
mod policy_tests;
mod policy_types;
mod pool;
mod raw;
mod route;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;
mod tls;
#[cfg(test)]
mod tls_tests;
mod types;
mod url;
mod validate;

pub use cache::{
    CacheEmbedder, CacheGuard, CacheMode, EmbedWindow, IndexTuning, SemanticCache, VaryBy,
    CACHEABLE_OPERATIONS,
};
pub use pool::MAX_MEMBERS;
pub use route::{Route, RouteId};
pub use types::*;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use toml::de::DeTable;

/// A config that could not be loaded; [`ConfigError::message`] names the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The whole human message: `FILE:LINE:COL: KEY: what is wrong` (what `Display` prints).
    pub message: String,
    /// The file, or `<config>` when parsing text without one.
    pub file: String,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// The key path, e.g. `pools.chat.members[1].weight`, when known.
    pub key: Option<String>,
}

impl ConfigError {
    /// An error with no place in a file (e.g. it cannot be read); `file` prefixes the message.
    pub fn new(file: impl Into<String>, reason: impl Into<String>) -> Self {
        let file = file.into();
        ConfigError {
            message: format!("{file}: {}", reason.into()),
            file,
            line: None,
            column: None,
            key: None,
        }
    }

    fn at(file: &str, text: &str, offset: usize, key: Option<String>, reason: String) -> Self {
        let (line, column) = locate::line_col(text, offset);
        let message = match &key {
            Some(k) if !k.is_empty() => format!("{file}:{line}:{column}: {k}: {reason}"),
            _ => format!("{file}:{line}:{column}: {reason}"),
        };
        ConfigError {
            message,
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            key,
        }
    }
}

/// Source of [`Config::generation`]: every successful load takes the next number, starting at 1.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Parse and validate `text`, naming `source` in errors (`<config>` when `None`).
///
/// On success the result has the next [`Config::generation`] and `source` set.
///
/// # Errors
/// Any syntax error, unknown key, bad value or dangling reference; also a backend host name that
/// does not resolve or an `env:NAME` api key whose variable is unset.
pub fn parse_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
    let file = source.map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
    let tree = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let key = locate::written_path_at(text, offset);
        ConfigError::at(&file, text, offset, key, e.message().to_owned())
    })?;
    let raw =
        raw::RawConfig::deserialize(toml::de::Deserializer::from(tree.clone())).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let key = locate::path_at(tree.get_ref(), offset)
                .map(|p| p.to_string())
                .or_else(|| locate::written_path_at(text, offset));
            let reason = e.message().replacen("unknown field", "unknown key", 1);
            ConfigError::at(&file, text, offset, key, reason)
        })?;
    let mut config = Config::try_from(raw).map_err(|e| {
        let offset = locate::offset_of(tree.get_ref(), &e.path);
        ConfigError::at(&file, text, offset, Some(e.path.to_string()), e.msg)
    })?;
    config.source = source.map(Path::to_path_buf);
    config.generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    Ok(config)
}

/// Read and validate the file at `path`.
///
/// # Errors
/// As [`parse_str`], plus the file cannot be read.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    parse_str(&text, Some(path))
}

/// The built-in demo: two mock upstreams (one per dialect) behind one pool. `aigw` runs it when
/// started without a file, and prints it as a starting point for a real one.
pub const DEMO_TOML: &str = r#"# aigw demo configuration: two built-in mock upstreams behind one pool.
# Copy this file, point the backends at real endpoints, delete [mocks.*], and run with it.

[gateway]
listen = "127.0.0.1:8080"         # client-facing OpenAI/Azure-compatible API
admin_listen = "127.0.0.1:9090"   # /healthz, /metrics, /reload ("off" disables)
workers = 0                       # 0 = one worker thread per CPU
# max_body_bytes = 33554432       # 32 MiB; larger requests get 413
# upstream_timeout = "300s"       # until the response head, and between body reads
# connect_timeout = "5s"
# idle_timeout = "60s"            # idle keep-alive client connections are closed
# header_timeout = "10s"          # slow request heads are closed

# Mock upstreams started beside the gateway (for trying things out without an API key).
[mocks.eastus]
listen = "127.0.0.1:18001"
region = "eastus"                 # reported in x-ms-region
# fail_status = 429               # inject failures: with fail_rate = 0.5 or fail_every = 3
# retry_after = 5                 # Retry-After seconds on injected 429s
# compress = "honour"             # compress answers as Accept-Encoding asks (or always: "gzip", "br"…)

[mocks.westus]
listen = "127.0.0.1:18002"
region = "westus"

# Upstreams. dialect "azure" uses /openai/deployments/{model}/... and an api-key header;
# "openai" uses /v1/... and Authorization: Bearer. api_key = "env:NAME" reads the environment.
[backends.eastus]
url = "http://127.0.0.1:18001"
dialect = "azure"
# api_key = "env:EASTUS_KEY"
# api_version = "2024-10-21"

# [backends.eastus.circuit_breaker]  # stop sending after repeated failures
# failures = 3                       # within window = "5m", counting status = [429, "500-599"]
# open_for = "1m"                    # or the upstream's Retry-After when it sends one

[backends.westus]
url = "http://127.0.0.1:18002"
dialect = "openai"

# A pool spreads requests over its members: the lowest priority number wins, weights share
# the load inside it, and statuses in retry_on move a request on to another member.
[pools.default]
strategy = "weighted"
members = [
  { backend = "eastus", priority = 1, weight = 1 },
  { backend = "westus", priority = 1, weight = 1 },
]
retry_on = [429, "500-599"]
# max_attempts = 2                # default: the number of members
# bench_for = "10s"               # how long a failed member sits out

# Which pool serves which model ("*" = everything else).
[models]
"gpt-4o-mini" = "default"         # named models are what GET /v1/models lists
"gpt-4o" = "default"
"text-embedding-3-small" = "default"
"*" = "default"

# Consumers: with none (as here) the gateway is open. With any, every request needs one of their
# keys, in an api-key or Ocp-Apim-Subscription-Key header, Authorization: Bearer, or ?api-key=.
# [consumers.team-a]
# keys = ["env:TEAM_A_KEY"]       # or literal keys; only their SHA-256 is kept in memory
# tokens_per_minute = 5000        # overrides [token_limit]
# token_quota = { tokens = 1000000, period = "month" }   # hour, day, week, month or year
# models = ["gpt-4o-mini"]        # absent = every model

# A tokens-per-minute limit for callers without their own.
# [token_limit]
# tokens_per_minute = 10000
# counter = "consumer"            # "ip", or "header:x-user-id" for one budget per header value
# estimate_prompt_tokens = true   # count the prompt before the upstream reports usage

# [metrics]
# dimensions = ["consumer", "model", "backend"]   # also "client_ip", "user"

# A semantic cache: answers to prompts asked before (exactly, or nearly: by embedding) are served
# without a backend call. Partitioned per consumer by default; see README "Semantic cache".
# [semantic_cache]
# mode = "exact+semantic"         # "exact" needs no embedder
# similarity_threshold = 0.95     # required: cosine; or score_threshold = 0.05 (APIM distance)
# ttl = "10m"
# max_entries = 100000
# vary_by = ["consumer"]          # [] shares answers between consumers
# [semantic_cache.embedder]
# pool = "default"                # a pool whose members serve /embeddings
# model = "text-embedding-3-small"
# dimensions = 512

# Relative paths are relative to the working directory.
# [log]
# access = "stdout"               # "off", or a file path
# access_buffer = 8192            # lines queued for the writer
# [log.messages]                  # keep requests and responses as JSON lines
# path = "messages.jsonl"
# max_body_bytes = 204800
# max_file_bytes = 104857600      # rotate at 100 MiB
# keep_files = 5
"#;

/// The built-in demo config ([`DEMO_TOML`] through [`parse_str`]).
///
/// # Panics
/// Never in practice: the demo text is fixed and a unit test parses it.
pub fn demo() -> Config {
    match parse_str(DEMO_TOML, None) {
        Ok(c) => c,
        Err(e) => panic!("the built-in demo config is invalid: {e}"),
    }
}
