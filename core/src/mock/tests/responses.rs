//! The Responses API: create (JSON and events), stored objects, and what the usage tap reads.

use super::*;
use crate::openai::UsageTap;

const CREATE: &str = r#"{"model":"gpt-4o","instructions":"Be brief.","input":"hello world"}"#;

fn tap(reply: &MockReply) -> crate::openai::Tapped {
    let mut t = UsageTap::new(matches!(reply.body, MockBody::Sse { .. }), 1 << 20, 1 << 16);
    match &reply.body {
        MockBody::Full(b) => t.feed(b),
        MockBody::Sse { events, .. } => events.iter().for_each(|e| t.feed(&e)),
    }
    t.finish()
}

#[test]
fn create_answers_a_response_object_the_tap_reads() {
    let o = opts("eastus");
    let shared = MockShared::new("eastus");
    for path in ["/v1/responses", "/openai/v1/responses", "/openai/responses"] {
        let r = call(&o, &shared, "POST", path, &[], CREATE);
        assert_eq!(r.status, 200, "{path}");
        let v = json(&r);
        assert_eq!(
            (v["object"].as_str(), v["status"].as_str()),
            (Some("response"), Some("completed"))
        );
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("Mock response from eastus."));
        let input = tokens::estimate_prompt("gpt-4o", CREATE.as_bytes()) as u64;
        let output = tokens::count("gpt-4o", text) as u64;
        assert_eq!(v["usage"]["input_tokens"], input);
        assert_eq!(v["usage"]["output_tokens"], output);
        assert_eq!(v["usage"]["total_tokens"], input + output);
        let t = tap(&r);
        assert_eq!(t.usage.map(|u| u.total_tokens), Some(input + output));
        assert_eq!(t.text, text);
        assert_eq!(t.response_id.as_deref(), v["id"].as_str());
    }
    assert_eq!(shared.count_for("responses"), 3);
}

#[test]
fn a_stream_is_typed_events_ending_in_response_completed() {
    let o = MockOptions {
        chunks: 4,
        ..opts("westus")
    };
    let shared = MockShared::new("westus");
    let body = r#"{"model":"gpt-4o","input":[{"role":"user","content":"hi"}],"stream":true}"#;
    let r = call(&o, &shared, "POST", "/v1/responses", &[], body);
    assert_eq!(header_of(&r, "content-type"), Some("text/event-stream"));
    let MockBody::Sse { events, .. } = &r.body else {
        panic!("expected SSE")
    };
    let mut kinds = Vec::new();
    let mut deltas = String::new();
    for (i, e) in events.iter().enumerate() {
        let s = std::str::from_utf8(&e).unwrap();
        let (ev, data) = s.strip_suffix("\n\n").unwrap().split_once('\n').unwrap();
        let kind = ev.strip_prefix("event: ").unwrap();
        let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["type"], kind);
        assert_eq!(v["sequence_number"], i as u64);
        if kind == "response.output_text.delta" {
            deltas += v["delta"].as_str().unwrap();
        }
        kinds.push(kind.to_owned());
    }
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
    assert_eq!(kinds.last().map(String::as_str), Some("response.completed"));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "response.output_text.delta")
            .count(),
        4
    );
    let t = tap(&r);
    assert!(t.stream);
    assert_eq!(t.text, deltas);
    assert!(t
        .usage
        .is_some_and(|u| u.prompt_tokens > 0 && u.completion_tokens > 0));
    // The stored object is the completed one.
    let id = t.response_id.unwrap();
    let got = call(&o, &shared, "GET", &format!("/v1/responses/{id}"), &[], "");
    assert_eq!(json(&got)["output"][0]["content"][0]["text"], deltas);
}

#[test]
fn stored_objects_live_only_where_they_were_created() {
    let o = opts("eastus");
    let (here, elsewhere) = (MockShared::new("eastus"), MockShared::new("eastus"));
    let id = json(&call(&o, &here, "POST", "/v1/responses", &[], CREATE))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = json(&call(&o, &elsewhere, "POST", "/v1/responses", &[], CREATE))["id"].clone();
    assert_ne!(other, id.as_str(), "ids are unique across mocks");
    let get = |shared: &MockShared, method: &str, path: String, body: &str| {
        call(&o, shared, method, &path, &[], body)
    };
    let r = get(&here, "GET", format!("/openai/responses/{id}"), "");
    assert_eq!(
        (r.status, json(&r)["id"].as_str()),
        (200, Some(id.as_str()))
    );
    let r = get(&here, "GET", format!("/v1/responses/{id}/input_items"), "");
    let items = json(&r);
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"][0]["content"][0]["text"], "hello world");
    assert_eq!(
        get(&here, "POST", format!("/v1/responses/{id}/cancel"), "").status,
        400
    );
    assert_eq!(
        get(&here, "PUT", format!("/v1/responses/{id}"), "").status,
        405
    );
    // Elsewhere: not found, and a continuation is refused as OpenAI refuses it.
    let r = get(&elsewhere, "GET", format!("/v1/responses/{id}"), "");
    assert_eq!(r.status, 404);
    let follow = format!(r#"{{"model":"gpt-4o","input":"more","previous_response_id":"{id}"}}"#);
    let r = get(&elsewhere, "POST", "/v1/responses".into(), &follow);
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["error"]["param"], "previous_response_id");
    assert_eq!(
        get(&here, "POST", "/v1/responses".into(), &follow).status,
        200
    );
    // Deleted: gone.
    let r = get(&here, "DELETE", format!("/v1/responses/{id}"), "");
    assert_eq!((r.status, json(&r)["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(
        get(&here, "GET", format!("/v1/responses/{id}"), "").status,
        404
    );
    // `store: false` is not kept.
    let v = json(&get(
        &here,
        "POST",
        "/v1/responses".into(),
        r#"{"input":"x","store":false}"#,
    ));
    let r = get(
        &here,
        "GET",
        format!("/v1/responses/{}", v["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn the_store_is_bounded() {
    let o = opts("r");
    let shared = MockShared::new("r");
    let first = json(&call(&o, &shared, "POST", "/v1/responses", &[], CREATE))["id"].clone();
    for _ in 0..STORED_CAPACITY {
        call(&o, &shared, "POST", "/v1/responses", &[], CREATE);
    }
    let r = call(
        &o,
        &shared,
        "GET",
        &format!("/v1/responses/{}", first.as_str().unwrap()),
        &[],
        "",
    );
    assert_eq!(r.status, 404);
}
