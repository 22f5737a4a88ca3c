//! Validation of `[backends.NAME]`: URL, dialect, credentials and circuit breaker.

use std::time::Duration;

use super::locate::key_path;
use super::pool::statuses;
use super::raw::{RawBackend, RawBreaker};
use super::tls::{ca_roots, check_server_name, path_value};
use super::types::*;
use super::url::{parse_url, resolve, BackendUrl};
use super::validate::{duration_in, env_var, invalid, Result, DAY};

/// Check `[backends.NAME]`, reading `env:` keys and resolving the host now.
pub(super) fn backend(name: &str, b: &RawBackend) -> Result<Backend> {
    let at = |k: &str| key_path!["backends", name, k];
    let Some(url) = b.url.clone() else {
        return Err(invalid(key_path!["backends", name], "missing key \"url\""));
    };
    let parts = parse_url(&url).map_err(|e| invalid(at("url"), e))?;
    let tls_options = tls_options(name, b, &parts)?;
    let addrs = resolve(&parts.host, parts.port).map_err(|e| invalid(at("url"), e))?;
    let dialect = match b.dialect.as_deref() {
        None | Some("openai") => Dialect::OpenAi,
        Some("azure") => Dialect::Azure,
        Some("azure-v1") => Dialect::AzureV1,
        Some(other) => {
            return Err(invalid(
                at("dialect"),
                format!(
                    "unknown dialect \"{other}\" (expected \"openai\", \"azure\" or \"azure-v1\")"
                ),
            ));
        }
    };
    let api_key = match b.api_key.as_deref() {
        None | Some("") => None,
        Some(s) => match s.strip_prefix("env:") {
            Some(var) => {
                Some(env_var(var).map_err(|e| invalid(at("api_key"), e))?).filter(|k| !k.is_empty())
            }
            None => Some(s.to_owned()),
        },
    };
    let api_version = match b.api_version.as_deref().map(str::trim) {
        None => "2024-10-21".to_owned(),
        Some("") => return Err(invalid(at("api_version"), "must not be empty")),
        Some(v) => v.to_owned(),
    };
    let circuit_breaker = match &b.circuit_breaker {
        Some(cb) => Some(breaker(name, cb)?),
        None => None,
    };
    Ok(Backend {
        name: name.to_owned(),
        url,
        tls: parts.tls,
        tls_options,
        host: parts.host,
        port: parts.port,
        authority: parts.authority,
        addrs,
        base_path: parts.base_path,
        dialect,
        api_key,
        api_version,
        circuit_breaker,
    })
}

/// `ca_file` and `tls_server_name` of an `https://` backend (refused on `http://` ones, where
/// they would silently do nothing).
fn tls_options(name: &str, b: &RawBackend, url: &BackendUrl) -> Result<Option<BackendTls>> {
    let at = |k: &str| key_path!["backends", name, k];
    if !url.tls {
        for (key, set) in [
            ("ca_file", b.ca_file.is_some()),
            ("tls_server_name", b.tls_server_name.is_some()),
        ] {
            if set {
                return Err(invalid(at(key), "only applies to https:// backends"));
            }
        }
        return Ok(None);
    }
    let server_name = match b.tls_server_name.as_deref().map(str::trim) {
        None => {
            check_server_name(&url.host).map_err(|e| invalid(at("url"), e))?;
            url.host.clone()
        }
        Some("") => return Err(invalid(at("tls_server_name"), "must not be empty")),
        Some(n) => {
            check_server_name(n).map_err(|e| invalid(at("tls_server_name"), e))?;
            n.to_owned()
        }
    };
    let (ca_file, extra_roots) = match b.ca_file.as_deref() {
        None => (None, Vec::new()),
        Some(p) => {
            let path = path_value(p).map_err(|e| invalid(at("ca_file"), e))?;
            let roots = ca_roots(&path).map_err(|e| invalid(at("ca_file"), e))?;
            (Some(path), roots)
        }
    };
    Ok(Some(BackendTls {
        server_name,
        ca_file,
        extra_roots,
    }))
}

fn breaker(name: &str, cb: &RawBreaker) -> Result<BreakerConfig> {
    let at = |k: &str| key_path!["backends", name, "circuit_breaker", k];
    let d = BreakerConfig::default();
    let failures = match cb.failures.unwrap_or(d.failures) {
        0 => return Err(invalid(at("failures"), "must be at least 1")),
        n => n,
    };
    let positive = Duration::from_millis(1)..=DAY;
    let window = duration_in(at("window"), &cb.window, d.window, positive.clone())?;
    let open_for = duration_in(at("open_for"), &cb.open_for, d.open_for, positive)?;
    let status = match &cb.status {
        Some(list) => statuses(&at("status"), list)?,
        None => d.status,
    };
    let honor_retry_after = cb.honor_retry_after.unwrap_or(d.honor_retry_after);
    Ok(BreakerConfig {
        failures,
        window,
        status,
        open_for,
        honor_retry_after,
    })
}
