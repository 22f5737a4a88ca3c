//! Config limits: duration maxima, overflowing durations, pool size, the new `[gateway]` knobs.

use std::time::Duration;

use super::tests::{fails, parse, TAIL};

/// Every duration key, the table it lives in, and the text that precedes it.
const DURATION_KEYS: &[(&str, &str)] = &[
    ("[gateway]\n", "gateway.upstream_timeout"),
    ("[gateway]\n", "gateway.connect_timeout"),
    ("[gateway]\n", "gateway.idle_timeout"),
    ("[gateway]\n", "gateway.header_timeout"),
    ("[gateway]\n", "gateway.max_upstream_hint"),
    ("[gateway]\n", "gateway.dns_ttl"),
];

fn key_name(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

#[test]
fn overflowing_and_huge_durations_are_clear_errors() {
    for value in [
        "\"99999999999999999h\"",
        "\"99999999999999999999s\"",
        "\"18446744073709551615s\"",
        "\"18446744073709551615ms\"",
        "9223372036854775807",
        "\"400d\"",
    ] {
        for (table, key) in DURATION_KEYS {
            let text = format!("{table}{} = {value}\n{TAIL}", key_name(key));
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(&format!(": {key}: ")), "{e}");
            assert!(
                e.contains("too large") || e.contains("at most") || e.contains("invalid"),
                "{e}"
            );
        }
        for (extra, key) in [
            (
                "[pools.q]\nmembers = [{ backend = \"a\" }]\nbench_for = ",
                "pools.q.bench_for",
            ),
            (
                "[backends.a.circuit_breaker]\nwindow = ",
                "backends.a.circuit_breaker.window",
            ),
            (
                "[backends.a.circuit_breaker]\nopen_for = ",
                "backends.a.circuit_breaker.open_for",
            ),
        ] {
            let text = format!("{TAIL}{extra}{value}\n");
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(&format!(": {key}: ")), "{e}");
        }
    }
}

#[test]
fn each_duration_has_a_sane_maximum() {
    fails(
        &format!("[gateway]\nupstream_timeout = \"25h\"\n{TAIL}"),
        2,
        "gateway.upstream_timeout",
        "at most 24h",
    );
    fails(
        &format!("[gateway]\nconnect_timeout = \"2h\"\n{TAIL}"),
        2,
        "gateway.connect_timeout",
        "at most 1h",
    );
    fails(
        &format!("{TAIL}[backends.a.circuit_breaker]\nopen_for = \"200h\"\n"),
        6,
        "backends.a.circuit_breaker.open_for",
        "at most",
    );
    fails(
        &format!("{TAIL}[pools.q]\nmembers = [{{ backend = \"a\" }}]\nbench_for = 90000\n"),
        7,
        "pools.q.bench_for",
        "at most 24h",
    );
    // The largest allowed values load.
    let c = parse(&format!(
        "[gateway]\nupstream_timeout = \"24h\"\nidle_timeout = \"24h\"\n{TAIL}"
    ))
    .unwrap();
    assert_eq!(c.gateway.upstream_timeout, Duration::from_secs(86_400));
}

#[test]
fn no_panic_on_odd_duration_text() {
    let odd = [
        "\"\"",
        "\" \"",
        "\"h\"",
        "\"-0s\"",
        "\"1e9s\"",
        "\"0x10s\"",
        "\"１s\"",
        "\"1s1s\"",
        "-9223372036854775808",
        "0",
        "\"0ms\"",
        "1.5",
        "\"9223372036854775808000ms\"",
    ];
    for v in odd {
        for (table, key) in DURATION_KEYS {
            let _ = parse(&format!("{table}{} = {v}\n{TAIL}", key_name(key)));
        }
    }
}

#[test]
fn upstream_hint_cap_and_dns_ttl_defaults_and_values() {
    let c = parse(TAIL).unwrap();
    assert_eq!(c.gateway.max_upstream_hint, Duration::from_secs(3600));
    assert_eq!(c.gateway.dns_ttl, Duration::from_secs(30));
    let c = parse(&format!(
        "[gateway]\nmax_upstream_hint = \"90s\"\ndns_ttl = \"5m\"\n{TAIL}"
    ))
    .unwrap();
    assert_eq!(c.gateway.max_upstream_hint, Duration::from_secs(90));
    assert_eq!(c.gateway.dns_ttl, Duration::from_secs(300));
    fails(
        &format!("[gateway]\nmax_upstream_hint = \"0s\"\n{TAIL}"),
        2,
        "gateway.max_upstream_hint",
        "greater than 0",
    );
    fails(
        &format!("[gateway]\ndns_ttl = \"10ms\"\n{TAIL}"),
        2,
        "gateway.dns_ttl",
        "at least 1s",
    );
}

#[test]
fn pools_larger_than_64_members_are_refused() {
    let pool_of = |n: usize| {
        let mut t = String::new();
        for i in 0..n {
            t += &format!("[backends.b{i}]\nurl = \"http://127.0.0.1:{}\"\n", 1000 + i);
        }
        let members: Vec<String> = (0..n)
            .map(|i| format!("{{ backend = \"b{i}\" }}"))
            .collect();
        t += &format!("[pools.big]\nmembers = [{}]\n", members.join(", "));
        t
    };
    let c = parse(&pool_of(64)).unwrap();
    assert_eq!(c.pools[0].members.len(), 64);
    fails(
        &pool_of(65),
        132,
        "pools.big.members",
        "at most 64 members (this one has 65)",
    );
}
