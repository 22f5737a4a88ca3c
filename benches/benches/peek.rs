//! The OpenAI body peek against a full `serde_json::Value` parse of the same body.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]

use std::hint::black_box;

use aigw_core::openai::peek;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A chat-completions body of about `target` bytes, fields in the order the OpenAI Python client
/// sends them: `messages` first, so the peek must skip all of them to reach `model` and `stream`.
fn chat_body(target: usize) -> Vec<u8> {
    let sentences = [
        "Summarise the following log excerpt and point out anything unusual.",
        "Line 1: GET /v1/models 200 3ms\\nLine 2: POST /v1/chat/completions 429 1ms",
        "The user said: \\\"please keep it short\\\" \\u2014 and then asked again.",
        "Here is the JSON you asked for: {\\\"a\\\": [1, 2, 3], \\\"b\\\": null}",
    ];
    let mut messages =
        vec![r#"{"role":"system","content":"You are a concise assistant."}"#.to_owned()];
    let tail = r#"],"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"max_tokens":512}"#;
    let mut len = r#"{"messages":["#.len() + messages[0].len() + tail.len();
    let mut i = 0;
    while len < target {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let m = format!(
            r#"{{"role":"{role}","content":"{}"}}"#,
            sentences[i % sentences.len()]
        );
        len += m.len() + 1;
        messages.push(m);
        i += 1;
    }
    format!(r#"{{"messages":[{}{tail}"#, messages.join(",")).into_bytes()
}

fn bench_peek(c: &mut Criterion) {
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let body = chat_body(size);
        let Ok(p) = peek(&body) else {
            panic!("bench body does not peek")
        };
        assert!(p.model.as_deref() == Some("gpt-4o-mini") && p.stream && p.include_usage);
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());

        let mut g = c.benchmark_group(format!("peek_{label}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("serde_json_value", body.len()),
            &body,
            |b, body| {
                b.iter(|| {
                    black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).ok())
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("aigw_peek", body.len()),
            &body,
            |b, body| {
                b.iter(|| black_box(peek(black_box(body)).ok()));
            },
        );
        g.finish();
    }
}

criterion_group!(benches, bench_peek);
criterion_main!(benches);
