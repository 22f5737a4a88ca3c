//! The Responses API as OpenAI and Azure serve it: `POST responses` answers a response object, or
//! with `stream: true` its typed event stream (`event:` lines, the text in
//! `response.output_text.delta` events, usage in `response.completed`, no `[DONE]`); stored
//! responses can be retrieved, deleted, listed for their input items, and (not being background
//! ones) not cancelled. Like the real service, a response is stored only where it was created: a
//! gateway that sends a follow-up elsewhere gets this mock's "not found".

use bytes::Bytes;
use serde_json::{json, Value};

use super::faults::invalid_request;
use super::shared::Stored;
use super::stream::{Reply, SseEvents, Template, PIECE, SEQ};
use super::text::Ask;
use super::{Answer, MockBody, MockShared, CREATED};
use crate::tokens;

/// `POST …/responses`.
pub(crate) fn create(ask: &Ask<'_>, shared: &MockShared) -> Answer {
    let body = ask.body;
    let previous = body.get("previous_response_id").and_then(Value::as_str);
    if let Some(prev) = previous {
        if shared.stored(prev).is_none() {
            let msg = format!("Previous response with id '{prev}' not found.");
            return Answer::json(
                400,
                error(
                    &msg,
                    Some("previous_response_id"),
                    "previous_response_not_found",
                ),
            );
        }
    }
    let reply = Reply::new(ask.region, ask.chunks);
    // The final events and the stored object carry the whole text; the deltas are made lazily.
    let text = reply.text();
    let enc = tokens::encoding_for(ask.model);
    let input_tokens = tokens::estimate_value(enc, body) as u64;
    let output_tokens = reply.tokens(enc);
    let total = input_tokens + output_tokens;
    let id = format!("resp_{}{:08x}", shared.nonce(), ask.seq);
    let msg_id = format!("msg_{}{:08x}", shared.nonce(), ask.seq);
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total,
    });
    let message = |status: &str, content: Value| json!({"type": "message", "id": msg_id, "status": status, "role": "assistant", "content": content});
    let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
    let object = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id, "object": "response", "created_at": CREATED, "status": status,
            "error": null, "incomplete_details": null,
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": ask.model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": previous, "reasoning": {"effort": null, "summary": null},
            "store": body.get("store").and_then(Value::as_bool).unwrap_or(true),
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": usage,
            "user": null, "metadata": {},
        })
    };
    let done = object(
        "completed",
        json!([message("completed", json!([part(&text)]))]),
        usage,
    );
    if body.get("store").and_then(Value::as_bool) != Some(false) {
        shared.store(Stored {
            id: id.clone(),
            response: Bytes::from(done.to_string()),
            input_items: input_items_of(body, &id),
        });
    }
    if !ask.stream() {
        return Answer {
            status: 200,
            body: MockBody::Full(Bytes::from(done.to_string())),
            tokens: total,
        };
    }
    let mut seq = 0u64;
    let mut events = Vec::with_capacity(4);
    let event = |seq: &mut u64, kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(*seq);
        *seq += 1;
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    };
    let started = object("in_progress", json!([]), Value::Null);
    events.push(event(
        &mut seq,
        "response.created",
        json!({"response": started}),
    ));
    events.push(event(
        &mut seq,
        "response.in_progress",
        json!({"response": started}),
    ));
    let at = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
    let with = |mut v: Value, extra: Value| {
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    events.push(event(
        &mut seq,
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", json!([]))}),
    ));
    events.push(event(
        &mut seq,
        "response.content_part.added",
        with(at.clone(), json!({"part": part("")})),
    ));
    let kind = "response.output_text.delta";
    let mut delta = with(at.clone(), json!({"delta": PIECE, "logprobs": []}));
    delta["type"] = json!(kind);
    delta["sequence_number"] = json!(SEQ);
    let delta = Template::new(&delta, |v| format!("event: {kind}\ndata: {v}\n\n"));
    seq += reply.chunks() as u64;
    let after = vec![
        event(
            &mut seq,
            "response.output_text.done",
            with(at.clone(), json!({"text": text, "logprobs": []})),
        ),
        event(
            &mut seq,
            "response.content_part.done",
            with(at, json!({"part": part(&text)})),
        ),
        event(
            &mut seq,
            "response.output_item.done",
            json!({"output_index": 0, "item": message("completed", json!([part(&text)]))}),
        ),
        event(&mut seq, "response.completed", json!({"response": done})),
    ];
    Answer {
        status: 200,
        body: MockBody::Sse {
            events: SseEvents::pieces(events, reply, delta, after),
            chunk_delay_ms: ask.chunk_delay_ms,
        },
        tokens: total,
    }
}

/// The request's `input` as stored input items: a string is one user message.
fn input_items_of(body: &Value, id: &str) -> Bytes {
    let items: Vec<Value> = match body.get("input") {
        Some(Value::String(s)) => vec![json!({
            "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": s}],
        })],
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if item.get("id").is_none() && item.is_object() {
                item["id"] = json!(format!("in_{id}_{i}"));
            }
            item
        })
        .collect();
    let first = data
        .first()
        .and_then(|d| d.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let last = data
        .last()
        .and_then(|d| d.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    Bytes::from(
        json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false})
            .to_string(),
    )
}

/// `GET …/responses/{id}`, `DELETE …/responses/{id}`, `GET …/responses/{id}/input_items`,
/// `POST …/responses/{id}/cancel`.
pub(crate) fn object(shared: &MockShared, method: &[u8], id: &str, tail: &str) -> Answer {
    let Some(found) = shared.stored(id) else {
        let msg = format!("Response with id '{id}' not found.");
        return Answer::json(404, error(&msg, None, "not_found"));
    };
    match (method, tail) {
        (b"GET", "") => Answer::json(200, found.response),
        (b"GET", "input_items") => Answer::json(200, found.input_items),
        (b"DELETE", "") => {
            shared.unstore(id);
            let v = json!({"id": id, "object": "response.deleted", "deleted": true});
            Answer::json(200, Bytes::from(v.to_string()))
        }
        (b"POST", "cancel") => Answer::json(
            400,
            error(
                "Only responses created with background=true can be cancelled.",
                None,
                "invalid_request",
            ),
        ),
        _ => Answer::json(
            405,
            invalid_request("Method not allowed", Some("method_not_allowed")),
        ),
    }
}

/// An OpenAI error body with a `param`.
fn error(message: &str, param: Option<&str>, code: &str) -> Bytes {
    let v = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    Bytes::from(v.to_string())
}
