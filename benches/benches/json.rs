//! serde_json against simd-json where the gateway parses JSON it owns (issue 9): the usage tap's
//! buffered response body (a typed, borrowing read of `usage` and the choices' text), and a full
//! document tree of a request body (what a guardrail or cache key would build). simd-json parses in
//! place, so it needs a mutable buffer: the tap owns one anyway (its copy is made outside the
//! timing), a request body does not (the copy a caller would have to make is timed with it).
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API, and a bench
// whose input does not parse should stop loudly.
#![allow(missing_docs, clippy::unwrap_used)]

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde::Deserialize;

/// The parts of a chat completion the usage tap reads.
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    message: Message<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Cow<'a, str>,
}

/// A chat completion of about `target` bytes: one long answer with the escapes real answers have.
fn response(target: usize) -> Vec<u8> {
    let piece =
        "Here is the plan: \\\"step one\\\", then step two.\\nA list: 1, 2, 3 \\u2014 done. ";
    let mut content = String::new();
    while content.len() + 400 < target {
        content.push_str(piece);
    }
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":8,"completion_tokens":9,"total_tokens":17}},"system_fingerprint":"fp"}}"#
    )
    .into_bytes()
}

fn check(d: &Doc<'_>) -> usize {
    let u = d
        .usage
        .as_ref()
        .map_or(0, |u| u.prompt_tokens + u.completion_tokens);
    u as usize
        + d.choices
            .iter()
            .map(|c| c.message.content.len())
            .sum::<usize>()
}

fn bench_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = response(size);
        // Both engines read the same thing.
        let a: Doc<'_> = serde_json::from_slice(&body).unwrap();
        let mut copy = body.clone();
        let b: Doc<'_> = simd_json::serde::from_slice(&mut copy).unwrap();
        assert_eq!(check(&a), check(&b));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("tap_serde_json", label),
            &body,
            |bch, body| {
                bch.iter(|| check(&serde_json::from_slice::<Doc<'_>>(black_box(body)).unwrap()))
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tap_simd_json", label),
            &body,
            |bch, body| {
                bch.iter_batched_ref(
                    || body.clone(),
                    |buf| check(&simd_json::serde::from_slice::<Doc<'_>>(black_box(buf)).unwrap()),
                    BatchSize::SmallInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tree_serde_json", label),
            &body,
            |bch, body| {
                bch.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tree_simd_json_with_copy", label),
            &body,
            |bch, body| {
                bch.iter(|| {
                    let mut buf = black_box(body).clone();
                    simd_json::to_owned_value(&mut buf).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_json);
criterion_main!(benches);
