//! Fit and finish (issue 8): what a new user sees of the process itself: the banner, the log
//! format, the driver switch, `aigw check`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

both_drivers!(
    banner_lists_the_admin_endpoints_and_counts_plainly,
    admin_root_lists_the_endpoints,
    a_due_breaker_shows_as_half_open,
    gateway_answers_have_one_error_shape_and_an_id,
    a_timed_out_backend_is_named,
    a_recognised_key_is_counted_even_when_refused,
);

/// The banner names `/backends` among the admin endpoints, says "1 worker" (not "1 workers") and
/// quotes the demo's URL that carries a `?` (a shell would glob it).
fn banner_lists_the_admin_endpoints_and_counts_plainly(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let out = gw.proc.stdout();
    assert!(out.contains("(1 worker, "), "{out}");
    let admin = gw.addr("admin");
    assert!(out.contains(&format!("http://{admin}/backends")), "{out}");
}

#[test]
fn a_bogus_driver_name_is_an_error() {
    for bogus in ["iouring", "epol", "URING!"] {
        // `serve` refuses before it binds anything (the demo's ports included).
        let mut child = Command::new(AIGW)
            .args(["serve"])
            .env("AIGW_DRIVER", bogus)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("aigw serve with AIGW_DRIVER={bogus} kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "{bogus}: {err}");
        assert!(
            err.contains("AIGW_DRIVER") && err.contains(bogus),
            "{bogus}: {err}"
        );
    }
}

/// Logs written to a file or a pipe carry no ANSI colour codes.
#[test]
fn logs_to_a_pipe_have_no_colours() {
    let dir = TempDir::new("ansi");
    let cfg = dir.path("gw.toml");
    let admin = free_addr();
    write_atomic(
        &cfg,
        &format!(
            "[gateway]\nlisten = \"{}\"\nadmin_listen = \"{admin}\"\nworkers = 1\n\n[backends.b]\nurl = \"http://127.0.0.1:9\"\n\n[pools.p]\nmembers = [{{ backend = \"b\" }}]\n\n[models]\n\"*\" = \"p\"\n",
            free_addr()
        ),
    );
    let mut child = Command::new(AIGW)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while health(admin) != Some(200) {
        assert!(t0.elapsed() < START_LIMIT, "aigw did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "aigw did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("draining"), "an info line was expected: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in piped logs: {err:?}"
    );
}

/// `aigw check` counts in words that agree with the numbers.
#[test]
fn check_counts_plainly() {
    let dir = TempDir::new("check");
    let cfg = dir.path("gw.toml");
    write_atomic(
        &cfg,
        "[backends.b]\nurl = \"http://127.0.0.1:9\"\n\n[pools.p]\nmembers = [{ backend = \"b\" }]\n\n[models]\n\"*\" = \"p\"\n",
    );
    let out = Command::new(AIGW)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok (1 backend, 1 pool, 1 model, 0 mocks)"),
        "{text}"
    );
}

/// `GET /` on the admin port answers with an index of the admin endpoints.
fn admin_root_lists_the_endpoints(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let r = gw.admin("GET", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let paths: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/backends",
            "/reload",
            "/cache",
            "/cache"
        ],
        "{v}"
    );
}

/// A breaker whose open period ran out lets the next pick through as its probe: `/backends`
/// says `half_open` (ready for a probe), not `open`.
fn a_due_breaker_shows_as_half_open(d: Driver) {
    let template = TWO_DIALECTS.replace(
        "api_key = \"oa-backend-key\"",
        "api_key = \"oa-backend-key\"\ncircuit_breaker = { failures = 1, window = \"60s\", open_for = \"1s\" }",
    );
    let template = template.replace(
        "[pools.p_oa]\nmembers = [{ backend = \"oa\" }]",
        "[pools.p_oa]\nmembers = [{ backend = \"oa\" }]\nbench_for = \"0s\"",
    );
    let gw = Gateway::start(d, &template);
    let state = || gw.backend("oa");
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let b = state();
    assert_eq!(b["breaker"], "open", "{b}");
    let t0 = Instant::now();
    while state()["available"] != true {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", state());
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = state();
    assert_eq!(b["breaker"], "half_open", "{b}");
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state()["breaker"], "closed");
}

/// Every answer the gateway makes itself carries `x-request-id` and, when it is an error, the one
/// OpenAI shape: exactly `message`, `type`, `param`, `code`.
fn gateway_answers_have_one_error_shape_and_an_id(d: Driver) {
    let template = TWO_DIALECTS.replace("workers = 1", "workers = 1\nmax_body_bytes = 1000")
        + "\n[consumers.team]\nkeys = [\"team-key\"]\nmodels = [\"m-oa\"]\n";
    let gw = Gateway::start(d, &template);
    let key = ("api-key", "team-key");
    let chat = |m: &str| chat_body(Some(m), false);
    let big = vec![b' '; 2000];
    let cases: Vec<(u16, Vec<u8>)> = vec![
        (404, request("POST", "/v2/nothing", &[key], b"{}")),
        (401, request("POST", "/v1/chat/completions", &[], chat("m-oa").as_bytes())),
        (400, request("POST", "/v1/chat/completions", &[key], b"{not json")),
        (400, request("POST", "/v1/chat/completions", &[key], chat("bad\u{7}name").as_bytes())),
        (403, request("POST", "/v1/chat/completions", &[key], chat("m-az").as_bytes())),
        (405, request("POST", "/v1/models", &[key], b"{}")),
        (413, request("POST", "/v1/chat/completions", &[key], &big)),
        (400, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
    ];
    for (status, bytes) in cases {
        let mut c = gw.client();
        c.send(&bytes);
        let r = c.read_response();
        assert_eq!(r.status, status, "{}", r.text());
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{status}: {:?}",
            r.headers
        );
        let v = r.json();
        let mut keys: Vec<&str> = v["error"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "param", "type"], "{status}: {v}");
    }
    let r = gw.call("GET", "/v1/models", &[key], b"");
    assert_eq!(r.status, 200);
    assert!(r.header("x-request-id").is_some());
}

/// A 504 says which backend timed out and how many attempts were made.
fn a_timed_out_backend_is_named(d: Driver) {
    let template = TWO_DIALECTS.replace("workers = 1", "workers = 1\nupstream_timeout = \"300ms\"");
    let gw = Gateway::start(d, &template);
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-latency-ms", "3000")],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    r.assert_openai_error(504);
    assert_eq!(r.header("x-aigw-backend"), Some("oa"), "{:?}", r.headers);
    assert_eq!(r.header("x-aigw-attempts"), Some("1"), "{:?}", r.headers);
    assert!(r.header("x-request-id").is_some());
}

/// Once the key is recognised the consumer is on the metrics, refusals included (a 403 for a
/// model it may not use).
fn a_recognised_key_is_counted_even_when_refused(d: Driver) {
    let template = TWO_DIALECTS.to_string()
        + "\n[consumers.team]\nkeys = [\"team-key\"]\nmodels = [\"m-oa\"]\n";
    let gw = Gateway::start(d, &template);
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("api-key", "team-key")],
        chat_body(Some("m-az"), false).as_bytes(),
    );
    r.assert_openai_error(403);
    let want = r#"aigw_consumer_requests_total{consumer="team",status="403"} 1"#;
    assert!(
        gw.metrics_within(|m| m.contains(want)),
        "{want} not in\n{}",
        gw.admin("GET", "/metrics").text()
    );
}
