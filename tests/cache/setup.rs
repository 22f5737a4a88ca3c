//! The setup of the semantic-cache tests: the prompts and the gateway config (one chat mock `llm`,
//! one embeddings mock `emb`, the `[semantic_cache]` table written out in full so no test depends
//! on a default). Calls, counts and waits are in `probe.rs`.
//!
//! Prompts and the mock embedder: `core/src/mock/embed.rs` sums one pseudo-random unit vector per
//! lowercased word, so for prompts of distinct words cos ≈ shared / sqrt(|A|·|B|). The cosines
//! quoted next to the prompts below were computed with that exact function at [`DIMS`] dimensions
//! (a Python port, checked against the mock's own output), on the user text alone.

#![allow(dead_code, unreachable_pub)] // each test module uses a subset

use crate::common::*;

/// `dimensions` of the embedder in these tests (small vectors, cheap lookups).
pub const DIMS: u64 = 256;
/// The similarity threshold most tests use.
pub const THRESHOLD: f64 = 0.85;

/// 12 distinct words: the base prompt.
pub const COFFEE: &str = "please explain how to brew a perfect cup of coffee at home";
/// One word of [`COFFEE`] changed: cos 0.928 with it.
pub const COFFEE_WORK: &str = "please explain how to brew a perfect cup of coffee at work";
/// Another word changed: cos 0.927 with [`COFFEE`], 0.857 with [`COFFEE_WORK`].
pub const COFFEE_GREAT: &str = "please explain how to brew a great cup of coffee at home";
/// A third: cos 0.922 with [`COFFEE`], 0.851 with [`COFFEE_WORK`], 0.859 with [`COFFEE_GREAT`].
pub const COFFEE_MAKE: &str = "please explain how to make a perfect cup of coffee at home";
/// Unrelated to the coffee prompts: cos 0.093 with [`COFFEE`].
pub const MOUNTAIN: &str = "what is the tallest mountain in south america";
/// [`MOUNTAIN`] plus one word: cos 0.95 with it.
pub const MOUNTAIN_NOW: &str = "what is the tallest mountain in south america today";
/// Unrelated to both: cos 0.18 with [`COFFEE`], 0.07 with [`MOUNTAIN`].
pub const TOASTER: &str = "tell me a short story about a brave little toaster";
/// One word of [`TOASTER`] changed: cos 0.921 with it.
pub const KETTLE: &str = "tell me a short story about a brave little kettle";

/// The `[semantic_cache]` table, every key written out. Values are TOML as written.
#[derive(Debug, Clone)]
pub struct CacheCfg {
    pub mode: &'static str,
    pub operations: &'static str,
    /// The whole threshold line, e.g. `similarity_threshold = 0.85` or `score_threshold = 0.15`.
    pub threshold: String,
    pub ttl: &'static str,
    pub max_entries: u64,
    pub generations: u64,
    pub vary_by: &'static str,
    pub embed: &'static str,
    pub ignore_system_messages: bool,
    pub max_message_count: u64,
    pub guards: &'static str,
    pub store_streams: bool,
    pub charge_hits: bool,
    pub respect_cache_control: bool,
    pub embedder_model: &'static str,
    pub dimensions: u64,
    pub timeout: &'static str,
}

impl Default for CacheCfg {
    fn default() -> Self {
        CacheCfg {
            mode: "exact+semantic",
            operations: r#"["chat/completions", "completions", "responses"]"#,
            threshold: format!("similarity_threshold = {THRESHOLD}"),
            ttl: "10m",
            max_entries: 100_000,
            generations: 4,
            vary_by: r#"["consumer"]"#,
            embed: "last_user",
            ignore_system_messages: true,
            max_message_count: 10,
            guards: r#"["numbers", "negation"]"#,
            store_streams: true,
            charge_hits: false,
            respect_cache_control: true,
            embedder_model: "text-embedding-3-small",
            dimensions: DIMS,
            timeout: "2s",
        }
    }
}

impl CacheCfg {
    /// With `similarity_threshold = t`.
    pub fn similarity(mut self, t: f64) -> Self {
        self.threshold = format!("similarity_threshold = {t}");
        self
    }

    pub fn toml(&self) -> String {
        let c = self;
        format!(
            r#"
[semantic_cache]
mode = "{mode}"
operations = {operations}
{threshold}
ttl = "{ttl}"
max_entries = {max_entries}
generations = {generations}
vary_by = {vary_by}
embed = "{embed}"
ignore_system_messages = {ignore}
max_message_count = {max_messages}
guards = {guards}
store_streams = {store_streams}
charge_hits = {charge_hits}
respect_cache_control = {respect}

[semantic_cache.embedder]
pool = "embeddings"
model = "{model}"
dimensions = {dims}
timeout = "{timeout}"
"#,
            mode = c.mode,
            operations = c.operations,
            threshold = c.threshold,
            ttl = c.ttl,
            max_entries = c.max_entries,
            generations = c.generations,
            vary_by = c.vary_by,
            embed = c.embed,
            ignore = c.ignore_system_messages,
            max_messages = c.max_message_count,
            guards = c.guards,
            store_streams = c.store_streams,
            charge_hits = c.charge_hits,
            respect = c.respect_cache_control,
            model = c.embedder_model,
            dims = c.dimensions,
            timeout = c.timeout,
        )
    }
}

/// A whole gateway config: one worker (so one store queue, kept in order: see [`settle`]), the
/// chat mock `llm` behind pool `chat` (models `m` and `m-twin`, `retry_on = []` so a 429 or 500
/// is relayed and benches nothing), the embeddings mock `emb` behind pool `embeddings`.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Extra lines of `[mocks.llm]` (e.g. `latency_ms = 400`).
    pub llm_mock: String,
    /// Extra lines of `[mocks.emb]`.
    pub emb_mock: String,
    /// The chat backend's URL instead of the `llm` mock (e.g. `http://{addr:evil}`).
    pub llm_url: Option<String>,
    /// The embeddings backend's URL instead of the `emb` mock.
    pub emb_url: Option<String>,
    /// More tables (consumers, token limits) and model lines are added by `extra`/`models`.
    pub extra: String,
    /// Extra `[models]` lines.
    pub models: String,
    pub cache: CacheCfg,
}

impl Setup {
    pub fn with(cache: CacheCfg) -> Setup {
        Setup {
            cache,
            ..Setup::default()
        }
    }

    pub fn toml(&self) -> String {
        let llm_url = self
            .llm_url
            .clone()
            .unwrap_or_else(|| "http://{addr:llm}".into());
        let emb_url = self
            .emb_url
            .clone()
            .unwrap_or_else(|| "http://{addr:emb}".into());
        format!(
            r#"
[gateway]
listen = "{{addr:listen}}"
admin_listen = "{{addr:admin}}"
workers = 1

[mocks.llm]
listen = "{{addr:llm}}"
region = "llm"
{llm_mock}

[mocks.emb]
listen = "{{addr:emb}}"
region = "emb"
{emb_mock}

[backends.llm]
url = "{llm_url}"
api_key = "llm-backend-key"

[backends.emb]
url = "{emb_url}"
api_key = "emb-backend-key"

[pools.chat]
members = [{{ backend = "llm" }}]
retry_on = []

[pools.embeddings]
members = [{{ backend = "emb" }}]
retry_on = []

[models]
"m" = "chat"
"m-twin" = "chat"
{models}
{extra}
{cache}
"#,
            llm_mock = self.llm_mock,
            emb_mock = self.emb_mock,
            models = self.models,
            extra = self.extra,
            cache = self.cache.toml(),
        )
    }

    pub fn start(&self, d: Driver) -> Gateway {
        Gateway::start(d, &self.toml())
    }
}
