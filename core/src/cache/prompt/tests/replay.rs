//! `replay_sse`: OpenAI-shaped streams of stored answers, and the round trip through `storable`.

use serde_json::{json, Value};

use super::super::sse::events;
use super::*;

/// The JSON payloads of a replayed stream, and whether it ended with `[DONE]`.
fn payloads(sse: &[u8]) -> (Vec<Value>, bool) {
    let evs = events(sse).unwrap();
    let done = evs.last().is_some_and(|e| e.data == "[DONE]");
    let vs = evs
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    (vs, done)
}

#[test]
fn chat_replay_is_openai_shaped_and_round_trips() {
    let stored = mock(CHAT_PATH, &chat_req(false, false), 40);
    let v = value(&stored);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.chars().count() > 2 * PIECE_CHARS,
        "long enough for several pieces"
    );
    for usage in [false, true] {
        let sse = replay_sse(Operation::Chat, &stored, usage).unwrap();
        assert!(sse.ends_with(b"data: [DONE]\n\n"));
        let (chunks, done) = payloads(&sse);
        assert!(done);
        let first = &chunks[0];
        assert_eq!(
            first["choices"][0]["delta"],
            json!({"role":"assistant","content":"","refusal":null})
        );
        let mut joined = String::new();
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            for k in ["id", "created", "model", "system_fingerprint"] {
                assert_eq!(c[k], v[k], "{k}");
            }
            assert_eq!(
                c.get("usage").is_some(),
                usage,
                "usage: null on each chunk when asked"
            );
            if let Some(p) = c["choices"][0]["delta"]["content"].as_str() {
                assert!(p.chars().count() <= PIECE_CHARS);
                joined.push_str(p);
            }
        }
        assert_eq!(joined, text);
        let (last, finish) = if usage {
            let u = chunks.last().unwrap();
            assert_eq!((&u["choices"], &u["usage"]), (&json!([]), &v["usage"]));
            (chunks.len() - 2, &chunks[chunks.len() - 2])
        } else {
            (chunks.len() - 1, chunks.last().unwrap())
        };
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert!(chunks[..last]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()));
        // Back through storable: the same answer.
        let back = storable(Operation::Chat, true, &sse).unwrap();
        let w = value(&back.json);
        assert_eq!(w["choices"][0]["message"]["content"], text);
        assert_eq!(w["choices"][0]["finish_reason"], "stop");
        for k in ["id", "created", "model", "system_fingerprint"] {
            assert_eq!(w[k], v[k], "{k}");
        }
        assert_eq!(
            back.tokens,
            if usage {
                v["usage"]["total_tokens"].as_u64().unwrap()
            } else {
                0
            }
        );
    }
}

#[test]
fn pieces_cut_at_char_boundaries() {
    use super::super::replay::pieces;
    assert_eq!(pieces(""), [""]);
    assert_eq!(pieces("a"), ["a"]);
    let s = "é😀中".repeat(50);
    let p = pieces(&s);
    assert_eq!(p.concat(), s);
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|x| x.chars().count() <= PIECE_CHARS));
    assert_eq!(pieces(&"x".repeat(128)).len(), 2);
    assert_eq!(pieces(&"x".repeat(129)).len(), 3);
}

fn chat_answer(message: Value, finish: &str) -> Vec<u8> {
    json!({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp_1","service_tier":"default",
        "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],
        "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})
    .to_string()
    .into_bytes()
}

#[test]
fn tool_calls_and_refusals_round_trip() {
    let args = format!("{{\"city\":\"{}\"}}", "Paris ".repeat(30));
    let msg = json!({"role":"assistant","content":null,"refusal":null,"annotations":[],
        "tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":args}},
                      {"id":"call_b","type":"function","function":{"name":"noop","arguments":""}}]});
    let stored = chat_answer(msg.clone(), "tool_calls");
    let sse = replay_sse(Operation::Chat, &stored, true).unwrap();
    let (chunks, _) = payloads(&sse);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role":"assistant","content":null,"refusal":null})
    );
    let start = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        start,
        &json!({"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}})
    );
    assert_eq!(chunks[1]["service_tier"], "default");
    let back = value(&storable(Operation::Chat, true, &sse).unwrap().json);
    assert_eq!(
        back["choices"][0]["message"]["tool_calls"],
        msg["tool_calls"]
    );
    assert_eq!(back["choices"][0]["finish_reason"], "tool_calls");
    // A refusal.
    let refusal = json!({"role":"assistant","content":null,"refusal":"I can't help with that."});
    let sse = replay_sse(Operation::Chat, &chat_answer(refusal, "stop"), false).unwrap();
    let back = value(&storable(Operation::Chat, true, &sse).unwrap().json);
    assert_eq!(
        back["choices"][0]["message"]["refusal"],
        "I can't help with that."
    );
}

#[test]
fn what_a_stream_cannot_carry_is_not_replayed() {
    let plain = json!({"role":"assistant","content":"Hi"});
    assert!(replay_sse(Operation::Chat, &chat_answer(plain.clone(), "stop"), true).is_some());
    for msg in [
        json!({"role":"assistant","content":"Hi","annotations":[{"type":"url_citation"}]}),
        json!({"role":"assistant","content":"Hi","audio":{"id":"a"}}),
        json!({"role":"assistant","content":"Hi","function_call":{"name":"f","arguments":"{}"}}),
        json!({"role":"assistant","content":"Hi","reasoning_content":"hmm"}),
    ] {
        assert!(
            replay_sse(Operation::Chat, &chat_answer(msg.clone(), "stop"), false).is_none(),
            "{msg}"
        );
    }
    assert!(replay_sse(
        Operation::Chat,
        &chat_answer(plain.clone(), "length"),
        false
    )
    .is_none());
    // Tool calls the deltas would not carry whole.
    let call = json!({"id":"c","type":"function","function":{"name":"f","arguments":"{}"}});
    for calls in [
        json!([{"id":"c","type":"function","function":{"name":"f","arguments":"{}"},"extra":1}]),
        json!([{"id":"c","type":"function","function":{"name":"f","arguments":"{}","strict":true}}]),
        json!([{"id":"c","type":"custom","custom":{"name":"f","input":"x"}}]),
        json!([{"id":5,"type":"function","function":{"name":"f","arguments":"{}"}}]),
    ] {
        let msg = json!({"role":"assistant","content":"Hi","tool_calls":calls});
        let stored = chat_answer(msg, "stop");
        assert!(storable(Operation::Chat, false, &stored).is_some());
        assert!(
            replay_sse(Operation::Chat, &stored, false).is_none(),
            "{calls}"
        );
    }
    let msg = json!({"role":"assistant","content":"Hi","tool_calls":[call]});
    assert!(replay_sse(Operation::Chat, &chat_answer(msg, "stop"), false).is_some());
    let mut lp = value(&chat_answer(plain, "stop"));
    lp["choices"][0]["logprobs"] = json!({"content":[]});
    assert!(replay_sse(Operation::Chat, lp.to_string().as_bytes(), false).is_none());
    // A usage chunk asked for, but no usage stored: refused rather than short.
    lp["choices"][0]["logprobs"] = Value::Null;
    lp.as_object_mut().unwrap().remove("usage");
    let stored = lp.to_string();
    assert!(replay_sse(Operation::Chat, stored.as_bytes(), false).is_some());
    assert!(replay_sse(Operation::Chat, stored.as_bytes(), true).is_none());
    assert!(replay_sse(Operation::Chat, b"garbage", false).is_none());
}

#[test]
fn completion_replay_round_trips() {
    let stored = mock(CMPL_PATH, &cmpl_req(false, false), 30);
    let v = value(&stored);
    let sse = replay_sse(Operation::Completions, &stored, true).unwrap();
    let (chunks, done) = payloads(&sse);
    assert!(done);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "text_completion" && c["id"] == v["id"]));
    let back = storable(Operation::Completions, true, &sse).unwrap();
    let w = value(&back.json);
    assert_eq!(w["choices"][0]["text"], v["choices"][0]["text"]);
    assert_eq!(back.tokens, v["usage"]["total_tokens"].as_u64().unwrap());
}

/// The `type`s of a Responses stream, each delta run collapsed to one.
fn kinds(sse: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, e) in events(sse).unwrap().iter().enumerate() {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        let kind = v["type"].as_str().unwrap().to_owned();
        assert_eq!(
            e.kind.as_deref(),
            Some(kind.as_str()),
            "event: line matches the type"
        );
        assert_eq!(v["sequence_number"], i, "numbered from 0");
        if out.last() != Some(&kind) || !kind.ends_with(".delta") {
            out.push(kind);
        }
    }
    out
}

#[test]
fn responses_replay_matches_the_mock_stream() {
    let stored = mock(RESP_PATH, &resp_req(false), 30);
    let streamed = mock(RESP_PATH, &resp_req(true), 30);
    let sse = replay_sse(Operation::Responses, &stored, false).unwrap();
    assert_eq!(kinds(&sse), kinds(&streamed));
    assert_eq!(
        replay_sse(Operation::Responses, &stored, true),
        Some(sse.clone())
    );
    let back = storable(Operation::Responses, true, &sse).unwrap();
    assert_eq!(
        value(&back.json),
        value(&stored),
        "response.completed carries the stored object"
    );
    let evs = events(&sse).unwrap();
    let created: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(created["response"]["status"], "in_progress");
    assert_eq!(created["response"]["output"], json!([]));
    let text: String = evs
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
        .filter(|v| v["type"] == "response.output_text.delta")
        .map(|v| v["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, value(&stored)["output"][0]["content"][0]["text"]);
}

#[test]
fn responses_function_calls_and_reasoning_replay() {
    let resp = json!({"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"o4-mini",
        "output":[
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}],
        "usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}});
    let sse = replay_sse(Operation::Responses, resp.to_string().as_bytes(), false).unwrap();
    let k = kinds(&sse);
    assert_eq!(
        k,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let back = storable(Operation::Responses, true, &sse).unwrap();
    assert_eq!((value(&back.json), back.tokens), (resp.clone(), 3));
    // Not replayable: summaries, annotations, unknown items.
    let mut r = resp.clone();
    r["output"][0]["summary"] = json!([{"type":"summary_text","text":"thinking"}]);
    assert!(replay_sse(Operation::Responses, r.to_string().as_bytes(), false).is_none());
    let mut r = resp.clone();
    r["output"] = json!([{"type":"web_search_call","id":"ws","status":"completed"}]);
    assert!(replay_sse(Operation::Responses, r.to_string().as_bytes(), false).is_none());
    let mut r = resp;
    r["output"] = json!([{"type":"message","id":"m","status":"completed","role":"assistant","content":[{"type":"output_text","text":"x","annotations":[{"type":"url_citation"}]}]}]);
    assert!(replay_sse(Operation::Responses, r.to_string().as_bytes(), false).is_none());
    r["output"][0]["content"][0]["annotations"] = json!([]);
    assert!(replay_sse(Operation::Responses, r.to_string().as_bytes(), false).is_some());
}
