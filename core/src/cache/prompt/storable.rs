//! [`storable`]: a finished 200 answer → the non-stream JSON to store, or `None`.
//!
//! Only complete answers are stored: one choice, `finish_reason` `stop` (or `tool_calls`, chat
//! only) with something to replay (text, a refusal, or well-formed function tool calls), no
//! `error`; a Responses object with `status: "completed"`, no `incomplete_details`, no `error`
//! and some output. A stream must have ended properly: `data: [DONE]` after the finish (chat,
//! completions) or a `response.completed` event (Responses), with nothing but `[DONE]` after it.
//! Chat and completion streams are assembled into the JSON answer the same request without
//! `stream` would have got: id, created, model, `system_fingerprint` and `service_tier` (when
//! sent), the message (role, content, refusal, tool calls put together by their `index`: `id`,
//! `type` and `name` from the first delta that has them, `arguments` concatenated) and `usage`
//! (when the client asked for a usage chunk). A stream with logprobs, audio, a legacy
//! `function_call` or a second choice is not stored: its JSON form would lose them.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::sse::events;
use super::{Operation, Storable};

/// What to store of a finished, decoded 200 answer body (`sse`: it was an event stream).
pub fn storable(op: Operation, sse: bool, body: &[u8]) -> Option<Storable> {
    if !sse {
        let v: Value = serde_json::from_slice(body).ok()?;
        let tokens = answer_tokens(op, &v)?;
        return Some(Storable {
            json: Bytes::copy_from_slice(body),
            tokens,
        });
    }
    let v = match op {
        Operation::Chat | Operation::Completions => assemble(op, body)?,
        Operation::Responses => completed_response(body)?,
    };
    let tokens = answer_tokens(op, &v)?;
    Some(Storable {
        json: Bytes::from(serde_json::to_vec(&v).ok()?),
        tokens,
    })
}

/// The single choice of a chat or completion answer, when it has exactly one.
pub(crate) fn only_choice(v: &Value) -> Option<&Map<String, Value>> {
    match v.get("choices")?.as_array()?.as_slice() {
        [one] => one.as_object(),
        _ => None,
    }
}

/// A non-empty string.
fn filled(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Well-formed function tool calls: a non-empty array of `{id, type: "function", function:
/// {name, arguments}}`, all strings.
pub(crate) fn tool_calls_ok(calls: Option<&Value>) -> bool {
    let Some(calls) = calls.and_then(Value::as_array) else {
        return false;
    };
    !calls.is_empty()
        && calls.iter().all(|c| {
            let f = c.get("function");
            c.get("id").is_some_and(Value::is_string)
                && c.get("type").and_then(Value::as_str) == Some("function")
                && filled(f.and_then(|f| f.get("name")))
                && f.and_then(|f| f.get("arguments"))
                    .is_some_and(Value::is_string)
        })
}

/// Is `v` a complete answer to store? Its `usage.total_tokens` (0 when absent) if so.
pub(crate) fn answer_tokens(op: Operation, v: &Value) -> Option<u64> {
    let v_obj = v.as_object()?;
    if v_obj.get("error").is_some_and(|e| !e.is_null()) {
        return None;
    }
    let ok = match op {
        Operation::Chat => {
            let choice = only_choice(v)?;
            let msg = choice.get("message")?;
            let role_ok = matches!(
                msg.get("role").and_then(Value::as_str),
                None | Some("assistant")
            );
            let content_ok = matches!(
                msg.get("content"),
                None | Some(Value::Null | Value::String(_))
            );
            let finish = choice.get("finish_reason").and_then(Value::as_str);
            role_ok
                && content_ok
                && match finish {
                    Some("stop") => filled(msg.get("content")) || filled(msg.get("refusal")),
                    Some("tool_calls") => tool_calls_ok(msg.get("tool_calls")),
                    _ => false,
                }
        }
        Operation::Completions => {
            let choice = only_choice(v)?;
            choice.get("finish_reason").and_then(Value::as_str) == Some("stop")
                && filled(choice.get("text"))
        }
        Operation::Responses => {
            v.get("status").and_then(Value::as_str) == Some("completed")
                && v.get("incomplete_details").is_none_or(Value::is_null)
                && v.get("output")
                    .and_then(Value::as_array)
                    .is_some_and(|o| !o.is_empty())
        }
    };
    if !ok {
        return None;
    }
    let usage = v.get("usage").filter(|u| !u.is_null());
    Some(
        usage
            .and_then(|u| u.get("total_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    )
}

/// A tool call being put together from its deltas.
#[derive(Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// A chat or completion stream → the equivalent JSON answer (not yet checked).
fn assemble(op: Operation, body: &[u8]) -> Option<Value> {
    let (mut head, mut empty) = (Map::new(), Map::new());
    let (mut text, mut refusal) = (None::<String>, None::<String>);
    let mut tools: Vec<ToolCall> = Vec::new();
    let (mut finish, mut usage, mut done) = (None::<String>, None::<Value>, false);
    for ev in events(body)? {
        if done {
            return None; // events after [DONE]
        }
        if ev.data == "[DONE]" {
            done = true;
            continue;
        }
        let Value::Object(chunk) = serde_json::from_str::<Value>(&ev.data).ok()? else {
            return None;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return None;
        }
        for key in [
            "id",
            "model",
            "created",
            "system_fingerprint",
            "service_tier",
        ] {
            match chunk.get(key) {
                None | Some(Value::Null) => {}
                // Azure's filter-only first chunk has an empty id and model: a later one counts.
                Some(Value::String(s)) if s.is_empty() => {
                    empty.entry(key).or_insert(Value::String(String::new()));
                }
                Some(v) => {
                    head.entry(key).or_insert_with(|| v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            usage = Some(u.clone());
        }
        // A usage chunk may leave `choices` out; present, it must be an array.
        let choices = match chunk.get("choices") {
            None => None,
            Some(c) => Some(c.as_array()?),
        };
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64) != Some(0)
                || choice.get("logprobs").is_some_and(|l| !l.is_null())
            {
                return None;
            }
            let part = match op {
                Operation::Chat => delta(choice.get("delta")?, &mut refusal, &mut tools)?,
                _ => choice.get("text").and_then(Value::as_str),
            };
            if let Some(p) = part {
                text.get_or_insert_with(String::new).push_str(p);
            }
            match (choice.get("finish_reason"), &finish) {
                (None | Some(Value::Null), _) => {}
                (Some(Value::String(f)), None) => finish = Some(f.clone()),
                _ => return None, // a second or malformed finish_reason
            }
        }
    }
    if !done {
        return None;
    }
    let mut choice = match op {
        Operation::Chat => {
            let mut msg = json!({"role": "assistant", "content": text, "refusal": refusal});
            if !tools.is_empty() {
                msg["tool_calls"] = tools
                    .into_iter()
                    .map(|t| json!({"id": t.id, "type": t.kind, "function": {"name": t.name, "arguments": t.arguments}}))
                    .collect();
            }
            json!({"index": 0, "message": msg, "logprobs": null})
        }
        _ => json!({"text": text, "index": 0, "logprobs": null}),
    };
    choice["finish_reason"] = json!(finish?);
    let mut out = head;
    for (k, v) in empty {
        out.entry(k).or_insert(v);
    }
    out.insert(
        "object".into(),
        json!(if op == Operation::Chat {
            "chat.completion"
        } else {
            "text_completion"
        }),
    );
    out.insert("choices".into(), json!([choice]));
    if let Some(u) = usage {
        out.insert("usage".into(), u);
    }
    Some(Value::Object(out))
}

/// One chat delta: its content piece; refusal and tool call pieces go into the accumulators.
/// `None` for what a JSON answer could not carry (audio, a legacy `function_call`, malformed
/// tool calls).
fn delta<'v>(
    d: &'v Value,
    refusal: &mut Option<String>,
    tools: &mut Vec<ToolCall>,
) -> Option<Option<&'v str>> {
    if !d.is_object()
        || ["audio", "function_call"]
            .iter()
            .any(|k| d.get(*k).is_some_and(|v| !v.is_null()))
    {
        return None;
    }
    if let Some(r) = d.get("refusal").and_then(Value::as_str) {
        refusal.get_or_insert_with(String::new).push_str(r);
    }
    for call in d
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let i = usize::try_from(call.get("index")?.as_u64()?).ok()?;
        if i == tools.len() {
            tools.push(ToolCall::default());
        }
        let t = tools.get_mut(i)?;
        let f = call.get("function");
        let set = |slot: &mut Option<String>, v: Option<&Value>| {
            if let (None, Some(s)) = (&slot, v.and_then(Value::as_str)) {
                *slot = Some(s.to_owned());
            }
        };
        set(&mut t.id, call.get("id"));
        set(&mut t.kind, call.get("type"));
        set(&mut t.name, f.and_then(|f| f.get("name")));
        if let Some(a) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
            t.arguments.push_str(a);
        }
    }
    match d.get("content") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// A Responses stream → the response object of its `response.completed` event, which must be the
/// last event (but for a `[DONE]` some compatible servers add); a failure, an `error` or an
/// incomplete response is `None`.
fn completed_response(body: &[u8]) -> Option<Value> {
    let mut found = None;
    for ev in events(body)? {
        if ev.data == "[DONE]" && found.is_some() {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v: Value = serde_json::from_str(&ev.data).ok()?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.kind.as_deref())?;
        match kind {
            "response.completed" => found = Some(v.get("response")?.clone()),
            "error" | "response.failed" | "response.incomplete" => return None,
            _ => {}
        }
    }
    found
}
