//! Upstream hints and breaker timing: a hostile `Retry-After` is capped, half-open means exactly
//! one probe decides (a slow request that started before the breaker opened cannot reopen it),
//! and a backend named by a host name (re-resolved on `dns_ttl`) keeps working.
//!
//! See `tests/hostile.rs`.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

both_drivers!(
    huge_retry_after_is_capped_at_an_hour,
    max_upstream_hint_brings_the_member_back,
    stale_failure_during_half_open_does_not_reopen,
    host_name_backend_is_resolved_and_refreshed,
);

/// One gateway (2 workers) in front of the in-process mock `x`, pool `p` = [x], with `gateway`
/// and `backend` lines added to their tables.
fn one_member(gateway: &str, backend: &str, pool: &str) -> String {
    format!(
        "[gateway]\nlisten = \"{{addr:listen}}\"\nadmin_listen = \"{{addr:admin}}\"\nworkers = 2\n{gateway}\n\n\
         [mocks.x]\nlisten = \"{{addr:x}}\"\nregion = \"x\"\n\n\
         [backends.x]\nurl = \"http://{{addr:x}}\"\n{backend}\n\n\
         [pools.p]\nmembers = [{{ backend = \"x\" }}]\n{pool}\n"
    )
}

fn chat_with(gw: &Gateway, headers: &[(&str, &str)]) -> Response {
    gw.call(
        "POST",
        "/v1/chat/completions",
        headers,
        chat_body(Some("gpt-4o-mini"), false).as_bytes(),
    )
}

/// The entry of backend `name` in the admin `/backends` JSON.
fn backend_state(gw: &Gateway, name: &str) -> Value {
    gw.backend(name)
}

fn wait_backend(gw: &Gateway, name: &str, limit: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    gw.wait_backend(name, limit, cond)
}

fn transitions(gw: &Gateway, to: &str) -> f64 {
    gw.metric(&format!(
        "aigw_breaker_transitions_total{{backend=\"x\",to=\"{to}\"}}"
    ))
}

const HUGE: &str = "99999999999999999";
const HOUR_MS: u64 = 3_600_000;

/// `Retry-After: 99999999999999999` (and `retry-after-ms` of u64::MAX with it) used to bench the
/// member and hold its breaker open practically forever. With the default cap both sit out at
/// most one hour.
fn huge_retry_after_is_capped_at_an_hour(d: Driver) {
    let breaker = "[backends.x.circuit_breaker]\nfailures = 1\nstatus = [429]\n";
    let gw = Gateway::start(d, &one_member("", breaker, ""));
    let r = chat_with(
        &gw,
        &[("x-mock-status", "429"), ("x-mock-retry-after", HUGE)],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.header("retry-after"),
        Some(HUGE),
        "the mock sent the hint"
    );
    let b = backend_state(&gw, "x");
    assert_eq!(b["breaker"], "open", "{b}");
    for key in ["benched_for_ms", "breaker_open_for_ms"] {
        let ms = b[key].as_u64().expect("a number");
        // A minute of margin below the cap for a slow machine; nothing above it.
        assert!(
            (HOUR_MS - 60_000..=HOUR_MS).contains(&ms),
            "{key} = {ms}, not capped at one hour: {b}"
        );
    }
}

/// `[gateway] max_upstream_hint` lowers the cap: the member is back after it.
fn max_upstream_hint_brings_the_member_back(d: Driver) {
    let breaker = "[backends.x.circuit_breaker]\nfailures = 1\nstatus = [429]\n";
    let gw = Gateway::start(
        d,
        &one_member("max_upstream_hint = \"1s\"", breaker, "bench_for = \"0s\""),
    );
    let t0 = Instant::now();
    let r = chat_with(
        &gw,
        &[("x-mock-status", "429"), ("x-mock-retry-after", HUGE)],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let b = backend_state(&gw, "x");
    assert!(
        b["benched_for_ms"].as_u64().is_some_and(|ms| ms <= 1000),
        "{b}"
    );
    // Back within the cap (plus a wide margin for a loaded machine), then it serves again.
    wait_backend(&gw, "x", Duration::from_secs(10), |b| {
        b["available"] == true
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "hint not applied"
    );
    let r = chat_with(&gw, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backend_state(&gw, "x")["breaker"], "closed");
}

/// A slow request S is on its way to x while the breaker is closed; a fast failure F opens it;
/// once due, a slow probe P is let through (half-open). S then fails, during half-open: it started
/// before the breaker changed state, so its outcome must be ignored. P succeeds and closes it.
/// Before the fix S reopened the breaker and P's success was lost.
fn stale_failure_during_half_open_does_not_reopen(d: Driver) {
    let breaker = "[backends.x.circuit_breaker]\nfailures = 1\nstatus = [500]\nopen_for = \"1s\"\n";
    let gw = Gateway::start(d, &one_member("", breaker, "bench_for = \"0s\""));
    // The mock's first answer builds its tokenizer (slow in a debug build): not inside the timing.
    assert_eq!(chat_with(&gw, &[]).status, 200);

    thread::scope(|s| {
        let t_s = Instant::now();
        let slow = s.spawn(|| {
            chat_with(
                &gw,
                &[("x-mock-status", "500"), ("x-mock-latency-ms", "3000")],
            )
        });
        wait_backend(&gw, "x", Duration::from_secs(5), |b| b["in_flight"] == 1);
        let f = chat_with(&gw, &[("x-mock-status", "500")]);
        assert_eq!(f.status, 500, "{}", f.text());
        assert_eq!(backend_state(&gw, "x")["breaker"], "open");

        wait_backend(&gw, "x", Duration::from_secs(5), |b| b["available"] == true);
        let t_p = Instant::now();
        let probe = s.spawn(|| chat_with(&gw, &[("x-mock-latency-ms", "4000")]));
        wait_backend(&gw, "x", Duration::from_secs(5), |b| {
            b["breaker"] == "half_open"
        });
        // S's outcome cannot exist before t_s + 3 s (the mock holds it that long).
        assert!(
            t_s.elapsed() < Duration::from_millis(2900),
            "machine too slow: the probe started after the slow request could have finished"
        );

        let r = slow.join().expect("slow client");
        assert_eq!(r.status, 500, "{}", r.text());
        let state = backend_state(&gw, "x");
        // Nor P's before t_p + 4 s: so far only S can have moved the breaker.
        assert!(
            t_p.elapsed() < Duration::from_millis(3900),
            "machine too slow: the probe may have finished before the slow request"
        );
        assert_eq!(
            state["breaker"], "half_open",
            "a request that started while closed decided the probe: {state}"
        );

        let p = probe.join().expect("probe client");
        assert_eq!(p.status, 200, "{}", p.text());
        assert_eq!(backend_state(&gw, "x")["breaker"], "closed");
    });
    let t = |to| transitions(&gw, to);
    assert_eq!((t("open"), t("half_open"), t("closed")), (1.0, 1.0, 1.0));
}

/// A backend URL with a host name (`localhost`) works, and keeps working across re-resolutions.
fn host_name_backend_is_resolved_and_refreshed(d: Driver) {
    let port = free_addr().port();
    let text = format!(
        "[gateway]\nlisten = \"{{addr:listen}}\"\nadmin_listen = \"{{addr:admin}}\"\nworkers = 2\n\
         dns_ttl = \"1s\"\n\n\
         [mocks.x]\nlisten = \"127.0.0.1:{port}\"\nregion = \"x\"\n\n\
         [backends.x]\nurl = \"http://localhost:{port}\"\n\n\
         [pools.p]\nmembers = [{{ backend = \"x\" }}]\n"
    );
    let gw = Gateway::start(d, &text);
    for _ in 0..3 {
        let r = chat_with(&gw, &[("connection", "close")]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-aigw-backend"), Some("x"));
        thread::sleep(Duration::from_millis(1200));
    }
}
