//! Loader tests: a full file, defaults, the demo, `env:` keys (errors are in `error_tests.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

/// The file name errors should carry.
pub(super) const FILE: &str = "/etc/aigw/gw.toml";

const FULL: &str = r#"
[gateway]
listen = "0.0.0.0:8443"
admin_listen = "off"
workers = 3
max_body_bytes = 1048576
max_head_bytes = 8192
max_headers = 50
upstream_timeout = "2m"
connect_timeout = "250ms"
idle_timeout = 30
header_timeout = "1h"
max_idle_per_backend = 0

[mocks.eastus]
listen = "127.0.0.1:18001"
latency_ms = 20
chunks = 7
chunk_delay_ms = 3
fail_status = 429
fail_rate = 0.5
retry_after = 9

[mocks.westus]
listen = "127.0.0.1:18002"
region = "west-us-2"
fail_status = 503

[backends.westus]
url = "http://localhost:8443/base/"
api_key = "sk-literal"

[backends.eastus]
url = "http://127.0.0.1:18001"
dialect = "azure"
api_version = "2025-01-01"
[backends.eastus.circuit_breaker]
failures = 5
window = "30s"
status = [503, "520-530"]
open_for = 15
honor_retry_after = false

[pools.chat]
strategy = "random"
members = [{ backend = "westus", priority = 2, weight = 80 }, { backend = "eastus" }]
retry_on = ["500-599"]
max_attempts = 5
bench_for = "0s"

[pools.embed]
members = [{ backend = "eastus" }]

[models]
"gpt-4o-mini" = "chat"
"text-embedding-3-small" = "embed"
"*" = "chat"
"#;

/// Minimal valid tail for cases that only break something above it.
pub(super) const TAIL: &str =
    "[backends.a]\nurl = \"http://127.0.0.1:1\"\n[pools.p]\nmembers = [{ backend = \"a\" }]\n";

/// Parse `text` as if read from [`FILE`].
pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_str(text, Some(Path::new(FILE)))
}

/// Assert `text` fails at `line` on `key`, with a message containing `needle`.
#[track_caller]
pub(super) fn fails(text: &str, line: usize, key: &str, needle: &str) {
    let e = match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    };
    let m = e.to_string();
    assert!(
        m.starts_with(&format!("{FILE}:{line}:")),
        "wrong place: {m}"
    );
    assert!(
        m.contains(&format!(": {key}: ")),
        "wrong key (want {key}): {m}"
    );
    assert!(m.contains(needle), "want {needle:?} in: {m}");
    assert_eq!(
        (e.file.as_str(), e.line, e.key.as_deref()),
        (FILE, Some(line), Some(key))
    );
}

#[test]
fn full_file() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.source.as_deref(), Some(Path::new(FILE)));
    assert!(c.generation >= 1);
    let g = &c.gateway;
    assert_eq!(g.listen, "0.0.0.0:8443".parse::<SocketAddr>().unwrap());
    assert_eq!(
        (g.admin_listen, g.workers, g.max_body_bytes),
        (None, 3, 1 << 20)
    );
    assert_eq!(
        (g.max_head_bytes, g.max_headers, g.max_idle_per_backend),
        (8192, 50, 0)
    );
    assert_eq!(g.upstream_timeout, Duration::from_secs(120));
    assert_eq!(g.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        (g.idle_timeout, g.header_timeout),
        (Duration::from_secs(30), Duration::from_secs(3600))
    );

    let names: Vec<&str> = c.mocks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["eastus", "westus"]);
    let east = &c.mocks[0].options;
    assert_eq!(
        (
            east.region.as_str(),
            east.latency_ms,
            east.chunks,
            east.chunk_delay_ms
        ),
        ("eastus", 20, 7, 3)
    );
    assert_eq!(
        (east.fail_status, east.fail, east.retry_after_secs),
        (Some(429), FailMode::Rate(0.5), 9)
    );
    let west = &c.mocks[1].options;
    assert_eq!(
        (west.region.as_str(), west.fail),
        ("west-us-2", FailMode::Every(1))
    );

    // Sorted by name, whatever the file order.
    let [e, w] = &c.backends[..] else {
        panic!("two backends")
    };
    assert_eq!((e.name.as_str(), w.name.as_str()), ("eastus", "westus"));
    assert_eq!(
        (e.dialect, e.tls, e.port, e.authority.as_str()),
        (Dialect::Azure, false, 18001, "127.0.0.1:18001")
    );
    assert_eq!(
        (e.api_version.as_str(), e.api_key.as_deref()),
        ("2025-01-01", None)
    );
    assert_eq!(
        e.addrs,
        vec!["127.0.0.1:18001".parse::<SocketAddr>().unwrap()]
    );
    let cb = e.circuit_breaker.as_ref().unwrap();
    assert_eq!(
        (cb.failures, cb.window, cb.open_for),
        (5, Duration::from_secs(30), Duration::from_secs(15))
    );
    assert!(!cb.honor_retry_after && cb.counts(503) && cb.counts(525) && !cb.counts(429));
    assert_eq!(
        (w.dialect, w.tls, w.host.as_str(), w.port),
        (Dialect::OpenAi, false, "localhost", 8443)
    );
    assert_eq!(
        (w.authority.as_str(), w.base_path.as_str()),
        ("localhost:8443", "/base")
    );
    assert_eq!(
        (w.api_key.as_deref(), w.circuit_breaker.as_ref()),
        (Some("sk-literal"), None)
    );
    assert!(!w.addrs.is_empty());

    let [chat, embed] = &c.pools[..] else {
        panic!("two pools")
    };
    assert_eq!(
        (chat.name.as_str(), chat.strategy, chat.max_attempts),
        ("chat", Strategy::Random, 5)
    );
    let m = &chat.members;
    assert_eq!(
        m[0],
        PoolMember {
            backend: 1,
            priority: 2,
            weight: 80
        }
    );
    assert_eq!(
        m[1],
        PoolMember {
            backend: 0,
            priority: 1,
            weight: 1
        }
    );
    assert_eq!(
        (chat.retry_on.clone(), chat.bench_for),
        (vec![StatusRange { lo: 500, hi: 599 }], Duration::ZERO)
    );
    assert_eq!(
        (embed.strategy, embed.max_attempts),
        (Strategy::Weighted, 1)
    );

    assert_eq!(c.models.resolve("gpt-4o-mini"), Some(0));
    assert_eq!(c.models.resolve("text-embedding-3-small"), Some(1));
    assert_eq!(c.models.resolve("anything"), Some(0));
}

#[test]
fn defaults() {
    let c = parse_str(TAIL, None).unwrap();
    assert_eq!(c.source, None);
    let g = &c.gateway;
    assert_eq!(g.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(
        g.admin_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
    );
    assert!(g.workers >= 1);
    assert_eq!(
        (g.max_body_bytes, g.max_head_bytes, g.max_headers),
        (32 << 20, 65536, 100)
    );
    assert_eq!(
        (g.upstream_timeout, g.connect_timeout),
        (Duration::from_secs(300), Duration::from_secs(5))
    );
    assert_eq!(g.upstream_idle_timeout, Duration::from_secs(4));
    assert_eq!(
        (g.idle_timeout, g.header_timeout),
        (Duration::from_secs(60), Duration::from_secs(10))
    );
    assert_eq!(g.max_idle_per_backend, 64);
    assert!(c.mocks.is_empty());
    let b = &c.backends[0];
    assert_eq!(
        (b.dialect, b.api_key.clone(), b.api_version.as_str()),
        (Dialect::OpenAi, None, "2024-10-21")
    );
    assert_eq!(
        (b.base_path.as_str(), b.circuit_breaker.clone()),
        ("", None)
    );
    let p = &c.pools[0];
    assert_eq!(
        (p.strategy, p.max_attempts, p.bench_for),
        (Strategy::Weighted, 1, Duration::from_secs(10))
    );
    let statuses: Vec<u16> = p.retry_on.iter().map(|r| r.lo).collect();
    assert_eq!(statuses, [429, 500, 502, 503, 504]);
    assert_eq!(
        p.members,
        [PoolMember {
            backend: 0,
            priority: 1,
            weight: 1
        }]
    );
    // No [models] with one pool: everything goes to it.
    assert_eq!((c.models.fallback, c.models.exact.len()), (Some(0), 0));

    let t = format!("{TAIL}[backends.a.circuit_breaker]\n[mocks.m]\nlisten = \"127.0.0.1:0\"\n");
    let c = parse(&t).unwrap();
    assert_eq!(
        c.backends[0].circuit_breaker,
        Some(BreakerConfig::default())
    );
    assert_eq!(
        c.mocks[0].options,
        MockOptions {
            region: "m".into(),
            ..MockOptions::default()
        }
    );
    let c = parse(&format!("[gateway]\nadmin_listen = \"\"\n{TAIL}")).unwrap();
    assert_eq!(c.gateway.admin_listen, None);
}

#[test]
fn generations_increase() {
    let (a, b) = (parse(TAIL).unwrap(), parse(TAIL).unwrap());
    assert!(b.generation > a.generation);
}

#[test]
fn demo_parses() {
    let c = demo();
    assert_eq!(c.source, None);
    assert_eq!(c.gateway.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(
        c.gateway.admin_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
    );
    assert!(c.gateway.workers >= 1);
    let mocks: Vec<(&str, u16, &str)> = c
        .mocks
        .iter()
        .map(|m| (m.name.as_str(), m.listen.port(), m.options.region.as_str()))
        .collect();
    assert_eq!(
        mocks,
        [("eastus", 18001, "eastus"), ("westus", 18002, "westus")]
    );
    let dialects: Vec<(&str, Dialect)> = c
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.dialect))
        .collect();
    assert_eq!(
        dialects,
        [("eastus", Dialect::Azure), ("westus", Dialect::OpenAi)]
    );
    assert_eq!(
        (
            c.pools.len(),
            c.pools[0].name.as_str(),
            c.pools[0].members.len()
        ),
        (1, "default", 2)
    );
    assert_eq!(c.models.resolve("gpt-4o"), Some(0));
    assert_eq!(c.models.resolve("anything-else"), Some(0));
    assert!(c.models.exact.contains_key("gpt-4o-mini"));
    // An open gateway with default metrics and logging.
    assert!(c.consumers.is_empty() && c.token_limit.is_none());
    assert_eq!(
        (c.metrics.clone(), c.log.clone()),
        (MetricsConfig::default(), LogConfig::default())
    );
}

#[test]
fn demo_examples_parse_when_uncommented() {
    std::env::set_var("TEAM_A_KEY", "sk-demo");
    let text: String = DEMO_TOML
        .lines()
        .skip_while(|l| !l.starts_with("# [consumers."))
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|l| l.contains('=') || l.starts_with('['))
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n")
        // TAIL's pool is "p"; the demo's is "default".
        .replace("pool = \"default\"", "pool = \"p\"");
    let c = parse(&format!("{TAIL}{text}\n")).unwrap();
    assert_eq!(c.consumers.len(), 1);
    assert!(c.token_limit.is_some() && c.log.messages.is_some());
    assert!(c.semantic_cache.is_some());
}

#[test]
fn env_api_key() {
    let var = "AIGW_CONFIG_TEST_KEY_7F3A";
    std::env::set_var(var, "sk-from-env");
    let t = format!("[backends.a]\nurl = \"http://127.0.0.1:1\"\napi_key = \"env:{var}\"\n[pools.p]\nmembers = [{{ backend = \"a\" }}]\n");
    assert_eq!(
        parse(&t).unwrap().backends[0].api_key.as_deref(),
        Some("sk-from-env")
    );
    let unset = t.replace(var, "AIGW_CONFIG_TEST_SURELY_UNSET_91C2");
    fails(
        &unset,
        3,
        "backends.a.api_key",
        "environment variable AIGW_CONFIG_TEST_SURELY_UNSET_91C2 is not set",
    );
}
