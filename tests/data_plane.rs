//! The data plane over loopback: path styles × backend dialects, embeddings, streaming, keep-alive
//! (client and upstream) and pipelining. Request bodies are in `bodies.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

both_drivers!(
    path_styles_reach_each_dialect,
    embeddings_are_relayed,
    streaming_arrives_incrementally,
    keep_alive_reuses_client_and_upstream_connections,
    pipelined_requests_answered_in_order,
);

const CLIENT_VERSION: &str = "2025-01-01-preview";

/// What the mock of `dialect` must see for a request of `op` about `model` sent with the client's
/// api-version `client_version` (None for the OpenAI path styles).
fn expected_upstream_path(
    backend: &str,
    op: &str,
    model: &str,
    client_version: Option<&str>,
) -> String {
    match backend {
        "oa" => format!("/v1/{op}"),
        _ => format!(
            "/openai/deployments/{model}/{op}?api-version={}",
            client_version.unwrap_or("2024-06-01")
        ),
    }
}

/// The request target and body for each client path style.
fn styles(op: &str, model: &str, body: &Value) -> Vec<(String, String, Option<&'static str>)> {
    let mut with_model = body.clone();
    with_model["model"] = Value::from(model);
    vec![
        (format!("/v1/{op}"), with_model.to_string(), None),
        (format!("/openai/v1/{op}"), with_model.to_string(), None),
        (
            format!("/openai/deployments/{model}/{op}?api-version={CLIENT_VERSION}"),
            body.to_string(),
            Some(CLIENT_VERSION),
        ),
    ]
}

/// Send `op` in every path style to both backends and check what each mock received.
fn check_all_styles(gw: &Gateway, op: &str, body: &Value, check_reply: impl Fn(&str, &Response)) {
    for (backend, model) in [("oa", "m-oa"), ("az", "m-az")] {
        for (target, sent, client_version) in styles(op, model, body) {
            let ctx = format!("{target} -> {backend}");
            gw.mock_reset("oa");
            gw.mock_reset("az");
            let r = gw.call(
                "POST",
                &target,
                &[("Content-Type", "application/json")],
                sent.as_bytes(),
            );
            assert_eq!(r.status, 200, "{ctx}: {}", r.text());
            assert_eq!(r.header("x-aigw-backend"), Some(backend), "{ctx}");
            check_reply(backend, &r);

            let other = if backend == "oa" { "az" } else { "oa" };
            assert!(
                gw.mock_requests(other).is_empty(),
                "{ctx}: the other backend was called"
            );
            let seen = gw.mock_requests(backend);
            assert_eq!(seen.len(), 1, "{ctx}: {seen:?}");
            let seen = &seen[0];
            assert_eq!(seen["method"], "POST", "{ctx}");
            assert_eq!(
                seen["path"],
                expected_upstream_path(backend, op, model, client_version),
                "{ctx}"
            );
            // An Azure-style call names its model in the path only; an OpenAI-dialect backend
            // reads it from the body, so the gateway adds it there. Otherwise bodies are relayed
            // byte for byte.
            let expected = if backend == "oa" && client_version.is_some() {
                format!("{{\"model\":\"{model}\",{}", &sent[1..])
            } else {
                sent.clone()
            };
            assert_eq!(
                seen["body"],
                expected.as_str(),
                "{ctx}: body must be relayed unchanged but for the model"
            );
            let h = &seen["headers"];
            assert_eq!(h["content-length"], expected.len().to_string(), "{ctx}");
            if backend == "oa" {
                assert_eq!(h["authorization"], "Bearer oa-backend-key", "{ctx}: {h}");
                assert!(h.get("api-key").is_none(), "{ctx}: {h}");
            } else {
                assert_eq!(h["api-key"], "az-backend-key", "{ctx}: {h}");
                assert!(h.get("authorization").is_none(), "{ctx}: {h}");
            }
            assert_eq!(
                h["host"],
                gw.addr(backend).to_string(),
                "{ctx}: Host must be the backend's"
            );
        }
    }
}

fn path_styles_reach_each_dialect(d: Driver) {
    let gw = Gateway::start(d, &TWO_DIALECTS.replace("workers = 1", "workers = 2"));
    let body =
        serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5});
    check_all_styles(&gw, "chat/completions", &body, |backend, r| {
        let v = r.json();
        assert_eq!(v["object"], "chat.completion", "{v}");
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.starts_with(&format!("Mock response from {backend}.")),
            "{text}"
        );
    });
}

fn embeddings_are_relayed(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let body = serde_json::json!({"input": ["first text", "second text"]});
    check_all_styles(&gw, "embeddings", &body, |_, r| {
        let v = r.json();
        assert_eq!(v["object"], "list", "{v}");
        let data = v["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "{v}");
        for e in data {
            let emb = e["embedding"].as_array().expect("embedding");
            assert!(!emb.is_empty() && emb.iter().all(Value::is_number), "{e}");
        }
    });
}

fn streaming_arrives_incrementally(d: Driver) {
    let mock = MockProc::start(
        d,
        &["--chunks", "5", "--chunk-delay-ms", "200", "--region", "up"],
    );
    let config = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[backends.up]
url = "http://{addr:up}"
dialect = "azure"
api_key = "k"

[pools.p]
members = [{ backend = "up" }]

[models]
"*" = "p"
"#;
    let gw = Gateway::start_with(d, config, &[("up", mock.addr)]);
    for target in [
        "/v1/chat/completions",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
    ] {
        let mut c = gw.client();
        let s = c.stream(target, chat_body(Some("gpt-4o"), true).as_bytes());
        let (r, first, done, arrivals) = (s.response, s.first, s.done, s.arrivals);
        assert!(
            first + Duration::from_millis(500) < done,
            "{target}: first event at {first:?}, [DONE] at {done:?}: not streamed ({arrivals:?})"
        );
        assert!(
            arrivals.len() >= 4,
            "{target}: events arrived in too few bursts: {arrivals:?}"
        );
        let text = r.text();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert!(
            text.ends_with("\n\n"),
            "SSE frames must stay intact: {text:?}"
        );
        // The deltas add up to the mock's reply.
        let content: String = text
            .split("\n\n")
            .filter_map(|ev| ev.strip_prefix("data: "))
            .filter(|ev| *ev != "[DONE]")
            .map(|ev| serde_json::from_str::<Value>(ev).expect("event JSON"))
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert!(
            content.starts_with("Mock response from up. This is"),
            "{content}"
        );
        // The connection is still usable after a streamed answer.
        let r = c.call(
            "POST",
            target,
            &[],
            chat_body(Some("gpt-4o"), false).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn keep_alive_reuses_client_and_upstream_connections(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let mut c = gw.client();
    let targets = [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/v1/embeddings",
        "/v1/chat/completions",
    ];
    for (i, t) in targets.iter().enumerate() {
        let body = if t.ends_with("embeddings") {
            r#"{"model":"m-oa","input":"x"}"#.to_string()
        } else {
            chat_body(Some("m-oa"), i % 2 == 1)
        };
        let r = c.call("POST", t, &[], body.as_bytes());
        assert_eq!(
            r.status,
            200,
            "request {i} on the kept-alive connection: {}",
            r.text()
        );
        assert_ne!(r.header("connection"), Some("close"));
    }
    // Fresh client connections still share the one upstream connection.
    for _ in 0..2 {
        let r = gw.call(
            "POST",
            "/v1/chat/completions",
            &[],
            chat_body(Some("m-oa"), false).as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(gw.mock_requests("oa").len(), 6);
    assert_eq!(
        gw.metric("aigw_upstream_connects_total"),
        1.0,
        "upstream keep-alive not reused"
    );
    // `Connection: close` on a proxied request: answered, then closed.
    let r = c.call(
        "POST",
        "/v1/chat/completions",
        &[("Connection", "close")],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "Connection: close left the connection open"
    );
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = gw.client();
    c.send(b"GET /v1/models HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "HTTP/1.0 connection left open"
    );
}

fn pipelined_requests_answered_in_order(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let chat = chat_body(Some("m-oa"), false);
    let emb = r#"{"input":"pipelined"}"#;
    let mut all = request(
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "pipe-1")],
        chat.as_bytes(),
    );
    all.extend(request(
        "POST",
        "/openai/deployments/m-az/embeddings?api-version=2024-10-21",
        &[("X-Request-Id", "pipe-2")],
        emb.as_bytes(),
    ));
    all.extend(request("GET", "/v1/models", &[], b""));
    // An application error in the middle does not end the pipeline.
    all.extend(request(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("no-such-model"), false).as_bytes(),
    ));
    all.extend(request(
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "pipe-4")],
        chat.as_bytes(),
    ));
    let mut c = gw.client();
    c.send(&all); // one write
    let r1 = c.read_response();
    let r2 = c.read_response();
    let r3 = c.read_response();
    let bad = c.read_response();
    let r4 = c.read_response();
    let msg = bad.assert_openai_error(400);
    assert!(msg.contains("no-such-model"), "{msg}");
    assert_eq!(
        (r1.status, r2.status, r3.status, r4.status),
        (200, 200, 200, 200),
        "{}",
        r2.text()
    );
    assert_eq!(r1.header("x-request-id"), Some("pipe-1"));
    assert_eq!(r1.json()["object"], "chat.completion");
    assert_eq!(r2.header("x-request-id"), Some("pipe-2"));
    assert_eq!(r2.json()["data"][0]["object"], "embedding");
    assert_eq!(r3.json()["object"], "list");
    assert!(r3.json()["data"][0]["id"].is_string());
    assert_eq!(r4.header("x-request-id"), Some("pipe-4"));
    // Nothing extra arrives, and the connection still works.
    let r = c.call("GET", "/v1/models", &[], b"");
    assert_eq!(r.status, 200);
    let ids: Vec<Value> = gw
        .mock_requests("oa")
        .iter()
        .map(|r| r["headers"]["x-request-id"].clone())
        .collect();
    assert_eq!(ids, ["pipe-1", "pipe-4"]);
}
