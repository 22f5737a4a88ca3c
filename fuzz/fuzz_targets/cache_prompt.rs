//! The semantic cache's prompt side over arbitrary bytes: `analyse` (every operation and embed
//! mode), `storable` (JSON and SSE), `replay_sse` and the guards never panic, and:
//! - trailing whitespace does not change an analysis (JSON allows it), and an accepted request
//!   has something to embed;
//! - a storable answer that replays does so as a stream `storable` reads back to the same answer
//!   (same content or output, same finish reason, same tokens when usage was asked for);
//! - the guards pass a text against itself.
#![no_main]

use aigw_core::cache::prompt::{
    analyse, guards_pass, replay_sse, storable, EmbedMode, Guard, Keyer, Operation, Shape,
};
use aigw_fuzz::mix;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const OPS: [Operation; 3] = [
    Operation::Chat,
    Operation::Completions,
    Operation::Responses,
];

/// What a replay must preserve of an answer.
fn essence(op: Operation, v: &Value) -> Value {
    match op {
        Operation::Chat => {
            let c = &v["choices"][0];
            let m = &c["message"];
            serde_json::json!([
                m["content"],
                m["refusal"],
                m["tool_calls"],
                c["finish_reason"],
                v["id"],
                v["model"]
            ])
        }
        Operation::Completions => {
            let c = &v["choices"][0];
            serde_json::json!([c["text"], c["finish_reason"], v["id"], v["model"]])
        }
        Operation::Responses => v.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let seed = mix(data);
    let keyer = Keyer::fixed(u128::from(seed));
    let ctx: [&[u8]; 2] = [b"op", b"consumer=fuzz"];
    let mut padded = data.to_vec();
    padded.extend_from_slice(b" \r\n\t");
    for op in OPS {
        let shape = Shape {
            operation: op,
            embed: if seed & 4 == 0 {
                EmbedMode::LastUser
            } else {
                EmbedMode::Conversation
            },
            ignore_system_messages: seed & 8 == 0,
            max_message_count: ((seed >> 8) % 12) as usize,
        };
        let a = analyse(&keyer, data, &shape, &ctx);
        if let Ok(a) = &a {
            assert!(
                !a.text.trim().is_empty(),
                "an accepted request with nothing to embed"
            );
        }
        let b = analyse(&keyer, &padded, &shape, &ctx);
        assert_eq!(b, a, "trailing whitespace changed the analysis");

        for sse in [false, true] {
            let Some(s) = storable(op, sse, data) else {
                continue;
            };
            let stored: Value = serde_json::from_slice(&s.json).expect("a stored answer is JSON");
            for include_usage in [false, true] {
                let Some(replay) = replay_sse(op, &s.json, include_usage) else {
                    continue;
                };
                let back = storable(op, true, &replay).expect("a replay is storable");
                let again: Value = serde_json::from_slice(&back.json).expect("JSON");
                assert_eq!(
                    essence(op, &again),
                    essence(op, &stored),
                    "the replay changed the answer"
                );
                if include_usage || op == Operation::Responses {
                    assert_eq!(back.tokens, s.tokens, "the replay changed the tokens");
                }
            }
        }
    }

    let text = String::from_utf8_lossy(data);
    let chars = text.chars().count();
    let cut = text
        .char_indices()
        .nth((seed >> 16) as usize % (chars + 1))
        .map_or(text.len(), |(i, _)| i);
    let (x, y) = text.split_at(cut);
    let all = [Guard::Numbers, Guard::Negation];
    assert!(guards_pass(&all, x, x) && guards_pass(&all, y, y));
    let _ = guards_pass(&all, x, y);
});
