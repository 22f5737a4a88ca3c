//! [`replay_sse`]: a stored JSON answer → the event stream OpenAI would have sent for it.
//!
//! Chat: `chat.completion.chunk`s with the stored `id`, `created`, `model` (and
//! `system_fingerprint`, `service_tier` when stored; `"usage": null` on each when the client asked
//! for usage, as OpenAI sends it): a role chunk (`{"role":"assistant","content":"","refusal":null}`),
//! the content (or refusal) in pieces of [`PIECE_CHARS`] characters, each tool call as a first
//! delta with its `id`, `type` and `name` then its `arguments` in pieces, a chunk with an empty
//! delta and the `finish_reason`, the usage chunk (`choices: []`) when asked for, `data: [DONE]`.
//! Completions: `text_completion` chunks, the text in pieces, then the `finish_reason` chunk,
//! usage, `[DONE]`. Responses: see [`replay_responses`](super::replay_responses).
//!
//! What a stream cannot carry faithfully is not replayed (`None`; io then serves a miss and asks
//! the backend): logprobs, audio, a legacy `function_call`, annotations, tool calls that are not
//! plain function calls (`id`, `type: "function"`, `function {name, arguments}`, nothing else),
//! a usage chunk asked for
//! when the stored answer had no `usage`, and anything [`storable`](super::storable) would not
//! have stored.

use serde_json::{json, Map, Value};

use super::storable::{answer_tokens, only_choice, tool_calls_ok};
use super::{replay_responses, Operation};

/// Characters per replayed content piece (the last may be shorter).
pub const PIECE_CHARS: usize = 64;

/// The SSE body replaying the stored JSON answer `stored` (see the module docs); `None` when it
/// cannot be replayed faithfully.
pub fn replay_sse(op: Operation, stored: &[u8], include_usage: bool) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(stored).ok()?;
    answer_tokens(op, &v)?;
    match op {
        Operation::Chat => chat(&v, include_usage),
        Operation::Completions => completion(&v, include_usage),
        Operation::Responses => replay_responses::replay(&v),
    }
}

/// `text` in pieces of at most [`PIECE_CHARS`] characters, cut at char boundaries; at least one.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / PIECE_CHARS + 1);
    let mut rest = text;
    loop {
        let cut = rest
            .char_indices()
            .nth(PIECE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        if tail.is_empty() {
            return out;
        }
        rest = tail;
    }
}

/// One `data:` frame.
pub(crate) fn frame(out: &mut Vec<u8>, v: &Value) -> Option<()> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, v).ok()?;
    out.extend_from_slice(b"\n\n");
    Some(())
}

/// The fields every chunk repeats.
fn head(v: &Value, object: &str, include_usage: bool) -> Map<String, Value> {
    let mut head = Map::new();
    for key in ["id", "created", "model"] {
        head.insert(key.into(), v.get(key).cloned().unwrap_or(Value::Null));
    }
    head.insert("object".into(), json!(object));
    for key in ["system_fingerprint", "service_tier"] {
        if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
            head.insert(key.into(), x.clone());
        }
    }
    if include_usage {
        head.insert("usage".into(), Value::Null);
    }
    head
}

/// The usage chunk (`choices: []`) when asked for: `None` when the answer had no usage, so the
/// replay is refused rather than short of what the client asked.
fn usage_frame(
    out: &mut Vec<u8>,
    head: &Map<String, Value>,
    v: &Value,
    include: bool,
) -> Option<()> {
    if !include {
        return Some(());
    }
    let usage = v.get("usage").filter(|u| u.is_object())?;
    let mut chunk = head.clone();
    chunk.insert("choices".into(), json!([]));
    chunk.insert("usage".into(), usage.clone());
    frame(out, &Value::Object(chunk))
}

/// Message fields a stream replays; any other must be null, false or empty.
const REPLAYED: [&str; 4] = ["role", "content", "refusal", "tool_calls"];

/// Is `v` nothing (null, absent, `false`, `[]`, `{}`, `""`)?
fn nothing(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn chat(v: &Value, include_usage: bool) -> Option<Vec<u8>> {
    let choice = only_choice(v)?;
    let msg = choice.get("message")?.as_object()?;
    if !choice.get("logprobs").is_none_or(Value::is_null)
        || msg
            .iter()
            .any(|(k, x)| !REPLAYED.contains(&k.as_str()) && !nothing(x))
    {
        return None;
    }
    let calls = msg.get("tool_calls").filter(|c| !nothing(c));
    let plain = |c: &Value| c.as_array().is_some_and(|a| a.iter().all(plain_call));
    if calls.is_some_and(|c| !tool_calls_ok(Some(c)) || !plain(c)) {
        return None;
    }
    let finish = choice.get("finish_reason")?;
    let head = head(v, "chat.completion.chunk", include_usage);
    let mut out = Vec::new();
    let chunk = |out: &mut Vec<u8>, delta: Value, finish: &Value| {
        let mut c = head.clone();
        let choice = json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
        c.insert("choices".into(), json!([choice]));
        frame(out, &Value::Object(c))
    };
    let content = msg.get("content").and_then(Value::as_str);
    let first = json!({"role": "assistant", "content": content.map(|_| ""), "refusal": null});
    chunk(&mut out, first, &Value::Null)?;
    for p in content.map(pieces).unwrap_or_default() {
        chunk(&mut out, json!({"content": p}), &Value::Null)?;
    }
    if let Some(r) = msg.get("refusal").and_then(Value::as_str) {
        for p in pieces(r) {
            chunk(&mut out, json!({"refusal": p}), &Value::Null)?;
        }
    }
    let calls = calls.and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let f = call.get("function")?;
        let start = json!({"index": i, "id": call.get("id")?, "type": "function",
            "function": {"name": f.get("name")?, "arguments": ""}});
        chunk(&mut out, json!({"tool_calls": [start]}), &Value::Null)?;
        let args = f.get("arguments")?.as_str()?;
        if !args.is_empty() {
            for p in pieces(args) {
                let more = json!({"index": i, "function": {"arguments": p}});
                chunk(&mut out, json!({"tool_calls": [more]}), &Value::Null)?;
            }
        }
    }
    chunk(&mut out, json!({}), finish)?;
    usage_frame(&mut out, &head, v, include_usage)?;
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out)
}

/// A tool call with nothing the deltas would not carry: `id`, `type`, `function` `{name,
/// arguments}` only.
fn plain_call(call: &Value) -> bool {
    let only = |v: Option<&Value>, keys: &[&str]| {
        v.and_then(Value::as_object)
            .is_some_and(|o| o.keys().all(|k| keys.contains(&k.as_str())))
    };
    only(Some(call), &["id", "type", "function"])
        && only(call.get("function"), &["name", "arguments"])
}

fn completion(v: &Value, include_usage: bool) -> Option<Vec<u8>> {
    let choice = only_choice(v)?;
    if !choice.get("logprobs").is_none_or(Value::is_null) {
        return None;
    }
    let text = choice.get("text")?.as_str()?;
    let finish = choice.get("finish_reason")?;
    let head = head(v, "text_completion", include_usage);
    let mut out = Vec::new();
    let chunk = |out: &mut Vec<u8>, text: &str, finish: &Value| {
        let mut c = head.clone();
        let choice = json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish});
        c.insert("choices".into(), json!([choice]));
        frame(out, &Value::Object(c))
    };
    for p in pieces(text) {
        chunk(&mut out, p, &Value::Null)?;
    }
    chunk(&mut out, "", finish)?;
    usage_frame(&mut out, &head, v, include_usage)?;
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out)
}
