//! The Responses API's typed event stream for a stored response object, as OpenAI (and the mock,
//! `mock/responses.rs`) sends it: `event: <type>` and `data: {...}` with the same `type` and a
//! `sequence_number` from 0, no `[DONE]`.
//!
//! `response.created` and `response.in_progress` (the response with `status: "in_progress"`, no
//! output, no usage), then for each output item: `response.output_item.added` (the item in
//! progress, empty), for a message each content part's `response.content_part.added`, its text in
//! `response.output_text.delta` pieces (a refusal in `response.refusal.delta`), the `….done` event
//! with the whole text, `response.content_part.done`; for a function call its
//! `response.function_call_arguments.delta` pieces and `.done`; then
//! `response.output_item.done` (the stored item); and last `response.completed` with the stored
//! response. Reasoning items replay as added/done when they carry no summary text. Other item types,
//! annotations and logprobs are not replayed (`None`: io serves a miss).

use serde_json::{json, Map, Value};

use super::replay::pieces;

/// Writes the numbered events.
struct Events {
    out: Vec<u8>,
    seq: u64,
}

impl Events {
    fn push(&mut self, kind: &str, mut data: Map<String, Value>) -> Option<()> {
        data.insert("type".into(), json!(kind));
        data.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        serde_json::to_writer(&mut self.out, &data).ok()?;
        self.out.extend_from_slice(b"\n\n");
        Some(())
    }
}

/// An object from `json!({...})`.
fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `v` is absent, null or empty.
fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// The event stream of the stored (completed) response `v`.
pub(crate) fn replay(v: &Value) -> Option<Vec<u8>> {
    let output = v.get("output")?.as_array()?;
    let mut ev = Events {
        out: Vec::new(),
        seq: 0,
    };
    let mut started = v.as_object()?.clone();
    started.insert("status".into(), json!("in_progress"));
    started.insert("output".into(), json!([]));
    started.insert("usage".into(), Value::Null);
    if started.contains_key("completed_at") {
        started.insert("completed_at".into(), Value::Null);
    }
    let started = Value::Object(started);
    ev.push("response.created", obj(json!({"response": started})))?;
    ev.push("response.in_progress", obj(json!({"response": started})))?;
    for (i, item) in output.iter().enumerate() {
        match item.get("type").and_then(Value::as_str)? {
            "message" => message(&mut ev, i, item)?,
            "function_call" => function_call(&mut ev, i, item)?,
            "reasoning" if empty(item.get("summary")) && empty(item.get("content")) => {
                ev.push(
                    "response.output_item.added",
                    obj(json!({"output_index": i, "item": item})),
                )?;
            }
            _ => return None,
        }
        ev.push(
            "response.output_item.done",
            obj(json!({"output_index": i, "item": item})),
        )?;
    }
    ev.push("response.completed", obj(json!({"response": v})))?;
    Some(ev.out)
}

/// The item as it is announced: in progress, with `fields` emptied.
fn in_progress(item: &Value, fields: Value) -> Option<Value> {
    let mut m = item.as_object()?.clone();
    m.insert("status".into(), json!("in_progress"));
    m.extend(obj(fields));
    Some(Value::Object(m))
}

/// A message item's events, up to (not including) its `output_item.done`.
fn message(ev: &mut Events, i: usize, item: &Value) -> Option<()> {
    let id = item.get("id")?;
    let parts = item.get("content")?.as_array()?;
    let added = in_progress(item, json!({"content": []}))?;
    ev.push(
        "response.output_item.added",
        obj(json!({"output_index": i, "item": added})),
    )?;
    for (c, part) in parts.iter().enumerate() {
        let at = json!({"item_id": id, "output_index": i, "content_index": c});
        let with = |extra: Value| {
            let mut m = obj(at.clone());
            m.extend(obj(extra));
            m
        };
        let (kind, field, empty_part) = match part.get("type").and_then(Value::as_str)? {
            "output_text" if empty(part.get("annotations")) && empty(part.get("logprobs")) => (
                "output_text",
                "text",
                json!({"type": "output_text", "text": "", "annotations": []}),
            ),
            "refusal" => (
                "refusal",
                "refusal",
                json!({"type": "refusal", "refusal": ""}),
            ),
            _ => return None,
        };
        let text = part.get(field)?.as_str()?;
        ev.push(
            "response.content_part.added",
            with(json!({"part": empty_part})),
        )?;
        for p in pieces(text) {
            let delta = if kind == "output_text" {
                json!({"delta": p, "logprobs": []})
            } else {
                json!({"delta": p})
            };
            ev.push(&format!("response.{kind}.delta"), with(delta))?;
        }
        let done = if kind == "output_text" {
            json!({"text": text, "logprobs": []})
        } else {
            json!({"refusal": text})
        };
        ev.push(&format!("response.{kind}.done"), with(done))?;
        ev.push("response.content_part.done", with(json!({"part": part})))?;
    }
    Some(())
}

/// A function call item's events, up to (not including) its `output_item.done`.
fn function_call(ev: &mut Events, i: usize, item: &Value) -> Option<()> {
    let id = item.get("id")?;
    let args = item.get("arguments")?.as_str()?;
    let added = in_progress(item, json!({"arguments": ""}))?;
    ev.push(
        "response.output_item.added",
        obj(json!({"output_index": i, "item": added})),
    )?;
    for p in pieces(args) {
        let delta = json!({"item_id": id, "output_index": i, "delta": p});
        ev.push("response.function_call_arguments.delta", obj(delta))?;
    }
    // `name` as newer API versions send it (older SDKs ignore the field).
    let name = item.get("name").cloned().unwrap_or(Value::Null);
    let done = json!({"item_id": id, "output_index": i, "name": name, "arguments": args});
    ev.push("response.function_call_arguments.done", obj(done))
}
