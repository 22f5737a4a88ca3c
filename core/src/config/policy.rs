//! Validation of `[consumers.NAME]`, `[token_limit]`, `[metrics]` and `[log]`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::locate::{key_path, KeyPath};
use super::raw::{RawConsumer, RawLog, RawMessages, RawMetrics, RawQuota, RawTokenLimit};
use super::types::*;
use super::validate::{env_var, invalid, Result};
use crate::auth::hash_key;

/// Check `[consumers.NAME]` (sorted by name), reading `env:` keys and keeping only their hashes.
pub(super) fn consumers(raw: Option<BTreeMap<String, RawConsumer>>) -> Result<Vec<Consumer>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.is_empty() {
        return Err(invalid(
            key_path!["consumers"],
            "defines no consumer (add [consumers.NAME] with keys, or remove the table for an open gateway)",
        ));
    }
    let mut seen: HashMap<[u8; 32], KeyPath> = HashMap::new();
    raw.into_iter()
        .map(|(name, c)| consumer(name, c, &mut seen))
        .collect()
}

fn consumer(
    name: String,
    c: RawConsumer,
    seen: &mut HashMap<[u8; 32], KeyPath>,
) -> Result<Consumer> {
    let at = |k: &str| key_path!["consumers", &name, k];
    let Some(keys) = c.keys else {
        return Err(invalid(
            key_path!["consumers", &name],
            "missing key \"keys\"",
        ));
    };
    if keys.is_empty() {
        return Err(invalid(at("keys"), "at least one key is required"));
    }
    let mut key_hashes = Vec::with_capacity(keys.len());
    for (i, written) in keys.iter().enumerate() {
        let here = key_path!["consumers", &name, "keys", i];
        let key = match written.strip_prefix("env:") {
            Some(var) => {
                let var = var.trim();
                if var.is_empty() {
                    return Err(invalid(here, "missing the variable name after \"env:\""));
                }
                let value = env_var(var).map_err(|e| invalid(here.clone(), e))?;
                if value.trim().is_empty() {
                    return Err(invalid(
                        here,
                        format!("environment variable {var} is empty"),
                    ));
                }
                value
            }
            None if written.trim().is_empty() => {
                return Err(invalid(here, "a key must not be empty"));
            }
            None => written.clone(),
        };
        let hash = hash_key(key.trim());
        if let Some(prev) = seen.get(&hash) {
            return Err(invalid(
                here,
                format!("the same key is already used by {prev}"),
            ));
        }
        seen.insert(hash, here);
        key_hashes.push(hash);
    }
    let tokens_per_minute = match c.tokens_per_minute {
        Some(0) => return Err(invalid(at("tokens_per_minute"), "must be at least 1")),
        n => n,
    };
    let quota = match c.token_quota {
        Some(q) => Some(quota(&name, q)?),
        None => None,
    };
    let models = match c.models {
        Some(list) if list.is_empty() => {
            return Err(invalid(
                at("models"),
                "lists no model (remove the key to allow every model)",
            ));
        }
        Some(list) => {
            if let Some(i) = list.iter().position(|m| m.trim().is_empty()) {
                let path = key_path!["consumers", &name, "models", i];
                return Err(invalid(path, "a model name must not be empty"));
            }
            Some(list)
        }
        None => None,
    };
    Ok(Consumer {
        name,
        key_hashes,
        tokens_per_minute,
        quota,
        models,
    })
}

fn quota(name: &str, q: RawQuota) -> Result<QuotaConfig> {
    let at = |k: &str| key_path!["consumers", name, "token_quota", k];
    let tokens = match q.tokens {
        None => {
            return Err(invalid(
                key_path!["consumers", name, "token_quota"],
                "missing key \"tokens\"",
            ));
        }
        Some(0) => return Err(invalid(at("tokens"), "must be at least 1")),
        Some(n) => n,
    };
    let period = match q.period.as_deref().map(str::trim) {
        None => {
            return Err(invalid(
                key_path!["consumers", name, "token_quota"],
                "missing key \"period\" (\"hour\", \"day\", \"week\", \"month\" or \"year\")",
            ));
        }
        Some("hour") => QuotaPeriod::Hour,
        Some("day") => QuotaPeriod::Day,
        Some("week") => QuotaPeriod::Week,
        Some("month") => QuotaPeriod::Month,
        Some("year") => QuotaPeriod::Year,
        Some(other) => {
            return Err(invalid(
                at("period"),
                format!("unknown period \"{other}\" (expected \"hour\", \"day\", \"week\", \"month\" or \"year\")"),
            ));
        }
    };
    Ok(QuotaConfig { tokens, period })
}

/// Check `[token_limit]`.
pub(super) fn token_limit(raw: Option<RawTokenLimit>) -> Result<Option<TokenLimit>> {
    let Some(t) = raw else {
        return Ok(None);
    };
    let at = |k: &str| key_path!["token_limit", k];
    let tokens_per_minute = match t.tokens_per_minute {
        None => {
            return Err(invalid(
                key_path!["token_limit"],
                "missing key \"tokens_per_minute\"",
            ));
        }
        Some(0) => return Err(invalid(at("tokens_per_minute"), "must be at least 1")),
        Some(n) => n,
    };
    let counter = match t.counter.as_deref().map(str::trim) {
        None | Some("consumer") => Counter::Consumer,
        Some("ip") => Counter::Ip,
        Some(other) => match other.strip_prefix("header:").map(str::trim) {
            Some(h) if is_header_name(h) => Counter::Header(h.to_ascii_lowercase()),
            Some(h) => {
                return Err(invalid(
                    at("counter"),
                    format!("invalid header name \"{h}\" in \"{other}\""),
                ));
            }
            None => {
                return Err(invalid(
                    at("counter"),
                    format!("unknown counter \"{other}\" (expected \"consumer\", \"ip\" or \"header:NAME\")"),
                ));
            }
        },
    };
    Ok(Some(TokenLimit {
        tokens_per_minute,
        counter,
        estimate_prompt_tokens: t.estimate_prompt_tokens.unwrap_or(true),
    }))
}

/// An HTTP field name: one or more token characters (RFC 9110).
pub(super) fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Check `[metrics]`.
pub(super) fn metrics(raw: Option<RawMetrics>) -> Result<MetricsConfig> {
    let Some(list) = raw.and_then(|m| m.dimensions) else {
        return Ok(MetricsConfig::default());
    };
    let mut dimensions = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let here = key_path!["metrics", "dimensions", i];
        let Some(d) = Dimension::ALL
            .into_iter()
            .find(|d| d.label() == name.trim())
        else {
            let known: Vec<&str> = Dimension::ALL.iter().map(|d| d.label()).collect();
            return Err(invalid(
                here,
                format!(
                    "unknown dimension \"{name}\" (expected one of: {})",
                    known.join(", ")
                ),
            ));
        };
        if dimensions.contains(&d) {
            return Err(invalid(
                here,
                format!("dimension \"{name}\" is listed twice"),
            ));
        }
        dimensions.push(d);
    }
    Ok(MetricsConfig { dimensions })
}

/// Check `[log]` and `[log.messages]`; paths are kept as written.
pub(super) fn log(raw: Option<RawLog>) -> Result<LogConfig> {
    let Some(l) = raw else {
        return Ok(LogConfig::default());
    };
    let d = LogConfig::default();
    let access = match l.access.as_deref().map(str::trim) {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some("") => {
            return Err(invalid(
                key_path!["log", "access"],
                "must not be empty (\"stdout\", \"off\" or a file path)",
            ));
        }
        Some(path) => AccessLog::File(PathBuf::from(path)),
    };
    let access_buffer = match l.access_buffer {
        None => d.access_buffer,
        Some(0) => {
            return Err(invalid(
                key_path!["log", "access_buffer"],
                "must be at least 1",
            ))
        }
        Some(n) => usize::try_from(n)
            .map_err(|_| invalid(key_path!["log", "access_buffer"], "too large"))?,
    };
    let messages = match l.messages {
        Some(m) => Some(messages(m)?),
        None => None,
    };
    Ok(LogConfig {
        access,
        access_buffer,
        messages,
    })
}

fn messages(m: RawMessages) -> Result<MessageStoreConfig> {
    let at = |k: &str| key_path!["log", "messages", k];
    let path = match m.path.as_deref().map(str::trim) {
        None => {
            return Err(invalid(
                key_path!["log", "messages"],
                "missing key \"path\"",
            ))
        }
        Some("") => return Err(invalid(at("path"), "must not be empty")),
        Some(p) => PathBuf::from(p),
    };
    let positive = |key: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
        0 => Err(invalid(at(key), "must be at least 1")),
        n => Ok(n),
    };
    let to_usize =
        |key: &str, v: u64| usize::try_from(v).map_err(|_| invalid(at(key), "too large"));
    Ok(MessageStoreConfig {
        path,
        max_body_bytes: to_usize(
            "max_body_bytes",
            positive("max_body_bytes", m.max_body_bytes, 200 << 10)?,
        )?,
        max_file_bytes: positive("max_file_bytes", m.max_file_bytes, 100 << 20)?,
        keep_files: to_usize("keep_files", m.keep_files.unwrap_or(5))?,
    })
}
