//! Reply shapes: chat and text completions (JSON and SSE), embeddings, models, routes.

use serde_json::Value;

use super::*;

#[test]
fn chat_json_shape_and_usage() {
    let o = opts("eastus");
    let r = post(&o, "/v1/chat/completions", CHAT);
    assert_eq!(r.status, 200);
    assert_eq!(header_of(&r, "content-type"), Some("application/json"));
    assert_eq!(header_of(&r, "x-ms-region"), Some("eastus"));
    assert!(header_of(&r, "x-ratelimit-remaining-tokens").is_some());
    assert!(header_of(&r, "x-ratelimit-remaining-requests").is_some());
    let v = json(&r);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("Mock response from eastus."));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let usage = &v["usage"];
    let completion = tokens::count("gpt-4o", text) as u64;
    let prompt = tokens::estimate_prompt("gpt-4o", CHAT.as_bytes()) as u64;
    assert_eq!(usage["completion_tokens"], completion);
    assert_eq!(usage["prompt_tokens"], prompt);
    assert_eq!(usage["total_tokens"], prompt + completion);
    assert_eq!(prompt, 9);
}

#[test]
fn azure_paths_use_the_deployment() {
    let o = opts("r");
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&o, "/openai/deployments/my-gpt/chat/completions", body);
    assert_eq!(json(&r)["model"], "my-gpt");
    let r = post(&o, "/openai/v1/chat/completions", body);
    assert_eq!(json(&r)["model"], "gpt-4o-mini");
}

#[test]
fn chat_stream_frames() {
    for chunks in [1, 3, 5, 20] {
        let o = MockOptions {
            chunks,
            chunk_delay_ms: 7,
            ..opts("west")
        };
        let r = post(&o, "/v1/chat/completions", CHAT_STREAM);
        assert_eq!(header_of(&r, "content-type"), Some("text/event-stream"));
        let MockBody::Sse { chunk_delay_ms, .. } = r.body else {
            panic!()
        };
        assert_eq!(chunk_delay_ms, 7);
        let (f, done) = frames(&r);
        assert!(done);
        assert!(f.iter().all(|v| v["object"] == "chat.completion.chunk"));
        assert!(f.iter().all(|v| v.get("usage").is_none()));
        assert_eq!(f[0]["choices"][0]["delta"]["role"], "assistant");
        let content: Vec<&str> = f
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content.len(), chunks as usize);
        assert!(content.concat().starts_with("Mock response from west."));
        let last = f.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(f.len(), chunks as usize + 2);
    }
}

#[test]
fn chat_stream_usage_frame_only_when_asked() {
    let o = opts("west");
    let r = post(&o, "/v1/chat/completions", CHAT_STREAM_USAGE);
    let (f, done) = frames(&r);
    assert!(done);
    assert_eq!(f.len(), 5 + 3);
    let usage_frame = f.last().unwrap();
    assert_eq!(usage_frame["choices"].as_array().unwrap().len(), 0);
    let text: String = f
        .iter()
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
        .collect();
    let completion = tokens::count("gpt-4o", &text) as u64;
    assert_eq!(usage_frame["usage"]["completion_tokens"], completion);
    assert_eq!(usage_frame["usage"]["prompt_tokens"], 9);
    assert_eq!(usage_frame["usage"]["total_tokens"], 9 + completion);
    assert!(f[..f.len() - 1].iter().all(|v| v["usage"].is_null()));
}

#[test]
fn completions_json_and_stream() {
    let o = opts("r");
    let v = json(&post(
        &o,
        "/v1/completions",
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":"hello world"}"#,
    ));
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(
        v["usage"]["completion_tokens"],
        tokens::count("gpt-3.5-turbo-instruct", text) as u64
    );
    let body = r#"{"prompt":"hi","stream":true,"stream_options":{"include_usage":true}}"#;
    let (f, done) = frames(&post(&o, "/v1/completions", body));
    assert!(done);
    let texts: Vec<&str> = f
        .iter()
        .filter_map(|v| v["choices"][0]["text"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(texts.len(), 5);
    assert!(f.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn embeddings_shape_dimensions_and_similarity() {
    let o = opts("r");
    let body = r#"{"model":"text-embedding-3-small","input":["the quick brown fox","the quick brown dog","quarterly revenue projections spreadsheet"]}"#;
    let r = post(&o, "/v1/embeddings", body);
    let v = json(&r);
    assert_eq!(v["object"], "list");
    let vecs: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(vecs.len(), 3);
    assert!(vecs.iter().all(|e| e.len() == DEFAULT_DIMENSIONS));
    assert!(cosine(&vecs[0], &vecs[1]) > cosine(&vecs[0], &vecs[2]) + 0.3);
    assert_eq!(v["data"][2]["index"], 2);
    let prompt = tokens::estimate_prompt("text-embedding-3-small", body.as_bytes()) as u64;
    assert_eq!(v["usage"]["prompt_tokens"], prompt);
    assert_eq!(v["usage"]["total_tokens"], prompt);
    // Deterministic across calls, and `dimensions` is honoured.
    assert_eq!(json(&post(&o, "/v1/embeddings", body)), v);
    let v = json(&post(
        &o,
        "/v1/embeddings",
        r#"{"input":"hello","dimensions":256}"#,
    ));
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    let v = json(&post(
        &o,
        "/v1/embeddings",
        r#"{"input":"hello","encoding_format":"base64","dimensions":3}"#,
    ));
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 16);
    assert_eq!(post(&o, "/v1/embeddings", r#"{"model":"x"}"#).status, 400);
}

#[test]
fn other_routes() {
    let o = opts("r");
    let s = MockShared::new("r");
    let r = call(&o, &s, "GET", "/", &[], "");
    assert_eq!(json(&r)["message"], "aigw mock upstream is running");
    let r = call(&o, &s, "GET", "/v1/models", &[], "");
    assert_eq!(json(&r)["data"][0]["id"], "gpt-4o-mini");
    let r = call(&o, &s, "GET", "/openai/deployments/dep1/models", &[], "");
    assert_eq!(json(&r)["data"][0]["id"], "dep1");
    let r = call(&o, &s, "GET", "/v1/models/gpt-4.1", &[], "");
    assert_eq!(json(&r)["id"], "gpt-4.1");
    let r = call(&o, &s, "GET", "/nope", &[], "");
    assert_eq!(r.status, 404);
    assert!(json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nope"));
    let r = call(&o, &s, "GET", "/v1/chat/completions", &[], "");
    assert_eq!(r.status, 405);
    let r = call(&o, &s, "POST", "/v1/chat/completions", &[], "not json");
    assert_eq!(r.status, 400);
    assert!(json(&r)["error"]["message"].is_string());
    assert_eq!(header_of(&r, "x-ms-region"), Some("r"));
    let stats: Value = serde_json::from_slice(&s.stats_json()).unwrap();
    assert_eq!(stats["total"], 7);
    assert_eq!(stats["by_operation"]["models"], 3);
    assert_eq!(stats["by_operation"]["other"], 2);
    assert_eq!(stats["by_operation"]["chat/completions"], 2);
    assert_eq!(stats["failed"], 3);
}
