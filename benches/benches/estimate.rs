//! The prompt estimate: the borrowing visitor walk (`tokens::estimate_prompt`) against the
//! `serde_json::Value` tree walk it replaced (`serde_json::from_slice` + `tokens::estimate_value`),
//! on a small chat body and a large one with tools. Also counts heap allocations per call (printed
//! once before the measurements) with a counting global allocator wrapped around the system one.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use aigw_core::tokens::{encoding_for, estimate_prompt, estimate_value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The system allocator, counting allocations (and reallocations).
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The estimate as computed before the rewrite.
fn old(model: &str, body: &[u8]) -> usize {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => estimate_value(encoding_for(model), &v),
        Err(_) => 0,
    }
}

/// A typical small chat body (about 180 bytes).
const SMALL: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello to the gateway in five words."}],"max_tokens":50}"#;

/// A chat body of about `target` bytes: a system prompt, alternating turns, two tools.
fn large(target: usize) -> Vec<u8> {
    let turns = [
        "Summarise the following log excerpt and point out anything unusual.",
        "Line 1: GET /v1/models 200 3ms\\nLine 2: POST /v1/chat/completions 429 1ms",
        "The user said: \\\"please keep it short\\\" \\u2014 and then asked again.",
        "Here is the JSON you asked for: {\\\"a\\\": [1, 2, 3], \\\"b\\\": null}",
    ];
    let tools = r#"[{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}}},{"type":"function","function":{"name":"search","description":"Search the docs","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}]"#;
    let mut messages =
        vec![r#"{"role":"system","content":"You are a concise assistant."}"#.to_owned()];
    let mut len = tools.len() + 200;
    let mut i = 0;
    while len < target {
        let m = if i % 3 == 2 {
            format!(
                r#"{{"role":"user","name":"u{i}","content":[{{"type":"text","text":"{}"}}]}}"#,
                turns[i % 4]
            )
        } else {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            format!(r#"{{"role":"{role}","content":"{}"}}"#, turns[i % 4])
        };
        len += m.len() + 1;
        messages.push(m);
        i += 1;
    }
    format!(
        r#"{{"messages":[{}],"model":"gpt-4o-mini","tools":{tools},"stream":true,"max_tokens":512}}"#,
        messages.join(",")
    )
    .into_bytes()
}

/// Per-call times of `a` and `b` measured in alternation (`rounds` rounds of `iters` calls each),
/// so load drifting on a shared machine hits both alike: (p10, p50) of each.
fn interleaved(
    rounds: usize,
    iters: u32,
    a: impl Fn() -> usize,
    b: impl Fn() -> usize,
) -> [(Duration, Duration); 2] {
    let (mut ta, mut tb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        for (f, out) in [(&a as &dyn Fn() -> usize, &mut ta), (&b, &mut tb)] {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            out.push(t.elapsed() / iters);
        }
    }
    [ta, tb].map(|mut v| {
        v.sort();
        (v[v.len() / 10], v[v.len() / 2])
    })
}

/// Allocations made by one call of `f`.
fn allocations(f: impl Fn() -> usize) -> usize {
    let before = ALLOCS.load(Relaxed);
    black_box(f());
    ALLOCS.load(Relaxed) - before
}

fn bench_estimate(c: &mut Criterion) {
    aigw_core::tokens::warm_up();
    let big = large(64 * 1024);
    for (label, body, iters) in [("small", SMALL, 500), ("64KiB", &big[..], 2)] {
        let m = "gpt-4o-mini";
        let n = estimate_prompt(m, body);
        assert_eq!(
            n,
            old(m, body),
            "the two estimates differ on the {label} body"
        );
        assert!(n > 10);
        eprintln!(
            "estimate_{label}: {} bytes, {n} tokens; allocations per call: value tree {}, visitor walk {}",
            body.len(),
            allocations(|| old(m, body)),
            allocations(|| estimate_prompt(m, body)),
        );
        let [(o10, o50), (n10, n50)] =
            interleaved(200, iters, || old(m, body), || estimate_prompt(m, body));
        eprintln!(
            "estimate_{label} interleaved: value tree p10 {o10:?} p50 {o50:?}; visitor walk p10 {n10:?} p50 {n50:?}"
        );
        let mut g = c.benchmark_group(format!("estimate_{label}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("value_tree", body.len()),
            body,
            |b, body| {
                b.iter(|| black_box(old(m, black_box(body))));
            },
        );
        g.bench_with_input(
            BenchmarkId::new("visitor_walk", body.len()),
            body,
            |b, body| {
                b.iter(|| black_box(estimate_prompt(m, black_box(body))));
            },
        );
        g.finish();
    }
}

criterion_group!(benches, bench_estimate);
criterion_main!(benches);
