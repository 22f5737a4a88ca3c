//! The config file as written: serde types with every key optional and unknown keys refused.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) gateway: Option<RawGateway>,
    pub(crate) mocks: Option<BTreeMap<String, RawMock>>,
    pub(crate) backends: Option<BTreeMap<String, RawBackend>>,
    pub(crate) pools: Option<BTreeMap<String, RawPool>>,
    pub(crate) models: Option<BTreeMap<String, String>>,
    pub(crate) consumers: Option<BTreeMap<String, RawConsumer>>,
    pub(crate) routes: Option<BTreeMap<String, RawRoute>>,
    pub(crate) token_limit: Option<RawTokenLimit>,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) log: Option<RawLog>,
    pub(crate) semantic_cache: Option<super::cache::RawSemanticCache>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) listen: Option<String>,
    pub(crate) admin_listen: Option<String>,
    pub(crate) workers: Option<u64>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) max_head_bytes: Option<u64>,
    pub(crate) max_headers: Option<u64>,
    pub(crate) upstream_timeout: Option<RawDuration>,
    pub(crate) connect_timeout: Option<RawDuration>,
    pub(crate) idle_timeout: Option<RawDuration>,
    pub(crate) header_timeout: Option<RawDuration>,
    pub(crate) max_idle_per_backend: Option<u64>,
    pub(crate) max_buffered_body_bytes: Option<u64>,
    pub(crate) drain_timeout: Option<RawDuration>,
    pub(crate) max_upstream_hint: Option<RawDuration>,
    pub(crate) dns_ttl: Option<RawDuration>,
    pub(crate) upstream_idle_timeout: Option<RawDuration>,
}

/// `[mocks.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMock {
    pub(crate) listen: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) latency_ms: Option<u64>,
    pub(crate) chunks: Option<u32>,
    pub(crate) chunk_delay_ms: Option<u64>,
    pub(crate) fail_status: Option<i64>,
    pub(crate) fail_rate: Option<f64>,
    pub(crate) fail_every: Option<u64>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) compress: Option<String>,
    pub(crate) tls_cert: Option<String>,
    pub(crate) tls_key: Option<String>,
}

/// `[backends.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) url: Option<String>,
    pub(crate) dialect: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) api_version: Option<String>,
    pub(crate) ca_file: Option<String>,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) circuit_breaker: Option<RawBreaker>,
}

/// `[backends.NAME.circuit_breaker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub(crate) failures: Option<u32>,
    pub(crate) window: Option<RawDuration>,
    pub(crate) status: Option<Vec<RawStatus>>,
    pub(crate) open_for: Option<RawDuration>,
    pub(crate) honor_retry_after: Option<bool>,
}

/// `[pools.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) strategy: Option<String>,
    pub(crate) members: Option<Vec<RawMember>>,
    pub(crate) retry_on: Option<Vec<RawStatus>>,
    pub(crate) max_attempts: Option<u64>,
    pub(crate) bench_for: Option<RawDuration>,
}

/// One `{ backend = "…", priority = 1, weight = 1 }` in `members`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    pub(crate) backend: Option<String>,
    pub(crate) priority: Option<u32>,
    pub(crate) weight: Option<u32>,
}

/// `[consumers.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsumer {
    pub(crate) keys: Option<Vec<String>>,
    pub(crate) tokens_per_minute: Option<u64>,
    pub(crate) token_quota: Option<RawQuota>,
    pub(crate) models: Option<Vec<String>>,
}

/// `[routes.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) prefix: Option<String>,
    pub(crate) backend: Option<String>,
    pub(crate) strip_prefix: Option<bool>,
    pub(crate) consumers: Option<Vec<String>>,
}

/// `token_quota = { tokens = 1000000, period = "month" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    pub(crate) tokens: Option<u64>,
    pub(crate) period: Option<String>,
}

/// `[token_limit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokenLimit {
    pub(crate) tokens_per_minute: Option<u64>,
    pub(crate) counter: Option<String>,
    pub(crate) estimate_prompt_tokens: Option<bool>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) dimensions: Option<Vec<String>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) access: Option<String>,
    pub(crate) access_buffer: Option<u64>,
    pub(crate) messages: Option<RawMessages>,
}

/// `[log.messages]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMessages {
    pub(crate) path: Option<String>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) max_file_bytes: Option<u64>,
    pub(crate) keep_files: Option<u64>,
}

/// A duration as written: `"5m"` or a bare integer of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawDuration {
    /// `"250ms"`, `"10s"`, `"5m"`, `"1h"`.
    Text(String),
    /// `300` (seconds).
    Secs(i64),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"5m\", \"250ms\" or a number of seconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                i64::try_from(v)
                    .map(RawDuration::Secs)
                    .map_err(|_| E::custom(format!("duration {v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of a status list: `429` or `"500-599"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawStatus {
    /// A single status.
    Code(i64),
    /// `"lo-hi"` (or a single status as a string).
    Text(String),
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status such as 429 or a range such as \"500-599\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawStatus, E> {
                Ok(RawStatus::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStatus, E> {
                Ok(RawStatus::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_optional() {
        let raw: RawConfig = toml::from_str("").unwrap();
        assert!(raw.gateway.is_none() && raw.backends.is_none() && raw.models.is_none());
    }

    #[test]
    fn durations_and_statuses_take_both_forms() {
        let raw: RawPool =
            toml::from_str("bench_for = 10\nretry_on = [429, \"500-599\"]\n").unwrap();
        assert_eq!(raw.bench_for, Some(RawDuration::Secs(10)));
        assert_eq!(
            raw.retry_on,
            Some(vec![
                RawStatus::Code(429),
                RawStatus::Text("500-599".into())
            ])
        );
        let bad = toml::from_str::<RawPool>("bench_for = true\n");
        assert!(bad.is_err());
    }

    #[test]
    fn unknown_keys_refused() {
        assert!(toml::from_str::<RawConfig>("[gateway]\nlisten_on = \"x\"\n").is_err());
        assert!(toml::from_str::<RawConfig>("[frontend]\n").is_err());
    }
}
