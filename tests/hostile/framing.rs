//! Values that cross into the upstream request, and the front door's order of checks.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

both_drivers!(
    model_cannot_smuggle_a_second_request,
    model_cannot_walk_the_backend_path,
    client_errors_never_touch_backend_health,
    body_model_must_match_the_deployment,
    unauthenticated_callers_get_no_continue_and_no_body_read,
    unauthenticated_bodies_never_become_labels,
    body_buffering_is_bounded_per_worker,
    drain_timeout_bounds_the_shutdown,
    odd_request_ids_are_replaced,
    a_client_that_hangs_up_cancels_its_upstream_request,
);

/// An open gateway (no consumers) whose `"*"` route goes to an Azure-dialect mock, and a model
/// routed to an OpenAI-dialect mock. The Azure member has a breaker that opens on 3 failures.
const OPEN_AZURE: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.az]
listen = "{addr:az}"

[mocks.oa]
listen = "{addr:oa}"

[backends.az]
url = "http://{addr:az}"
dialect = "azure"
api_key = "az-backend-key"
circuit_breaker = { failures = 3, window = "60s", open_for = "60s" }

[backends.oa]
url = "http://{addr:oa}"
dialect = "openai"
api_key = "oa-backend-key"

[pools.p_az]
members = [{ backend = "az" }]

[pools.p_oa]
members = [{ backend = "oa" }]

[models]
"gpt-4o-mini" = "p_oa"
"*" = "p_az"
"#;

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// The review's reproduction: a `model` that would end the request line and start a second
/// request carrying the backend key. The gateway refuses it; the backend sees nothing, and the
/// pooled connection still answers the next caller with its own answer.
fn model_cannot_smuggle_a_second_request(d: Driver) {
    let gw = Gateway::start(d, OPEN_AZURE);
    // Warm a pooled connection first.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat("gpt-4o").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    gw.mock_reset("az");
    let evil = "x/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\nDELETE /openai/files/file-123?api-version=2024-10-21&x=";
    let r = gw.call("POST", "/v1/chat/completions", &[], chat(evil).as_bytes());
    let msg = r.assert_openai_error(400);
    assert!(msg.contains("control character"), "{msg}");
    // Without the control characters: still not a path segment.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat("x/chat/completions?api-version=2024-10-21&").as_bytes(),
    );
    r.assert_openai_error(400);
    assert!(
        gw.mock_requests("az").is_empty(),
        "{:?}",
        gw.mock_requests("az")
    );
    for i in 0..3 {
        let r = gw.call(
            "POST",
            "/v1/chat/completions",
            &[],
            chat("gpt-4o").as_bytes(),
        );
        assert_eq!(r.status, 200, "{i}: {}", r.text());
        assert_eq!(r.json()["object"], "chat.completion");
    }
    let seen = gw.mock_requests("az");
    assert_eq!(seen.len(), 3, "{seen:?}");
    for s in &seen {
        assert_eq!(s["method"], "POST");
        assert!(
            s["path"]
                .as_str()
                .unwrap()
                .starts_with("/openai/deployments/gpt-4o/chat/completions?"),
            "{s}"
        );
    }
}

/// `../` or `%2e%2e` in a model or deployment would walk the backend's path with its key.
fn model_cannot_walk_the_backend_path(d: Driver) {
    let gw = Gateway::start(d, OPEN_AZURE);
    for model in [
        "../../openai/files",
        "..",
        "%2e%2e",
        "a%2fb",
        "a#b",
        "a b",
        "a?b",
    ] {
        let r = gw.call("POST", "/v1/chat/completions", &[], chat(model).as_bytes());
        r.assert_openai_error(400);
    }
    for dep in ["%2e%2e", "a%2fb", "a;b%00"] {
        let t = format!("/openai/deployments/{dep}/chat/completions?api-version=2024-10-21");
        let r = gw.call("POST", &t, &[], b"{}");
        assert!(r.status == 400 || r.status == 404, "{dep}: {}", r.status);
    }
    assert!(
        gw.mock_requests("az").is_empty(),
        "{:?}",
        gw.mock_requests("az")
    );
    // Real-world names that only travel in the body still work where the body carries them.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Anonymous junk (`{}`, no model) to an Azure pool is the client's error: it never benches a
/// member nor trips a breaker, so it cannot take the pool down.
fn client_errors_never_touch_backend_health(d: Driver) {
    let gw = Gateway::start(d, OPEN_AZURE);
    for body in ["{}", r#"{"model":""}"#, r#"{"model":"a/b"}"#] {
        for _ in 0..5 {
            let r = gw.call("POST", "/v1/chat/completions", &[], body.as_bytes());
            r.assert_openai_error(400);
        }
    }
    let az = gw.backend("az");
    assert_eq!(az["failures"], 0, "{az}");
    assert_eq!(az["breaker"], "closed", "{az}");
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat("gpt-4o").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A consumer allowed only `gpt-4o-mini` calls that deployment with body `"model": "o1-pro"`
/// against an OpenAI-dialect backend: refused, so what is checked is what runs. Without a body
/// model the backend gets the deployment's.
fn body_model_must_match_the_deployment(d: Driver) {
    let template = OPEN_AZURE.replace(
        "[pools.p_az]",
        "[consumers.team]\nkeys = [\"team-key\"]\nmodels = [\"gpt-4o-mini\"]\n\n[pools.p_az]",
    );
    let gw = Gateway::start(d, &template);
    let t = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
    let key = [("api-key", "team-key")];
    let r = gw.call("POST", t, &key, chat("o1-pro").as_bytes());
    let msg = r.assert_openai_error(400);
    assert!(msg.contains("conflicts"), "{msg}");
    assert!(gw.mock_requests("oa").is_empty());
    let body = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = gw.call("POST", t, &key, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = gw.mock_requests("oa");
    assert_eq!(seen.len(), 1);
    let sent: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini", "{sent}");
    let r = gw.call("POST", t, &key, chat("gpt-4o-mini").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

const WITH_CONSUMER: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.m]
listen = "{addr:m}"

[backends.m]
url = "http://{addr:m}"
dialect = "openai"

[pools.p]
members = [{ backend = "m" }]

[models]
"*" = "p"

[consumers.team]
keys = ["team-key"]
"#;

/// Read whatever arrives within `limit` (until the peer closes or goes quiet).
fn read_some(c: &mut Client, limit: Duration) -> Vec<u8> {
    c.set_timeout(Duration::from_millis(300));
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    out
}

/// Authentication comes before the body: no `100 Continue` for a caller without a valid key,
/// its body is never read (the answer comes at once, then the connection closes), and a
/// multipart body with a huge boundary costs nothing.
fn unauthenticated_callers_get_no_continue_and_no_body_read(d: Driver) {
    let gw = Gateway::start(d, WITH_CONSUMER);
    let mut c = gw.client();
    c.send(b"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: gw\r\ncontent-type: multipart/form-data; boundary=aaaa\r\ncontent-length: 1048576\r\nexpect: 100-continue\r\n\r\n");
    let got = String::from_utf8_lossy(&read_some(&mut c, Duration::from_secs(3))).into_owned();
    assert!(got.starts_with("HTTP/1.1 401 "), "{got}");
    assert!(!got.contains("100 Continue"), "{got}");
    assert!(c.closed_within(Duration::from_secs(3)));
    // A known key gets its 100 Continue.
    let mut c = gw.client();
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\napi-key: team-key\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n");
    let got = String::from_utf8_lossy(&read_some(&mut c, Duration::from_secs(2))).into_owned();
    assert!(got.starts_with("HTTP/1.1 100 Continue\r\n"), "{got}");
    c.stream.write_all(b"{}").unwrap();
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Nothing an unidentified caller sends becomes a metric label.
fn unauthenticated_bodies_never_become_labels(d: Driver) {
    let gw = Gateway::start(d, WITH_CONSUMER);
    for i in 0..20 {
        let model = format!("attacker-label-{i}-{}", "x".repeat(1000));
        let r = gw.call(
            "POST",
            "/v1/chat/completions",
            &[("api-key", "wrong")],
            chat(&model).as_bytes(),
        );
        r.assert_openai_error(401);
    }
    let m = gw.admin("GET", "/metrics").text();
    assert!(
        !m.contains("attacker-label"),
        "a pre-auth value became a label"
    );
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key")],
        chat("known-after-auth").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A request is counted just after its answer is written: give the worker a moment.
    assert!(gw.metrics_within(|m| m.contains("known-after-auth")));
}

/// Request bodies one worker buffers at once are bounded: a body that does not fit the budget
/// is answered 503 with Retry-After, and the budget comes back when the holder is done.
fn body_buffering_is_bounded_per_worker(d: Driver) {
    let template = WITH_CONSUMER.replace(
        "workers = 1",
        "workers = 1\nmax_body_bytes = 100000\nmax_buffered_body_bytes = 150000",
    );
    let gw = Gateway::start(d, &template);
    let head = |n: usize| {
        format!("POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\napi-key: team-key\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n")
    };
    // The first client sends most of a 100000-byte body and stalls: it holds what it sent. The
    // budget is charged as bytes arrive, so announcing alone holds nothing.
    let mut first = gw.client();
    first.send(head(100_000).as_bytes());
    first.send(&[b' '; 99_000]);
    let mut idle = gw.client();
    idle.send(head(100_000).as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let mut second = gw.client();
    second.send(head(100_000).as_bytes());
    second.send(&[b' '; 60_000]);
    let r = second.read_response();
    r.assert_openai_error(503);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // Small bodies still fit beside the held one.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key")],
        chat("m").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Once the first finishes, its share is free again.
    let mut rest = vec![b' '; 100_000 - 99_000];
    let body = chat("m");
    rest[..body.len()].copy_from_slice(body.as_bytes());
    first.send(&rest);
    let r = first.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut third = gw.client();
    let mut big = vec![b' '; 100_000];
    big[..body.len()].copy_from_slice(body.as_bytes());
    third.send(head(100_000).as_bytes());
    third.send(&big);
    assert_eq!(third.read_response().status, 200);
}

/// `drain_timeout` bounds how long SIGTERM waits for requests in flight.
fn drain_timeout_bounds_the_shutdown(d: Driver) {
    let template = WITH_CONSUMER.replace("workers = 1", "workers = 1\ndrain_timeout = \"1s\"");
    let mut gw = Gateway::start(d, &template);
    let mut c = gw.client();
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key"), ("x-mock-latency-ms", "20000")],
        chat("m").as_bytes(),
    ));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    gw.proc.signal("TERM");
    while gw.proc.alive() && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!gw.proc.alive(), "still draining after 15 s");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

/// A client's `x-request-id` is echoed only when it is short visible ASCII.
fn odd_request_ids_are_replaced(d: Driver) {
    let gw = Gateway::start(d, WITH_CONSUMER);
    let key = ("api-key", "team-key");
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[key, ("x-request-id", "abc-123")],
        chat("m").as_bytes(),
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let long = "r".repeat(300);
    for odd in ["a b", long.as_str(), "caf\u{e9}"] {
        let r = gw.call(
            "POST",
            "/v1/chat/completions",
            &[key, ("x-request-id", odd)],
            chat("m").as_bytes(),
        );
        assert_eq!(r.status, 200);
        let got = r.header("x-request-id").unwrap();
        assert_ne!(got, odd);
        assert!(
            got.len() <= 200 && got.bytes().all(|b| b.is_ascii_graphic()),
            "{got}"
        );
    }
}

/// A client that disconnects while waiting for its answer cancels the upstream request: the
/// attempt ends at once (the backend is no longer counted busy) instead of when the backend
/// finally answers, and the request is logged as 499.
fn a_client_that_hangs_up_cancels_its_upstream_request(d: Driver) {
    let gw = Gateway::start(d, WITH_CONSUMER);
    let in_flight = || {
        let b = gw.admin("GET", "/backends").json();
        b["backends"][0]["in_flight"].as_i64().unwrap()
    };
    let mut c = gw.client();
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key"), ("x-mock-latency-ms", "8000")],
        chat("m").as_bytes(),
    ));
    let t0 = Instant::now();
    while in_flight() == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(in_flight(), 1);
    drop(c);
    let t0 = Instant::now();
    while in_flight() != 0 && t0.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(in_flight(), 0, "the upstream attempt outlived its client");
    assert!(gw.metrics_within(|m| m.lines().any(|l| l.contains("status=\"499\""))));
    // A pipelining client that sent its next request early is not mistaken for a hang-up.
    let mut c = gw.client();
    let mut two = request(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key"), ("x-mock-latency-ms", "300")],
        chat("m").as_bytes(),
    );
    two.extend(request(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key")],
        chat("m").as_bytes(),
    ));
    c.send(&two);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().status, 200);
}
