//! `storable`: what of a finished answer is stored, from JSON and from streams.

use serde_json::{json, Value};

use super::super::sse::{events, Event};
use super::*;

fn message(v: &Value) -> (&Value, &Value) {
    (
        &v["choices"][0]["message"]["content"],
        &v["choices"][0]["finish_reason"],
    )
}

#[test]
fn mock_answers_are_stored_alike_from_json_and_from_streams() {
    for chunks in [1, 5, 40] {
        let json = mock(CHAT_PATH, &chat_req(false, false), chunks);
        let s = storable(Operation::Chat, false, &json).unwrap();
        assert_eq!(s.json, json, "a JSON answer is stored verbatim");
        let v = value(&json);
        assert_eq!(s.tokens, v["usage"]["total_tokens"].as_u64().unwrap());
        let sse = mock(CHAT_PATH, &chat_req(true, true), chunks);
        let t = storable(Operation::Chat, true, &sse).unwrap();
        let w = value(&t.json);
        assert_eq!(message(&w), message(&v));
        assert_eq!(t.tokens, s.tokens);
        for k in ["id", "created", "model", "system_fingerprint", "usage"] {
            assert_eq!(w[k], v[k], "{k}");
        }
        assert_eq!(w["object"], "chat.completion");
        assert_eq!(w["choices"][0]["message"]["role"], "assistant");
        // No usage chunk asked for: stored, with 0 tokens.
        let sse = mock(CHAT_PATH, &chat_req(true, false), chunks);
        let t = storable(Operation::Chat, true, &sse).unwrap();
        assert_eq!((t.tokens, message(&value(&t.json))), (0, message(&v)));
    }
    // Text completions.
    let json = mock(CMPL_PATH, &cmpl_req(false, false), 5);
    let s = storable(Operation::Completions, false, &json).unwrap();
    let v = value(&json);
    let sse = mock(CMPL_PATH, &cmpl_req(true, true), 5);
    let w = value(&storable(Operation::Completions, true, &sse).unwrap().json);
    assert_eq!(w["choices"][0]["text"], v["choices"][0]["text"]);
    assert_eq!(
        (w["object"].as_str(), s.tokens),
        (
            Some("text_completion"),
            v["usage"]["total_tokens"].as_u64().unwrap()
        )
    );
    // Responses: the stream's `response.completed` object.
    let json = mock(RESP_PATH, &resp_req(false), 5);
    let s = storable(Operation::Responses, false, &json).unwrap();
    assert!(s.tokens > 0);
    let sse = mock(RESP_PATH, &resp_req(true), 5);
    let t = storable(Operation::Responses, true, &sse).unwrap();
    let (a, b) = (value(&json), value(&t.json));
    assert_eq!(
        a["output"][0]["content"][0]["text"],
        b["output"][0]["content"][0]["text"]
    );
    assert_eq!(
        (b["status"].as_str(), t.tokens),
        (Some("completed"), s.tokens)
    );
    // The wrong operation: not stored.
    assert!(storable(
        Operation::Completions,
        false,
        &mock(CHAT_PATH, &chat_req(false, false), 1)
    )
    .is_none());
    assert!(storable(Operation::Chat, false, &json).is_none());
}

#[test]
fn a_stream_cut_anywhere_is_never_stored() {
    for (op, sse) in [
        (Operation::Chat, mock(CHAT_PATH, &chat_req(true, true), 4)),
        (
            Operation::Completions,
            mock(CMPL_PATH, &cmpl_req(true, false), 4),
        ),
        (Operation::Responses, mock(RESP_PATH, &resp_req(true), 4)),
    ] {
        assert!(storable(op, true, &sse).is_some());
        // Even `data: [DONE]\n` without its blank line: the event was never dispatched.
        for cut in 0..sse.len() {
            assert!(
                storable(op, true, &sse[..cut]).is_none(),
                "{op:?} stored when cut at {cut}"
            );
        }
    }
}

#[test]
fn incomplete_and_failed_answers_are_not_stored() {
    let ok = json!({"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]});
    let chat = |v: &Value| storable(Operation::Chat, false, v.to_string().as_bytes());
    assert_eq!(chat(&ok).unwrap().tokens, 0, "no usage: 0 tokens");
    let with = |path: &[&str], x: Value| {
        let mut v = ok.clone();
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = if let Ok(i) = p.parse::<usize>() {
                &mut at[i]
            } else {
                &mut at[*p]
            };
        }
        let last = path[path.len() - 1];
        match last.parse::<usize>() {
            Ok(i) => at[i] = x,
            Err(_) => at[last] = x,
        }
        v
    };
    let fr = ["choices", "0", "finish_reason"];
    for bad in ["length", "content_filter", "function_call"] {
        assert!(chat(&with(&fr, json!(bad))).is_none(), "{bad}");
    }
    assert!(chat(&with(&fr, Value::Null)).is_none());
    assert!(
        chat(&with(&["choices", "0", "message", "content"], json!(""))).is_none(),
        "empty"
    );
    assert!(chat(&with(&["choices", "0", "message", "content"], json!(5))).is_none());
    assert!(chat(&with(&["choices", "0", "message", "role"], json!("user"))).is_none());
    let two = with(&["choices"], json!([ok["choices"][0], ok["choices"][0]]));
    assert!(chat(&two).is_none(), "n > 1");
    assert!(chat(&with(&["choices"], json!([]))).is_none());
    assert!(chat(&with(&["error"], json!({"message":"x"}))).is_none());
    assert!(chat(&json!({"error":{"message":"Rate limit","type":"requests"}})).is_none());
    assert!(storable(Operation::Chat, false, b"not json").is_none());
    assert!(storable(Operation::Chat, false, b"").is_none());
    assert!(storable(Operation::Chat, false, b"[1]").is_none());
    // A refusal is a complete answer.
    let refusal = with(
        &["choices", "0", "message"],
        json!({"role":"assistant","content":null,"refusal":"I can't help with that."}),
    );
    assert!(chat(&refusal).is_some());
    // Tool calls: stored when well-formed.
    let call = json!({"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}});
    let tools = with(
        &["choices", "0"],
        json!({"index":0,"message":{"role":"assistant","content":null,"tool_calls":[call]},"finish_reason":"tool_calls"}),
    );
    assert!(chat(&tools).is_some());
    for broken in [
        json!([]),
        json!([{"id":"c","type":"custom","custom":{"name":"x","input":""}}]),
        json!([{"type":"function","function":{"name":"f","arguments":"{}"}}]),
        json!("x"),
    ] {
        let b = with(&["choices", "0", "message", "tool_calls"], broken.clone());
        assert!(chat(&with(
            &["choices", "0", "finish_reason"],
            json!("tool_calls")
        ))
        .is_none());
        let mut b = b;
        b["choices"][0]["finish_reason"] = json!("tool_calls");
        assert!(chat(&b).is_none(), "{broken}");
    }
    // Responses.
    let resp = json!({"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","id":"m","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3},"incomplete_details":null,"error":null});
    let r = |v: &Value| storable(Operation::Responses, false, v.to_string().as_bytes());
    assert_eq!(r(&resp).unwrap().tokens, 3);
    for (k, x) in [
        ("status", json!("incomplete")),
        ("status", json!("failed")),
        ("status", json!("in_progress")),
        ("incomplete_details", json!({"reason":"max_output_tokens"})),
        ("error", json!({"code":"server_error"})),
        ("output", json!([])),
    ] {
        let mut v = resp.clone();
        v[k] = x;
        assert!(r(&v).is_none(), "{k}");
    }
}

#[test]
fn streams_are_read_as_the_event_stream_rules_say() {
    let chunk = |content: &str, finish: Value| {
        json!({"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":content},"finish_reason":finish}]}).to_string()
    };
    let a = chunk("Hel", Value::Null);
    let b = chunk("lo", Value::Null);
    let c = chunk("", json!("stop"));
    // CRLF, a comment, `data:` without the space, a BOM, a data line split in two, an `id:` field.
    let (a1, a2) = a.split_at(20);
    let body = format!("\u{feff}: keep-alive\r\ndata:{a1}\r\ndata: {a2}\r\n\r\nid: 7\ndata: {b}\n\ndata: {c}\r\rdata: [DONE]\n\n");
    let s = storable(Operation::Chat, true, body.as_bytes()).unwrap();
    // a1/a2 joined with "\n": still JSON (whitespace), so the content is intact.
    assert_eq!(value(&s.json)["choices"][0]["message"]["content"], "Hello");
    assert_eq!(value(&s.json)["id"], "c1");
    // Events after [DONE], a second choice, logprobs, an error event, no finish: not stored.
    let done = "data: [DONE]\n\n";
    let base = format!("data: {a}\n\ndata: {c}\n\n");
    assert!(storable(Operation::Chat, true, format!("{base}{done}").as_bytes()).is_some());
    assert!(storable(
        Operation::Chat,
        true,
        format!("{base}{done}data: {b}\n\n").as_bytes()
    )
    .is_none());
    assert!(storable(
        Operation::Chat,
        true,
        format!("data: {a}\n\n{done}").as_bytes()
    )
    .is_none());
    let second = a.replace(r#""index":0"#, r#""index":1"#);
    assert!(storable(
        Operation::Chat,
        true,
        format!("data: {second}\n\n{base}{done}").as_bytes()
    )
    .is_none());
    let lp = a.replace(
        r#""finish_reason":null"#,
        r#""finish_reason":null,"logprobs":{"content":[]}"#,
    );
    assert!(storable(
        Operation::Chat,
        true,
        format!("data: {lp}\n\n{base}{done}").as_bytes()
    )
    .is_none());
    assert!(storable(
        Operation::Chat,
        true,
        format!("{base}data: {{\"error\":{{\"message\":\"x\"}}}}\n\n{done}").as_bytes()
    )
    .is_none());
    assert!(storable(
        Operation::Chat,
        true,
        format!("data: not json\n\n{base}{done}").as_bytes()
    )
    .is_none());
    assert!(storable(Operation::Chat, true, b"\xff\xfe").is_none());
    let length = chunk("", json!("length"));
    assert!(storable(
        Operation::Chat,
        true,
        format!("data: {a}\n\ndata: {length}\n\n{done}").as_bytes()
    )
    .is_none());
    // Azure's first chunk: empty id and model, no choices, prompt filter results.
    let azure =
        r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}"#;
    let s = storable(
        Operation::Chat,
        true,
        format!("data: {azure}\n\n{base}{done}").as_bytes(),
    )
    .unwrap();
    let v = value(&s.json);
    assert_eq!(
        (v["id"].as_str(), v["model"].as_str()),
        (Some("c1"), Some("m"))
    );
    // A usage chunk without `choices`; `choices` that is not an array.
    let usage = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","usage":{"total_tokens":4}}"#;
    let s = storable(
        Operation::Chat,
        true,
        format!("{base}data: {usage}\n\n{done}").as_bytes(),
    );
    assert_eq!(s.map(|s| s.tokens), Some(4));
    let odd = usage.replace(r#""usage""#, r#""choices":{},"usage""#);
    assert!(storable(
        Operation::Chat,
        true,
        format!("{base}data: {odd}\n\n{done}").as_bytes()
    )
    .is_none());
    // Only empty ids: kept empty (a replay of it reads back the same).
    let no_id = format!("data: {azure}\n\n{base}{done}").replace(r#""id":"c1""#, r#""id":"""#);
    let v = value(
        &storable(Operation::Chat, true, no_id.as_bytes())
            .unwrap()
            .json,
    );
    assert_eq!(v["id"], "");
}

#[test]
fn the_event_parser() {
    let ev = |b: &str| events(b.as_bytes()).unwrap();
    let e = |kind: Option<&str>, data: &str| Event {
        kind: kind.map(str::to_owned),
        data: data.to_owned(),
    };
    assert_eq!(ev("data: a\n\n"), [e(None, "a")]);
    assert_eq!(ev("data: a\ndata:  b\n\n"), [e(None, "a\n b")]);
    assert_eq!(
        ev("event: x\ndata: {}\n\nevent: y\n\ndata: 1\n\n"),
        [e(Some("x"), "{}"), e(None, "1")]
    );
    assert_eq!(
        ev("data: a\r\n\r\ndata: b\r\rdata: c\n"),
        [e(None, "a"), e(None, "b")],
        "an unfinished last event is dropped"
    );
    assert_eq!(ev("data\n\n"), [e(None, "")]);
    assert_eq!(ev(":x\n\n\n\n"), []);
    assert!(events(b"data: \xff\n\n").is_none());
}

#[test]
fn streamed_tool_calls_are_put_together() {
    let head = r#""id":"c","object":"chat.completion.chunk","created":1,"model":"m""#;
    let frames = [
        r#"{"role":"assistant","content":null}"#,
        r#"{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}"#,
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
        r#"{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}"#,
    ];
    let mut body: String = frames
        .iter()
        .map(|d| format!("data: {{{head},\"choices\":[{{\"index\":0,\"delta\":{d},\"finish_reason\":null}}]}}\n\n"))
        .collect();
    body.push_str(&format!("data: {{{head},\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"tool_calls\"}}]}}\n\ndata: [DONE]\n\n"));
    let s = storable(Operation::Chat, true, body.as_bytes()).unwrap();
    let v = value(&s.json);
    let calls = &v["choices"][0]["message"]["tool_calls"];
    assert_eq!(
        calls[0],
        json!({"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}})
    );
    assert_eq!(calls[1]["function"]["name"], "get_time");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // A call index that skips one, or a call with no type: not stored.
    let gap = body.replace(r#""index":1,"id""#, r#""index":3,"id""#);
    assert!(storable(Operation::Chat, true, gap.as_bytes()).is_none());
    let untyped = body.replace(r#""id":"call_b","type":"function","#, r#""id":"call_b","#);
    assert!(storable(Operation::Chat, true, untyped.as_bytes()).is_none());
}

#[test]
fn responses_streams_end_with_response_completed() {
    let sse = String::from_utf8(mock(RESP_PATH, &resp_req(true), 3)).unwrap();
    let failed = sse.replace("response.completed", "response.failed");
    assert!(storable(Operation::Responses, true, failed.as_bytes()).is_none());
    let incomplete = sse.replace(r#""status":"completed""#, r#""status":"incomplete""#);
    assert_ne!(incomplete, sse);
    assert!(storable(Operation::Responses, true, incomplete.as_bytes()).is_none());
    assert!(storable(
        Operation::Responses,
        true,
        format!("{sse}data: [DONE]\n\n").as_bytes()
    )
    .is_some());
    let again = format!(
        "{sse}event: response.in_progress\ndata: {{\"type\":\"response.in_progress\"}}\n\n"
    );
    assert!(storable(Operation::Responses, true, again.as_bytes()).is_none());
    let err = format!("event: error\ndata: {{\"type\":\"error\",\"message\":\"x\"}}\n\n{sse}");
    assert!(storable(Operation::Responses, true, err.as_bytes()).is_none());
}
