//! Backend pools over loopback, black-box: weighted and even splits, priority failover on a 429
//! with `Retry-After`, benching after a 500 without a hint, and the circuit breaker's
//! open → half-open → closed cycle (in `pools/breaker.rs`). More failure cases (all down,
//! mid-stream failure, state shared between workers, body replay) are in `pools/failover.rs`.
//!
//! Timing checks are relative to instants the test observed itself (a bench starts after the
//! request was sent and before its answer arrived), with half a second or more of margin.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;
#[path = "pools/breaker.rs"]
mod breaker;
#[path = "pools/failover.rs"]
mod failover;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

both_drivers!(
    weighted_split_follows_weights,
    equal_weights_split_evenly,
    priority_failover_honours_retry_after,
    status_500_benches_for_bench_for,
);

// ---------------------------------------------------------------------------------------------
// Config and request helpers (also used by pools/failover.rs)
// ---------------------------------------------------------------------------------------------

/// The `[gateway]` table with `workers`, followed by `rest`.
pub(crate) fn config(workers: usize, rest: &str) -> String {
    format!("[gateway]\nlisten = \"{{addr:listen}}\"\nadmin_listen = \"{{addr:admin}}\"\nworkers = {workers}\n\n{rest}")
}

/// An in-process mock NAME (region NAME) with `extra` keys, and the backend NAME in front of it.
pub(crate) fn mocked(name: &str, extra: &str) -> String {
    format!(
        "[mocks.{name}]\nlisten = \"{{addr:{name}}}\"\nregion = \"{name}\"\n{extra}\n\n{}",
        backend(name)
    )
}

/// The backend NAME at `{addr:NAME}` (an in-process mock, a separate process or nothing at all).
pub(crate) fn backend(name: &str) -> String {
    format!("[backends.{name}]\nurl = \"http://{{addr:{name}}}\"\n\n")
}

/// `[pools.p]` with `extra` keys and `members` (the inside of the TOML array).
pub(crate) fn pool(extra: &str, members: &str) -> String {
    format!("[pools.p]\n{extra}\nmembers = [{members}]\n\n")
}

pub(crate) const MODEL: &str = "gpt-4o-mini";

/// One non-streamed chat request on a fresh connection.
pub(crate) fn chat(gw: &Gateway) -> Response {
    gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some(MODEL), false).as_bytes(),
    )
}

/// Assert a 200 served by `backend` after `attempts` attempts.
#[track_caller]
pub(crate) fn assert_served(r: &Response, backend: &str, attempts: usize) {
    assert_eq!(r.status, 200, "{}", r.text());
    let got = (r.header("x-aigw-backend"), r.header("x-aigw-attempts"));
    assert_eq!(
        got,
        (Some(backend), Some(attempts.to_string().as_str())),
        "{:?}",
        r.headers
    );
}

/// Requests the mock at `addr` has seen (`GET /mock/stats` → `total`).
pub(crate) fn total_at(addr: SocketAddr) -> u64 {
    let r = Client::connect(addr).call("GET", "/mock/stats", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["total"].as_u64().expect("total")
}

/// Requests the mock at `{addr:NAME}` has seen.
pub(crate) fn total(gw: &Gateway, name: &str) -> u64 {
    total_at(gw.addr(name))
}

/// The entry of backend `name` in the admin `/backends` JSON.
pub(crate) fn backend_state(gw: &Gateway, name: &str) -> Value {
    let v = gw.admin("GET", "/backends").json();
    v["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// Poll `/backends` until `cond` holds for `name`; panics after `limit`.
pub(crate) fn wait_backend(
    gw: &Gateway,
    name: &str,
    limit: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let b = backend_state(gw, name);
        if cond(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "backend {name} never reached the expected state: {b}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Answer one chat request at the healthy mock `{addr:NAME}` directly, then reset its counters.
///
/// The first reply a mock process writes builds the tokenizer for its usage numbers (about a
/// second in a debug build, with the worker thread blocked, gateway traffic included when the mock
/// runs in-process): timing checks must not start before that.
pub(crate) fn warm(gw: &Gateway, name: &str) {
    let body = chat_body(Some(MODEL), false);
    let r =
        Client::connect(gw.addr(name)).call("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    gw.mock_reset(name);
}

/// Chat requests on fresh connections until `t0 + stop`, while another member is kept out until
/// `t0 + hold` at the earliest. Every answer that arrived before `t0 + hold` must come from
/// `backend` in one attempt; later ones (only on a badly overloaded machine: `stop` leaves a
/// margin) are not judged, but those that took a retry are counted. Returns (requests, retried).
pub(crate) fn only_backend(
    gw: &Gateway,
    backend: &str,
    t0: Instant,
    stop: Duration,
    hold: Duration,
) -> (usize, u64) {
    let (mut n, mut late) = (0, 0);
    while t0.elapsed() < stop {
        let r = chat(gw);
        if t0.elapsed() < hold {
            assert_served(&r, backend, 1);
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
            late += u64::from(r.header("x-aigw-attempts") != Some("1"));
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    (n, late)
}

/// Sleep until `t`.
pub(crate) fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

const THREE: &str = "[models]\n\"*\" = \"p\"\n";

fn three_mocks(weights: [u32; 3]) -> String {
    let members = format!(
        "{{ backend = \"a\", weight = {} }}, {{ backend = \"b\", weight = {} }}, {{ backend = \"c\", weight = {} }}",
        weights[0], weights[1], weights[2]
    );
    config(
        2,
        &format!(
            "{}{}{}{}{THREE}",
            mocked("a", ""),
            mocked("b", ""),
            mocked("c", ""),
            pool("", &members)
        ),
    )
}

/// Send `n` requests, 25 per client connection (new connections spread over the workers), and
/// count who served them; check every mock saw exactly what the headers claim.
fn split(gw: &Gateway, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let body = chat_body(Some(MODEL), false);
    for _ in 0..n / 25 {
        let mut c = gw.client();
        for _ in 0..25 {
            let r = c.call("POST", "/v1/chat/completions", &[], body.as_bytes());
            assert_eq!(
                (r.status, r.header("x-aigw-attempts")),
                (200, Some("1")),
                "{}",
                r.text()
            );
            *counts
                .entry(
                    r.header("x-aigw-backend")
                        .expect("x-aigw-backend")
                        .to_string(),
                )
                .or_insert(0) += 1;
        }
    }
    for name in ["a", "b", "c"] {
        let seen = counts.get(name).copied().unwrap_or(0);
        assert_eq!(
            total(gw, name),
            seen as u64,
            "mock {name} disagrees with x-aigw-backend ({counts:?})"
        );
    }
    counts
}

#[track_caller]
fn assert_shares(counts: &BTreeMap<String, usize>, n: usize, expected: [(&str, f64); 3]) {
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    for (name, pct) in expected {
        let got = counts.get(name).copied().unwrap_or(0) as f64 * 100.0 / n as f64;
        assert!(
            (got - pct).abs() <= 5.0,
            "{name}: {got:.1}% of {n}, expected {pct}% ± 5 ({counts:?})"
        );
    }
}

fn weighted_split_follows_weights(d: Driver) {
    let gw = Gateway::start(d, &three_mocks([80, 10, 10]));
    let counts = split(&gw, 1000);
    assert_shares(&counts, 1000, [("a", 80.0), ("b", 10.0), ("c", 10.0)]);
}

fn equal_weights_split_evenly(d: Driver) {
    let gw = Gateway::start(d, &three_mocks([1, 1, 1]));
    let counts = split(&gw, 1000);
    let third = 100.0 / 3.0;
    assert_shares(&counts, 1000, [("a", third), ("b", third), ("c", third)]);
}

// ---------------------------------------------------------------------------------------------
// Benching: Retry-After, then bench_for
// ---------------------------------------------------------------------------------------------

/// `first` (priority 1, failing with `faults`) in front of the healthy `second` (priority 2).
pub(crate) fn two_groups(faults: &str, pool_extra: &str) -> String {
    let members = "{ backend = \"first\", priority = 1 }, { backend = \"second\", priority = 2 }";
    config(
        2,
        &format!(
            "{}{}{}",
            mocked("first", faults),
            mocked("second", ""),
            pool(pool_extra, members)
        ),
    )
}

/// `first` fails the first request, which `second` then serves; `first` sees nothing more until
/// its bench of `bench` ends (checked up to `bench - 0.5 s` after sending), then traffic again
/// (checked `bench + 0.5 s` after the answer).
fn bench_then_return(gw: &Gateway, bench: Duration) {
    warm(gw, "second");
    let t0 = Instant::now();
    let r = chat(gw);
    let t1 = Instant::now();
    assert_served(&r, "second", 2);
    assert_eq!((total(gw, "first"), total(gw, "second")), (1, 1));
    let b = backend_state(gw, "first");
    assert_eq!(b["available"], false, "{b}");
    assert!(
        b["benched_for_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= bench.as_millis() as u64),
        "{b}"
    );

    // The bench started after t0: nothing reaches `first` before t0 + bench.
    let stop = bench - Duration::from_millis(500);
    let (during, late) = only_backend(gw, "second", t0, stop, bench);
    assert!(during >= 5, "only {during} requests during the bench");
    assert_eq!(
        total(gw, "first"),
        1 + late,
        "a benched backend got traffic"
    );

    sleep_until(t1 + bench + Duration::from_millis(500));
    assert_eq!(backend_state(gw, "first")["available"], true);
    // Tried again: it fails again (fail_every = 1) and the request falls over once more.
    assert_served(&chat(gw), "second", 2);
    assert_eq!(total(gw, "first"), 2 + late, "the bench did not end");
}

fn priority_failover_honours_retry_after(d: Driver) {
    // bench_for (60 s) is the fallback: the 429's Retry-After: 2 must win.
    let gw = Gateway::start(
        d,
        &two_groups(
            "fail_status = 429\nfail_every = 1\nretry_after = 2",
            "bench_for = \"60s\"",
        ),
    );
    bench_then_return(&gw, Duration::from_secs(2));
    let seen = gw.mock_requests("second");
    assert!(
        seen.iter().all(|r| r["path"] == "/v1/chat/completions"),
        "{seen:?}"
    );
}

fn status_500_benches_for_bench_for(d: Driver) {
    let gw = Gateway::start(
        d,
        &two_groups(
            "fail_status = 500\nfail_every = 1",
            "bench_for = \"1500ms\"",
        ),
    );
    bench_then_return(&gw, Duration::from_millis(1500));
}
