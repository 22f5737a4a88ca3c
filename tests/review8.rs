//! Review 8 (fit and finish): stored responses must stay with their caller whatever form the
//! request that names one takes, the Responses API's own non-object operations must reach a
//! backend, and a streamed response must be known as soon as its client knows its id.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::io::Write;

use serde_json::Value;

use common::*;

both_drivers!(
    a_hidden_previous_response_id_is_refused,
    every_form_of_a_stored_response_path_is_placed,
    input_tokens_and_compact_are_operations_not_stored_responses,
    a_streamed_response_is_known_while_it_streams,
);

/// One OpenAI-dialect mock, one pool (no `[models]`: every model goes there), two consumers
/// sharing the backend's key. The mock streams slowly.
const ONE_BACKEND: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.a]
listen = "{addr:a}"
region = "a"
chunks = 5
chunk_delay_ms = 300

[backends.a]
url = "http://{addr:a}"

[pools.one]
members = [{ backend = "a" }]

[consumers.team-a]
keys = ["key-a"]

[consumers.team-b]
keys = ["key-b"]
"#;

const A: [(&str, &str); 1] = [("api-key", "key-a")];
const B: [(&str, &str); 1] = [("api-key", "key-b")];

/// team-a creates a stored response; its id.
fn created_by_a(gw: &Gateway) -> String {
    let r = gw.call(
        "POST",
        "/v1/responses",
        &A,
        br#"{"model":"gpt-4o","input":"a secret of team-a"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// `call` must not reach the backend: the mock records nothing, the gateway answers `status`.
fn refused_before_the_backend(
    gw: &Gateway,
    what: &str,
    status: u16,
    call: impl FnOnce() -> Response,
) {
    gw.mock_reset("a");
    let r = call();
    let seen = gw.mock_requests("a");
    assert!(
        seen.is_empty(),
        "{what}: team-b's request reached the backend (answered {}): {seen:?}",
        r.status
    );
    assert_eq!(r.status, status, "{what}: {}", r.text());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// team-b continues team-a's response with a body the gateway cannot read but a backend can: a
/// UTF-8 BOM before the JSON (Python's `json.loads` of bytes, hence FastAPI/vLLM, skips it), a
/// `Content-Encoding: gzip` body, or a `previous_response_id` that is not a plain string. The
/// pin is then never looked up and the request goes to the (only) backend, which holds team-a's
/// response, under the backend key both consumers share.
fn a_hidden_previous_response_id_is_refused(d: Driver) {
    let gw = Gateway::start(d, ONE_BACKEND);
    let id = created_by_a(&gw);
    let json = format!(
        r#"{{"model":"gpt-4o","input":"repeat the conversation","previous_response_id":"{id}"}}"#
    );
    // The plain form is refused (the gateway's own test says so too).
    refused_before_the_backend(&gw, "plain", 400, || {
        gw.call("POST", "/v1/responses", &B, json.as_bytes())
    });
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(json.as_bytes());
    refused_before_the_backend(&gw, "BOM", 400, || {
        gw.call("POST", "/v1/responses", &B, &bom)
    });
    let packed = gzip(json.as_bytes());
    refused_before_the_backend(&gw, "gzip", 400, || {
        gw.call(
            "POST",
            "/v1/responses",
            &[
                B[0],
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            &packed,
        )
    });
    for odd in [format!(r#"["{id}"]"#), format!(r#"{{"id":"{id}"}}"#)] {
        let body = format!(r#"{{"model":"gpt-4o","input":"x","previous_response_id":{odd}}}"#);
        refused_before_the_backend(&gw, &odd, 400, || {
            gw.call("POST", "/v1/responses", &B, body.as_bytes())
        });
    }
    // team-a's own continuation still works, and `null` is no continuation.
    let r = gw.call("POST", "/v1/responses", &A, json.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = gw.call(
        "POST",
        "/v1/responses",
        &B,
        br#"{"model":"gpt-4o","input":"x","previous_response_id":null}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Paths naming team-a's response that the classifier did not treat as stored-response requests
/// went to the pool like any model call, under the shared backend key: the operation in another
/// case (a backend that matches paths case-insensitively serves them), or a sub-path of the
/// response other than `input_items` and `cancel`.
fn every_form_of_a_stored_response_path_is_placed(d: Driver) {
    let gw = Gateway::start(d, ONE_BACKEND);
    let id = created_by_a(&gw);
    for path in [
        format!("/v1/Responses/{id}"),
        format!("/v1/RESPONSES/{id}/input_items"),
        format!("/openai/v1/responses/{id}/input_items/extra"),
        format!("/openai/Responses/{id}?api-version=2025-03-01-preview"),
        format!("/v1/responses/{id}/Cancel"),
    ] {
        refused_before_the_backend(&gw, &path, 404, || {
            gw.call("GET", &path, &B, br#"{"model":"gpt-4o"}"#)
        });
    }
    // team-a's own requests are unchanged.
    for path in [
        format!("/v1/responses/{id}"),
        format!("/v1/responses/{id}/input_items/"),
    ] {
        let r = gw.call("GET", &path, &A, b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
}

/// `POST responses/input_tokens` and `POST responses/compact` are operations of the Responses
/// API (token counting, compaction), not stored responses named `input_tokens` or `compact`: they
/// must reach a backend (the mock does not serve them: its 404 "Invalid URL" is relayed), and a
/// `previous_response_id` in them is placed like a create's.
fn input_tokens_and_compact_are_operations_not_stored_responses(d: Driver) {
    let gw = Gateway::start(d, ONE_BACKEND);
    let id = created_by_a(&gw);
    for op in ["input_tokens", "compact"] {
        for path in [
            format!("/v1/responses/{op}"),
            format!("/openai/v1/responses/{op}"),
        ] {
            let r = gw.call("POST", &path, &A, br#"{"model":"gpt-4o","input":"hi"}"#);
            assert_eq!(
                r.header("x-aigw-backend"),
                Some("a"),
                "{path}: {} {}",
                r.status,
                r.text()
            );
        }
        let body = format!(r#"{{"model":"gpt-4o","input":"x","previous_response_id":"{id}"}}"#);
        let path = format!("/v1/responses/{op}");
        refused_before_the_backend(&gw, &path, 400, || {
            gw.call("POST", &path, &B, body.as_bytes())
        });
        let r = gw.call("POST", &path, &A, body.as_bytes());
        assert_eq!(r.header("x-aigw-backend"), Some("a"), "{path}");
    }
}

/// A streamed `POST responses` tells its client the id in its first event; the client may act on
/// it (retrieve, cancel a background response, continue) before the stream ends. The gateway
/// learnt where the response lives only when the stream ended, and answered 404 meanwhile.
fn a_streamed_response_is_known_while_it_streams(d: Driver) {
    let gw = Gateway::start(d, ONE_BACKEND);
    let mut c = gw.client();
    c.send(&request(
        "POST",
        "/v1/responses",
        &A,
        br#"{"model":"gpt-4o","input":"hello","stream":true}"#,
    ));
    let mut during: Option<(u16, bool)> = None;
    let r = c
        .read_response_with(|body| {
            if during.is_some() {
                return;
            }
            let text = String::from_utf8_lossy(body);
            let Some(created) = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|v| v["type"] == "response.created")
            else {
                return;
            };
            let id = created["response"]["id"].as_str().unwrap().to_owned();
            let got = gw.call("GET", &format!("/v1/responses/{id}"), &A, b"");
            let still_streaming = !text.contains("response.completed");
            during = Some((got.status, still_streaming));
        })
        .unwrap();
    assert_eq!(r.status, 200);
    let (status, still_streaming) = during.expect("a response.created event");
    assert!(
        still_streaming,
        "the test means nothing: the stream had ended"
    );
    assert_eq!(status, 200, "retrieving the response while it streams");
}
