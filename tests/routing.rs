//! What crosses the gateway: client credentials never do, request ids do; unknown models and paths
//! get OpenAI-shaped errors; `/v1/models` lists the configured models.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use common::*;
use serde_json::Value;

both_drivers!(
    client_credentials_never_reach_upstream,
    unknown_model_path_and_models_list,
    request_id_kept_or_generated,
    multipart_model_field_routes,
);

/// A multipart call (audio transcription) carries its model as a form field: it routes by it,
/// with no "*" entry, and the body reaches the backend byte for byte.
fn multipart_model_field_routes(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let body = "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFdata\r\n--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm-oa\r\n--b0undary--\r\n";
    let ct = [("Content-Type", "multipart/form-data; boundary=b0undary")];
    let r = gw.call("POST", "/v1/audio/transcriptions", &ct, body.as_bytes());
    assert_eq!(
        r.header("x-aigw-backend"),
        Some("oa"),
        "{} {}",
        r.status,
        r.text()
    );
    let seen = gw.mock_requests("oa");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["path"], "/v1/audio/transcriptions");
    assert_eq!(seen[0]["body"], body);
    // An unknown model in the form is refused like one in JSON.
    let other = body.replace("m-oa", "nope");
    let r = gw.call("POST", "/v1/audio/transcriptions", &ct, other.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("Invalid model or deployment-id"),
        "{}",
        r.text()
    );
}

const CLIENT_SECRETS: [&str; 4] = [
    "client-api-key",
    "client-bearer",
    "client-apim",
    "client-query-key",
];

fn client_credentials_never_reach_upstream(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let headers = [
        ("Api-Key", "client-api-key"),
        ("authorization", "Bearer client-bearer-second"),
        ("Authorization", "Bearer client-bearer"),
        ("Ocp-Apim-Subscription-Key", "client-apim"),
        ("X-Custom", "kept"),
    ];
    let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
    for (backend, model) in [("oa", "m-oa"), ("az", "m-az")] {
        let mut with_model = body.clone();
        with_model["model"] = Value::from(model);
        let requests = [
            ("/v1/chat/completions?api-key=client-query-key".to_string(), with_model.to_string()),
            (
                format!("/openai/deployments/{model}/chat/completions?api-key=client-query-key&api-version=2024-10-21"),
                body.to_string(),
            ),
            (
                format!("/openai/deployments/{model}/chat/completions?api-version=2024-10-21&api-key=client-query-key&x=1"),
                body.to_string(),
            ),
        ];
        for (target, sent) in requests {
            gw.mock_reset(backend);
            let r = gw.call("POST", &target, &headers, sent.as_bytes());
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            let seen = gw.mock_requests(backend);
            assert_eq!(seen.len(), 1);
            let raw = seen[0].to_string();
            for secret in CLIENT_SECRETS {
                assert!(
                    !raw.contains(secret),
                    "{target} -> {backend}: client credential {secret} leaked: {raw}"
                );
            }
            let h = &seen[0]["headers"];
            assert!(h.get("ocp-apim-subscription-key").is_none(), "{h}");
            assert_eq!(h["x-custom"], "kept", "ordinary headers are forwarded: {h}");
            if backend == "oa" {
                assert_eq!(h["authorization"], "Bearer oa-backend-key", "{h}");
                assert!(h.get("api-key").is_none(), "{h}");
            } else {
                assert_eq!(h["api-key"], "az-backend-key", "{h}");
                assert!(h.get("authorization").is_none(), "{h}");
            }
            let path = seen[0]["path"].as_str().unwrap();
            assert!(!path.contains("api-key"), "{path}");
        }
    }
    // A backend without a key gets no credential at all, not the client's.
    let keyless = TWO_DIALECTS.replace("api_key = \"oa-backend-key\"\n", "");
    drop(gw);
    let gw = Gateway::start(d, &keyless);
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &headers,
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &gw.mock_requests("oa")[0]["headers"];
    for k in ["authorization", "api-key", "ocp-apim-subscription-key"] {
        assert!(h.get(k).is_none(), "{k} sent to a keyless backend: {h}");
    }
}

fn unknown_model_path_and_models_list(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let mut c = gw.client();
    // Unknown model in the body, and as an Azure deployment: 400, and the connection stays usable.
    let r = c.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("gpt-nope"), false).as_bytes(),
    );
    let msg = r.assert_openai_error(400);
    assert!(msg.contains("Invalid model or deployment-id"), "{msg}");
    assert!(msg.contains("gpt-nope"), "{msg}");
    let r = c.call(
        "POST",
        "/openai/deployments/dep-nope/chat/completions?api-version=2024-10-21",
        &[],
        chat_body(None, false).as_bytes(),
    );
    let msg = r.assert_openai_error(400);
    assert!(
        msg.contains("Invalid model or deployment-id") && msg.contains("dep-nope"),
        "{msg}"
    );
    // No model at all.
    let r = c.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(None, false).as_bytes(),
    );
    r.assert_openai_error(400);
    // Unknown paths: 404.
    for target in [
        "/",
        "/v2/chat/completions",
        "/openai/deployments/x",
        "/v1/../admin",
        "/healthz",
    ] {
        let r = c.call("POST", target, &[], b"{}");
        r.assert_openai_error(404);
    }
    // Nothing reached a mock.
    assert!(gw.mock_requests("oa").is_empty() && gw.mock_requests("az").is_empty());
    // The models list names exactly the configured models (the "*" fallback is not a model).
    let r = c.call("GET", "/v1/models", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let mut ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["m-az", "m-oa"], "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["object"] == "model"));
    let r = c.call("GET", "/openai/models?api-version=2024-10-21", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));
    // A configured model still works on the same connection after all those errors.
    let r = c.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("m-az"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn request_id_kept_or_generated(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    for backend in ["oa", "az"] {
        let model = format!("m-{backend}");
        let body = chat_body(Some(&model), false);
        // Kept: the upstream sees it and the client gets it back.
        let r = gw.call(
            "POST",
            "/v1/chat/completions",
            &[("X-Request-Id", "client-rid-123")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-request-id"),
            Some("client-rid-123"),
            "{:?}",
            r.headers
        );
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
                .count(),
            1
        );
        let seen = gw.mock_requests(backend);
        assert_eq!(
            seen.last().unwrap()["headers"]["x-request-id"],
            "client-rid-123"
        );
        // Generated: non-empty, sent upstream, echoed, different per request, never the mock's own.
        let mut generated = Vec::new();
        for _ in 0..2 {
            let r = gw.call("POST", "/v1/chat/completions", &[], body.as_bytes());
            assert_eq!(r.status, 200);
            let rid = r
                .header("x-request-id")
                .expect("generated x-request-id")
                .to_string();
            assert!(!rid.is_empty() && !rid.starts_with("mock-"), "{rid}");
            let seen = gw.mock_requests(backend);
            assert_eq!(
                seen.last().unwrap()["headers"]["x-request-id"],
                rid.as_str()
            );
            generated.push(rid);
        }
        assert_ne!(generated[0], generated[1]);
    }
    // Also streamed answers echo it.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "rid-stream")],
        chat_body(Some("m-oa"), true).as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("rid-stream"));
}
