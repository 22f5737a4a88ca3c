//! Validated types of consumers, token limits, metrics labels and logging (part of [`Config`](super::Config)).

use std::path::PathBuf;

/// `[consumers.NAME]`: one caller identity, recognised by any of its keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The table name.
    pub name: String,
    /// SHA-256 of each key (`env:` keys already read); the plaintext is not kept.
    pub key_hashes: Vec<[u8; 32]>,
    /// Its own tokens-per-minute limit, overriding `[token_limit]`.
    pub tokens_per_minute: Option<u64>,
    /// `token_quota`: a token budget per calendar period.
    pub quota: Option<QuotaConfig>,
    /// The models it may use; `None` = all.
    pub models: Option<Vec<String>>,
}

impl std::fmt::Debug for Consumer {
    /// Shows how many keys there are, not their hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("keys", &self.key_hashes.len())
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("quota", &self.quota)
            .field("models", &self.models)
            .finish()
    }
}

/// `token_quota = { tokens = N, period = "month" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Tokens per period (>= 1).
    pub tokens: u64,
    /// How often the budget starts over.
    pub period: QuotaPeriod,
}

/// The period of a [`QuotaConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// `"hour"`.
    Hour,
    /// `"day"`.
    Day,
    /// `"week"`.
    Week,
    /// `"month"`.
    Month,
    /// `"year"`.
    Year,
}

/// `[token_limit]`: tokens per minute for callers without a limit of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimit {
    /// Tokens per minute per counter key (>= 1).
    pub tokens_per_minute: u64,
    /// What one budget is shared by. Default [`Counter::Consumer`].
    pub counter: Counter,
    /// Count the prompt's estimated tokens up front, before the upstream reports usage. Default true.
    pub estimate_prompt_tokens: bool,
}

/// Whose requests share one [`TokenLimit`] budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `"consumer"`: each consumer has its own (a caller without one, as in an open gateway,
    /// is counted by client IP).
    Consumer,
    /// `"ip"`: each client IP address.
    Ip,
    /// `"header:NAME"`: each value of this request header (name lowercased).
    Header(String),
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Labels on the per-request metrics, in file order. Default consumer, model, backend.
    pub dimensions: Vec<Dimension>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            dimensions: vec![Dimension::Consumer, Dimension::Model, Dimension::Backend],
        }
    }
}

/// One metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The consumer's name.
    Consumer,
    /// The requested model or deployment.
    Model,
    /// The backend that answered.
    Backend,
    /// The client's IP address.
    ClientIp,
    /// The request's `x-user-id` header ("N/A" when absent).
    User,
}

impl Dimension {
    /// Every dimension, in label order.
    pub const ALL: [Dimension; 5] = [
        Dimension::Consumer,
        Dimension::Model,
        Dimension::Backend,
        Dimension::ClientIp,
        Dimension::User,
    ];

    /// The label name, as written in the config: `consumer`, `model`, `backend`, `client_ip`, `user`.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Consumer => "consumer",
            Dimension::Model => "model",
            Dimension::Backend => "backend",
            Dimension::ClientIp => "client_ip",
            Dimension::User => "user",
        }
    }
}

/// `[log]`. Relative paths are kept as written: relative to the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Where access log lines go. Default [`AccessLog::Stdout`].
    pub access: AccessLog,
    /// Capacity (lines) of the bounded channel to the access log writer. Default 8192.
    pub access_buffer: usize,
    /// `[log.messages]`: the message store; `None` = off.
    pub messages: Option<MessageStoreConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            access: AccessLog::Stdout,
            access_buffer: 8192,
            messages: None,
        }
    }
}

/// `access = "stdout" | "off" | "PATH"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// No access log.
    Off,
    /// Appended to this file (relative to the working directory when relative).
    File(PathBuf),
}

/// `[log.messages]`: requests and responses kept as JSON lines, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageStoreConfig {
    /// The file (relative to the working directory when relative).
    pub path: PathBuf,
    /// Most bytes kept of each request or response body (>= 1). Default 200 KiB.
    pub max_body_bytes: usize,
    /// The file is rotated when it would grow past this (>= 1). Default 100 MiB.
    pub max_file_bytes: u64,
    /// Rotated files kept (0 = none). Default 5.
    pub keep_files: usize,
}
