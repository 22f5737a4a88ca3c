//! Checking the raw file into the typed [`Config`]: defaults, ranges and cross references.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::backend::backend;
use super::duration::{from_secs, human, parse_duration};
use super::locate::{key_path, KeyPath};
use super::policy::{consumers, log, metrics, token_limit};
use super::pool::{models, pool, status_code};
use super::raw::{RawConfig, RawDuration, RawGateway, RawMock};
use super::route::routes;
use super::tls::{cert_chain, path_value, private_key};
use super::types::*;

/// A semantic error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// Where (the deepest existing part of it is what gets a line number).
    pub(crate) path: KeyPath,
    /// What, without the key.
    pub(crate) msg: String,
}

/// Validation result.
pub(super) type Result<T> = std::result::Result<T, Invalid>;

/// An [`Invalid`] at `path`.
pub(super) fn invalid(path: KeyPath, msg: impl Into<String>) -> Invalid {
    Invalid {
        path,
        msg: msg.into(),
    }
}

/// Default `max_buffered_body_bytes` (per worker): 256 MiB.
const DEFAULT_MAX_BUFFERED: u64 = 256 * 1024 * 1024;
/// Default `max_body_bytes`: 32 MiB.
const DEFAULT_MAX_BODY: u64 = 32 << 20;

impl TryFrom<RawConfig> for Config {
    type Error = Invalid;

    /// Everything but `generation` and `source`, which the caller fills in.
    fn try_from(raw: RawConfig) -> Result<Config> {
        let gateway = gateway(raw.gateway.unwrap_or_default())?;
        let mocks = raw
            .mocks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, m)| mock(name, m))
            .collect::<Result<Vec<_>>>()?;
        check_listeners(&gateway, &mocks)?;

        let raw_backends = raw.backends.unwrap_or_default();
        if raw_backends.is_empty() {
            return Err(invalid(
                key_path!["backends"],
                "at least one [backends.NAME] table is required",
            ));
        }
        let backend_ids: HashMap<&str, BackendId> = raw_backends
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let backends = raw_backends
            .iter()
            .map(|(name, b)| backend(name, b))
            .collect::<Result<Vec<_>>>()?;

        let raw_pools = raw.pools.unwrap_or_default();
        if raw_pools.is_empty() {
            return Err(invalid(
                key_path!["pools"],
                "at least one [pools.NAME] table is required",
            ));
        }
        let pools = raw_pools
            .iter()
            .map(|(name, p)| pool(name, p, &backend_ids))
            .collect::<Result<Vec<_>>>()?;

        let models = models(raw.models, &raw_pools)?;
        let consumers = consumers(raw.consumers)?;
        let routes = routes(raw.routes, &backend_ids, &consumers)?;
        let token_limit = token_limit(raw.token_limit)?;
        let metrics = metrics(raw.metrics)?;
        let log = log(raw.log)?;
        let semantic_cache = super::cache::semantic_cache(raw.semantic_cache, &pools)?;
        Ok(Config {
            generation: 0,
            source: None,
            gateway,
            mocks,
            backends,
            pools,
            models,
            consumers,
            routes,
            token_limit,
            metrics,
            log,
            semantic_cache,
        })
    }
}

fn gateway(g: RawGateway) -> Result<GatewayConfig> {
    let at = |k: &str| key_path!["gateway", k];
    let listen = match &g.listen {
        Some(s) => socket_addr(s).map_err(|m| invalid(at("listen"), m))?,
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let admin_listen = match g.admin_listen.as_deref().map(str::trim) {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
        Some("" | "off") => None,
        Some(s) => Some(socket_addr(s).map_err(|m| invalid(at("admin_listen"), m))?),
    };
    let workers = match g.workers.unwrap_or(0) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::try_from(n).map_err(|_| invalid(at("workers"), "too many workers"))?,
    };
    let at_least_one = |key: &str, v: Option<u64>, default: u64| -> Result<u64> {
        match v.unwrap_or(default) {
            0 => Err(invalid(at(key), "must be at least 1")),
            n => Ok(n),
        }
    };
    let to_usize =
        |key: &str, v: u64| usize::try_from(v).map_err(|_| invalid(at(key), "too large"));
    let timeout = |key: &str, v: &Option<RawDuration>, default: u64, max: Duration| {
        let (default, min) = (Duration::from_secs(default), Duration::from_millis(1));
        duration_in(at(key), v, default, min..=max)
    };
    let max_body_bytes = at_least_one("max_body_bytes", g.max_body_bytes, DEFAULT_MAX_BODY)?;
    let max_buffered_body_bytes = g
        .max_buffered_body_bytes
        .unwrap_or(DEFAULT_MAX_BUFFERED.max(max_body_bytes));
    if max_buffered_body_bytes < max_body_bytes {
        return Err(invalid(
            at("max_buffered_body_bytes"),
            format!("must be at least max_body_bytes ({max_body_bytes}), or no body of the largest size could ever be read"),
        ));
    }
    Ok(GatewayConfig {
        listen,
        admin_listen,
        workers,
        max_body_bytes,
        max_head_bytes: to_usize(
            "max_head_bytes",
            at_least_one("max_head_bytes", g.max_head_bytes, 65536)?,
        )?,
        max_headers: to_usize(
            "max_headers",
            at_least_one("max_headers", g.max_headers, 100)?,
        )?,
        upstream_timeout: timeout("upstream_timeout", &g.upstream_timeout, 300, DAY)?,
        connect_timeout: timeout("connect_timeout", &g.connect_timeout, 5, HOUR)?,
        idle_timeout: timeout("idle_timeout", &g.idle_timeout, 60, DAY)?,
        header_timeout: timeout("header_timeout", &g.header_timeout, 10, HOUR)?,
        max_idle_per_backend: to_usize(
            "max_idle_per_backend",
            g.max_idle_per_backend.unwrap_or(64),
        )?,
        max_buffered_body_bytes,
        drain_timeout: timeout("drain_timeout", &g.drain_timeout, 120, DAY)?,
        max_upstream_hint: timeout("max_upstream_hint", &g.max_upstream_hint, 3600, DAY)?,
        dns_ttl: duration_in(
            at("dns_ttl"),
            &g.dns_ttl,
            Duration::from_secs(30),
            Duration::from_secs(1)..=DAY,
        )?,
        upstream_idle_timeout: timeout("upstream_idle_timeout", &g.upstream_idle_timeout, 4, DAY)?,
    })
}

fn mock(name: String, m: RawMock) -> Result<MockSpec> {
    let at = |k: &str| key_path!["mocks", &name, k];
    let listen = match &m.listen {
        Some(s) => socket_addr(s).map_err(|e| invalid(at("listen"), e))?,
        None => return Err(invalid(key_path!["mocks", &name], "missing key \"listen\"")),
    };
    let tls = mock_tls(&name, &m)?;
    let fail_status = match m.fail_status {
        Some(s) => Some(status_code(s).map_err(|e| invalid(at("fail_status"), e))?),
        None => None,
    };
    let fail = match (m.fail_rate, m.fail_every) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at("fail_every"),
                "set fail_rate or fail_every, not both",
            ));
        }
        (Some(r), None) if !(0.0..=1.0).contains(&r) => {
            return Err(invalid(
                at("fail_rate"),
                format!("{r} is outside 0.0..=1.0"),
            ));
        }
        (Some(r), None) => FailMode::Rate(r),
        (None, Some(0)) => return Err(invalid(at("fail_every"), "must be at least 1")),
        (None, Some(n)) => FailMode::Every(n),
        (None, None) if fail_status.is_some() => FailMode::Every(1),
        (None, None) => FailMode::Never,
    };
    if fail_status.is_none() && fail != FailMode::Never {
        let key = if m.fail_rate.is_some() {
            "fail_rate"
        } else {
            "fail_every"
        };
        return Err(invalid(
            at(key),
            "needs fail_status (the status to answer with)",
        ));
    }
    let options = MockOptions {
        region: m.region.unwrap_or_else(|| name.clone()),
        latency_ms: m.latency_ms.unwrap_or(0),
        chunks: m.chunks.unwrap_or(5),
        chunk_delay_ms: m.chunk_delay_ms.unwrap_or(0),
        fail_status,
        fail,
        retry_after_secs: m.retry_after.unwrap_or(5),
        compress: match &m.compress {
            Some(v) => MockCompress::parse(v).map_err(|e| invalid(at("compress"), e))?,
            None => MockCompress::Off,
        },
    };
    Ok(MockSpec {
        name,
        listen,
        options,
        tls,
    })
}

/// `tls_cert` and `tls_key`: both or neither.
fn mock_tls(name: &str, m: &RawMock) -> Result<Option<MockTls>> {
    let at = |k: &str| key_path!["mocks", name, k];
    let (cert, key) = match (&m.tls_cert, &m.tls_key) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(invalid(
                at("tls_cert"),
                "needs tls_key (the certificate's private key)",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                at("tls_key"),
                "needs tls_cert (the certificate chain)",
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let cert_file = path_value(cert).map_err(|e| invalid(at("tls_cert"), e))?;
    let key_file = path_value(key).map_err(|e| invalid(at("tls_key"), e))?;
    Ok(Some(MockTls {
        cert_chain: cert_chain(&cert_file).map_err(|e| invalid(at("tls_cert"), e))?,
        key: std::sync::Arc::new(private_key(&key_file).map_err(|e| invalid(at("tls_key"), e))?),
        cert_file,
        key_file,
    }))
}

/// Two listeners on one port clash when their IPs are equal or either is a wildcard. Port 0 never clashes.
fn check_listeners(g: &GatewayConfig, mocks: &[MockSpec]) -> Result<()> {
    let mut seen: Vec<(SocketAddr, KeyPath)> = vec![(g.listen, key_path!["gateway", "listen"])];
    if let Some(a) = g.admin_listen {
        seen.push((a, key_path!["gateway", "admin_listen"]));
    }
    for m in mocks {
        seen.push((m.listen, key_path!["mocks", &m.name, "listen"]));
    }
    for (i, (addr, path)) in seen.iter().enumerate() {
        let clash = seen[..i].iter().find(|(prev, _)| {
            addr.port() != 0
                && prev.port() == addr.port()
                && (prev.ip() == addr.ip()
                    || prev.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((prev, prev_path)) = clash {
            return Err(invalid(
                path.clone(),
                format!("address {addr} clashes with {prev_path} ({prev})"),
            ));
        }
    }
    Ok(())
}

fn socket_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid address \"{s}\" (expected IP:PORT, e.g. \"127.0.0.1:8080\")"))
}

/// One hour: the most a connect or header timeout may be.
pub(super) const HOUR: Duration = Duration::from_secs(3600);
/// One day: the most any duration in the file may be, so no deadline computed from one
/// (an `Instant` plus it, milliseconds since start plus it) can overflow.
pub(super) const DAY: Duration = Duration::from_secs(86_400);

/// `v` as a duration (0 allowed, at most [`DAY`]), or `default` when absent.
pub(super) fn duration(
    path: KeyPath,
    v: &Option<RawDuration>,
    default: Duration,
) -> Result<Duration> {
    duration_in(path, v, default, Duration::ZERO..=DAY)
}

/// `v` as a duration inside `range`, or `default` when absent.
pub(super) fn duration_in(
    path: KeyPath,
    v: &Option<RawDuration>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration> {
    let d = match v {
        None => return Ok(default),
        Some(RawDuration::Secs(n)) => from_secs(*n),
        Some(RawDuration::Text(t)) => parse_duration(t),
    }
    .map_err(|e| invalid(path.clone(), e))?;
    if d > *range.end() {
        return Err(invalid(
            path,
            format!("must be at most {}", human(*range.end())),
        ));
    }
    if d < *range.start() {
        let msg = if *range.start() == Duration::from_millis(1) {
            "must be greater than 0".to_owned()
        } else {
            format!("must be at least {}", human(*range.start()))
        };
        return Err(invalid(path, msg));
    }
    Ok(d)
}

/// The value of environment variable `var`, or why there is none (`environment variable X is not set`).
pub(super) fn env_var(var: &str) -> std::result::Result<String, String> {
    std::env::var(var).map_err(|e| {
        let why = match e {
            std::env::VarError::NotPresent => "is not set",
            std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
        };
        format!("environment variable {var} {why}")
    })
}
