//! Chat and text completions: the deterministic reply, as one JSON body or as SSE frames.

use bytes::Bytes;
use serde_json::{json, Value};

use super::stream::{Reply, SseEvents, Template, PIECE};
use super::{Answer, MockBody, CREATED};
use crate::tokens;

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

    /// `usage` with real token counts of `reply`, and the total.
    fn usage(&self, reply: &Reply) -> (Value, u64) {
        let enc = tokens::encoding_for(self.model);
        let prompt = tokens::estimate_value(enc, self.body) as u64;
        let completion = reply.tokens(enc);
        let total = prompt + completion;
        let usage = json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total });
        (usage, total)
    }

    /// The stream: `before`, a frame per piece of `reply` from `piece` (`head` with the piece in
    /// its choices), then `finish`, the usage frame (when asked for) and `[DONE]`.
    fn streamed(
        &self,
        reply: Reply,
        before: Vec<Bytes>,
        piece: &Value,
        finish: Bytes,
        mut head: Value,
        (usage, total): (Value, u64),
    ) -> Answer {
        let mut after = vec![finish];
        if self.include_usage() {
            head["choices"] = json!([]);
            head["usage"] = usage;
            after.push(frame(&head));
        }
        after.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let body = MockBody::Sse {
            events: SseEvents::pieces(
                before,
                reply,
                Template::new(piece, |v| format!("data: {v}\n\n")),
                after,
            ),
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
    let reply = Reply::new(ask.region, ask.chunks);
    let usage = ask.usage(&reply);
    let id = format!("chatcmpl-mock{}", ask.seq);
    if !ask.stream() {
        let v = json!({
            "id": id, "object": "chat.completion", "created": CREATED, "model": ask.model,
            "system_fingerprint": "fp_aigw_mock",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": reply.text(), "refusal": null },
                "logprobs": null, "finish_reason": "stop"
            }],
            "usage": usage.0,
        });
        return Answer {
            status: 200,
            body: MockBody::Full(Bytes::from(v.to_string())),
            tokens: usage.1,
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
        v
    };
    let role = frame(&with_choice(json!({ "role": "assistant" }), Value::Null));
    let piece = with_choice(json!({ "content": PIECE }), Value::Null);
    let stop = frame(&with_choice(json!({}), json!("stop")));
    ask.streamed(reply, vec![role], &piece, stop, head, usage)
}

/// `POST …/completions` (legacy text completions).
pub(crate) fn completion(ask: &Ask<'_>) -> Answer {
    let reply = Reply::new(ask.region, ask.chunks);
    let usage = ask.usage(&reply);
    let id = format!("cmpl-mock{}", ask.seq);
    let mut head =
        json!({ "id": id, "object": "text_completion", "created": CREATED, "model": ask.model });
    if !ask.stream() {
        head["choices"] = json!([{ "text": reply.text(), "index": 0, "logprobs": null, "finish_reason": "stop" }]);
        head["usage"] = usage.0;
        return Answer {
            status: 200,
            body: MockBody::Full(Bytes::from(head.to_string())),
            tokens: usage.1,
        };
    }
    if ask.include_usage() {
        head["usage"] = Value::Null;
    }
    let with_choice = |text: &str, finish: Value| {
        let mut v = head.clone();
        v["choices"] =
            json!([{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }]);
        v
    };
    let piece = with_choice(PIECE, Value::Null);
    let stop = frame(&with_choice("", json!("stop")));
    ask.streamed(reply, Vec::new(), &piece, stop, head, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text() {
        for chunks in [0, 1, 2, 5, 14, 15, 40] {
            let r = Reply::new("eastus", chunks);
            let p: Vec<String> = (0..r.chunks()).map(|i| r.piece(i)).collect();
            assert_eq!(p.len(), chunks.max(1) as usize);
            assert!(p.iter().all(|s| !s.trim().is_empty()));
            let text = p.concat();
            assert_eq!(text, r.text());
            assert!(
                text.starts_with("Mock response from eastus. This is"),
                "{text}"
            );
            assert!(!text.contains("  "));
        }
        assert_eq!(Reply::new("r", 1).text(), Reply::new("r", 5).text());
    }

    #[test]
    fn the_reply_is_counted_without_being_made() {
        for chunks in [1, 5, 14, 15, 23, 40, 1000, 12_345] {
            for region in ["eastus", "ost-europa 2", "日本"] {
                let r = Reply::new(region, chunks);
                for enc in [tokens::Encoding::O200k, tokens::Encoding::Cl100k] {
                    let whole = tokens::count_with(enc, &r.text()) as u64;
                    assert_eq!(r.tokens(enc), whole, "{chunks} chunks, region {region}");
                }
            }
        }
    }
}
