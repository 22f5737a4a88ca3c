//! The Responses API and Azure's paths (issue 8): every path the SDKs send reaches each backend
//! dialect as that dialect serves it; stored responses are served by the backend that holds them,
//! to the caller that created them only; Responses usage is metered, a retrieval is not.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use serde_json::Value;

use common::*;

both_drivers!(
    every_client_path_reaches_each_dialect,
    stored_responses_follow_their_backend_and_their_caller,
    responses_usage_is_metered_and_retrieval_is_free,
);

/// The last request the mock `name` saw: its path (with query) and headers.
fn last_seen(gw: &Gateway, name: &str) -> (String, Value, String) {
    let seen = gw.mock_requests(name);
    let last = seen.last().expect("the mock saw a request").clone();
    (
        last["path"].as_str().unwrap().to_owned(),
        last["headers"].clone(),
        last["body"].as_str().unwrap_or("").to_owned(),
    )
}

fn every_client_path_reaches_each_dialect(d: Driver) {
    let gw = Gateway::start(d, THREE_DIALECTS);
    let version = "2025-03-01-preview";
    // The Responses API in the three client styles: OpenAI SDK, OpenAI SDK on Azure's v1 URL,
    // AzureOpenAI SDK.
    let styles = [
        "/v1/responses".to_owned(),
        "/openai/v1/responses".to_owned(),
        format!("/openai/responses?api-version={version}"),
    ];
    for style in &styles {
        for (model, mock, want_path, auth) in [
            ("m-oa", "oa", "/v1/responses".to_owned(), "authorization"),
            ("m-v1", "v1", "/openai/v1/responses".to_owned(), "api-key"),
            (
                "m-az",
                "az",
                format!(
                    "/openai/responses?api-version={}",
                    if style.contains('?') {
                        version
                    } else {
                        "2024-06-01"
                    }
                ),
                "api-key",
            ),
        ] {
            let body = format!(r#"{{"model":"{model}","input":"hello"}}"#);
            let r = gw.call("POST", style, &[("api-key", "client-key")], body.as_bytes());
            assert_eq!(r.status, 200, "{style} {model}: {}", r.text());
            assert_eq!(r.json()["object"], "response");
            let (path, headers, sent) = last_seen(&gw, mock);
            assert_eq!(path, want_path, "{style} {model}");
            assert!(headers.get(auth).is_some(), "{style} {model}: {headers}");
            assert!(!headers.to_string().contains("client-key"), "{headers}");
            assert_eq!(
                serde_json::from_str::<Value>(&sent).unwrap()["model"],
                model
            );
        }
    }
    // Deployment operations in both client styles: the classic Azure dialect gets them under
    // its deployment, the others with the model in the body (added when the client's body
    // named none).
    for op in [
        "chat/completions",
        "embeddings",
        "images/generations",
        "audio/speech",
    ] {
        for (model, mock, want) in [
            (
                "m-az",
                "az",
                format!("/openai/deployments/m-az/{op}?api-version=2024-06-01"),
            ),
            ("m-v1", "v1", format!("/openai/v1/{op}")),
            ("m-oa", "oa", format!("/v1/{op}")),
        ] {
            let body = br#"{"input":"hi","prompt":"a cat","messages":[]}"#;
            let azure = format!("/openai/deployments/{model}/{op}?api-version=2024-06-01");
            gw.call("POST", &azure, &[], body);
            let (path, _, sent) = last_seen(&gw, mock);
            assert_eq!(path, want, "{azure}");
            let sent: Value = serde_json::from_str(&sent).unwrap();
            if mock == "az" {
                assert_eq!(sent.get("model"), None, "{sent}");
            } else {
                assert_eq!(sent["model"], model, "{azure}");
            }
            let oa_body = format!(r#"{{"model":"{model}","input":"hi"}}"#);
            gw.call("POST", &format!("/v1/{op}"), &[], oa_body.as_bytes());
            assert_eq!(last_seen(&gw, mock).0, want, "/v1/{op}");
        }
    }
}

/// Two OpenAI-dialect mocks behind one pool (round robin) and two consumers.
const TWO_MEMBERS: &str = r#"
[gateway]
listen = "{addr:listen}"
admin_listen = "{addr:admin}"
workers = 1

[mocks.a]
listen = "{addr:a}"
region = "a"

[mocks.b]
listen = "{addr:b}"
region = "b"

[backends.a]
url = "http://{addr:a}"

[backends.b]
url = "http://{addr:b}"

[pools.two]
members = [{ backend = "a" }, { backend = "b" }]

[models]
"*" = "two"

[consumers.team-a]
keys = ["key-a"]

[consumers.team-b]
keys = ["key-b"]
"#;

fn create(gw: &Gateway, key: &str, stream: bool, previous: Option<&str>) -> (String, String) {
    let prev = previous.map_or(String::new(), |p| {
        format!(r#","previous_response_id":"{p}""#)
    });
    let body = format!(r#"{{"model":"gpt-4o","input":"hello","stream":{stream}{prev}}}"#);
    let r = gw.call(
        "POST",
        "/v1/responses",
        &[("api-key", key)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let backend = r.header("x-aigw-backend").unwrap().to_owned();
    let id = if stream {
        let text = r.text();
        let created = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        let v: Value = serde_json::from_str(created).unwrap();
        assert_eq!(v["type"], "response.created");
        v["response"]["id"].as_str().unwrap().to_owned()
    } else {
        r.json()["id"].as_str().unwrap().to_owned()
    };
    (id, backend)
}

fn stored_responses_follow_their_backend_and_their_caller(d: Driver) {
    let gw = Gateway::start(d, TWO_MEMBERS);
    let made: Vec<(String, String)> = (0..4)
        .map(|i| create(&gw, "key-a", i % 2 == 1, None))
        .collect();
    // Round robin spread them over both members: the test means something.
    assert!(made.iter().any(|(_, b)| b == "a") && made.iter().any(|(_, b)| b == "b"));
    let a = [("api-key", "key-a")];
    for (id, backend) in &made {
        for path in [
            format!("/v1/responses/{id}"),
            format!("/openai/responses/{id}?api-version=2025-03-01-preview"),
            format!("/v1/responses/{id}/input_items"),
        ] {
            let r = gw.call("GET", &path, &a, b"");
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.header("x-aigw-backend"), Some(backend.as_str()), "{path}");
        }
        // A continuation goes where its previous response lives, many times over.
        for _ in 0..3 {
            let (_, went) = create(&gw, "key-a", false, Some(id));
            assert_eq!(&went, backend);
        }
    }
    let (id, _) = &made[0];
    // Another consumer cannot reach team-a's response, nor continue it.
    let b = [("api-key", "key-b")];
    let r = gw.call("GET", &format!("/v1/responses/{id}"), &b, b"");
    r.assert_openai_error(404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    assert_eq!(r.header("x-aigw-backend"), None, "no backend was asked");
    let body = format!(r#"{{"model":"gpt-4o","input":"x","previous_response_id":"{id}"}}"#);
    let r = gw.call("POST", "/v1/responses", &b, body.as_bytes());
    r.assert_openai_error(400);
    assert_eq!(r.json()["error"]["param"], "previous_response_id");
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
    // An id nobody created, a hostile one, a too long one.
    for bogus in [
        "resp_nobody".to_owned(),
        "resp_%2e%2e".to_owned(),
        "r".repeat(300),
    ] {
        let r = gw.call("GET", &format!("/v1/responses/{bogus}"), &a, b"");
        assert!(matches!(r.status, 404), "{bogus}: {}", r.status);
    }
    // Deleted through the gateway: gone from the backend and from the gateway's memory.
    let r = gw.call("DELETE", &format!("/v1/responses/{id}"), &a, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    let r = gw.call("GET", &format!("/v1/responses/{id}"), &a, b"");
    r.assert_openai_error(404);
    assert_eq!(r.header("x-aigw-backend"), None);
}

/// Sum of `aigw_tokens_total{type="total",…}` in `/metrics`.
fn total_tokens(gw: &Gateway) -> f64 {
    gw.admin("GET", "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("aigw_tokens_total{") && l.contains(r#"type="total""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn responses_usage_is_metered_and_retrieval_is_free(d: Driver) {
    let gw = Gateway::start(d, THREE_DIALECTS);
    let mut want = 0.0;
    for stream in [false, true] {
        let body = format!(r#"{{"model":"m-oa","input":"count me","stream":{stream}}}"#);
        let r = gw.call("POST", "/v1/responses", &[], body.as_bytes());
        assert_eq!(r.status, 200);
        let usage = if stream {
            let text = r.text();
            let done = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                .find(|v| v["type"] == "response.completed")
                .expect("response.completed");
            done["response"]["usage"].clone()
        } else {
            r.json()["usage"].clone()
        };
        want += usage["total_tokens"].as_f64().unwrap();
        assert!(
            gw.metrics_within(|_| total_tokens(&gw) == want),
            "{} != {want}",
            total_tokens(&gw)
        );
    }
    let id = {
        let r = gw.call(
            "POST",
            "/v1/responses",
            &[],
            br#"{"model":"m-oa","input":"x"}"#,
        );
        want += r.json()["usage"]["total_tokens"].as_f64().unwrap();
        r.json()["id"].as_str().unwrap().to_owned()
    };
    assert!(gw.metrics_within(|_| total_tokens(&gw) == want));
    for _ in 0..3 {
        let r = gw.call("GET", &format!("/v1/responses/{id}"), &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.json()["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }
    // Counted after the answer: give the record a moment, then the sum must not have moved.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(gw.metrics_within(|m| m.contains("aigw_requests_total")));
    assert_eq!(total_tokens(&gw), want);
}
