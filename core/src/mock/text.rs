//! Chat and text completions: the deterministic reply, as one JSON body or as SSE frames.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Answer, MockBody, CREATED};
use crate::tokens;

/// Words appended after "Mock response from {region}." (cycled when more chunks are wanted).
const WORDS: [&str; 10] = [
    "This",
    "is",
    "a",
    "deterministic",
    "reply",
    "from",
    "the",
    "aigw",
    "mock",
    "upstream.",
];

/// The reply cut into exactly `chunks` non-empty pieces (at least one) whose concatenation is the text.
pub(crate) fn reply_pieces(region: &str, chunks: u32) -> Vec<String> {
    let chunks = chunks.max(1) as usize;
    let mut words: Vec<String> = vec![
        "Mock".into(),
        "response".into(),
        "from".into(),
        format!("{region}."),
    ];
    words.extend(WORDS.iter().map(|w| (*w).to_owned()));
    let mut extra = WORDS.iter().cycle();
    while words.len() < chunks {
        if let Some(w) = extra.next() {
            words.push((*w).to_owned());
        }
    }
    let n = words.len();
    (0..chunks)
        .map(|i| {
            let (lo, hi) = (i * n / chunks, (i + 1) * n / chunks);
            let mut piece = if i == 0 {
                String::new()
            } else {
                " ".to_owned()
            };
            piece.push_str(&words[lo..hi].join(" "));
            piece
        })
        .collect()
}

/// What a completion request asked for, shared by the chat and text flavours.
pub(crate) struct Ask<'a> {
    pub(crate) seq: u64,
    pub(crate) model: &'a str,
    pub(crate) region: &'a str,
    pub(crate) chunks: u32,
    pub(crate) chunk_delay_ms: u64,
    pub(crate) body: &'a Value,
}

impl Ask<'_> {
    pub(crate) fn stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn include_usage(&self) -> bool {
        self.body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `usage` with real token counts, and the total.
    fn usage(&self, text: &str) -> (Value, u64) {
        let enc = tokens::encoding_for(self.model);
        let prompt = tokens::estimate_value(enc, self.body) as u64;
        let completion = tokens::count_with(enc, text) as u64;
        let total = prompt + completion;
        let usage = json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total });
        (usage, total)
    }

    /// Frames after the content: the usage frame (when asked for) and `[DONE]`.
    fn finish_stream(
        &self,
        mut events: Vec<Bytes>,
        mut head: Value,
        usage: Value,
        total: u64,
    ) -> Answer {
        if self.include_usage() {
            head["choices"] = json!([]);
            head["usage"] = usage;
            events.push(frame(&head));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let body = MockBody::Sse {
            events,
            chunk_delay_ms: self.chunk_delay_ms,
        };
        Answer {
            status: 200,
            body,
            tokens: total,
        }
    }
}

/// One SSE frame: `data: {json}\n\n`.
fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `POST …/chat/completions`.
pub(crate) fn chat(ask: &Ask<'_>) -> Answer {
    let pieces = reply_pieces(ask.region, ask.chunks);
    let text = pieces.concat();
    let (usage, total) = ask.usage(&text);
    let id = format!("chatcmpl-mock{}", ask.seq);
    if !ask.stream() {
        let v = json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": ask.model,
            "system_fingerprint": "fp_aigw_mock",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text, "refusal": null },
                "logprobs": null, "finish_reason": "stop"
            }],
            "usage": usage,
        });
        return Answer {
            status: 200,
            body: MockBody::Full(Bytes::from(v.to_string())),
            tokens: total,
        };
    }
    let mut head = json!({
        "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": ask.model,
        "system_fingerprint": "fp_aigw_mock",
    });
    if ask.include_usage() {
        head["usage"] = Value::Null;
    }
    let with_choice = |delta: Value, finish: Value| {
        let mut v = head.clone();
        v["choices"] =
            json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
        frame(&v)
    };
    let mut events = Vec::with_capacity(pieces.len() + 4);
    events.push(with_choice(json!({ "role": "assistant" }), Value::Null));
    for p in &pieces {
        events.push(with_choice(json!({ "content": p }), Value::Null));
    }
    events.push(with_choice(json!({}), json!("stop")));
    ask.finish_stream(events, head, usage, total)
}

/// `POST …/completions` (legacy text completions).
pub(crate) fn completion(ask: &Ask<'_>) -> Answer {
    let pieces = reply_pieces(ask.region, ask.chunks);
    let text = pieces.concat();
    let (usage, total) = ask.usage(&text);
    let id = format!("cmpl-mock{}", ask.seq);
    let mut head =
        json!({ "id": id, "object": "text_completion", "created": CREATED, "model": ask.model });
    if !ask.stream() {
        head["choices"] =
            json!([{ "text": text, "index": 0, "logprobs": null, "finish_reason": "stop" }]);
        head["usage"] = usage;
        return Answer {
            status: 200,
            body: MockBody::Full(Bytes::from(head.to_string())),
            tokens: total,
        };
    }
    if ask.include_usage() {
        head["usage"] = Value::Null;
    }
    let with_choice = |text: &str, finish: Value| {
        let mut v = head.clone();
        v["choices"] =
            json!([{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }]);
        frame(&v)
    };
    let mut events: Vec<Bytes> = pieces.iter().map(|p| with_choice(p, Value::Null)).collect();
    events.push(with_choice("", json!("stop")));
    ask.finish_stream(events, head, usage, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text() {
        for chunks in [0, 1, 2, 5, 14, 15, 40] {
            let p = reply_pieces("eastus", chunks);
            assert_eq!(p.len(), chunks.max(1) as usize);
            assert!(p.iter().all(|s| !s.trim().is_empty()));
            let text = p.concat();
            assert!(
                text.starts_with("Mock response from eastus. This is"),
                "{text}"
            );
            assert!(!text.contains("  "));
        }
        assert_eq!(reply_pieces("r", 1).concat(), reply_pieces("r", 5).concat());
    }
}
