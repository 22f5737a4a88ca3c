//! HTTP/1.1 framing benches: request and response heads against raw httparse, and the chunked decoder.
// criterion_group! expands to an undocumented `pub fn`; nothing here is a public API.
#![allow(missing_docs)]

use std::hint::black_box;

use aigw_core::http1::{
    decode_request_head, decode_response_head, BodyFraming, ChunkedDecoder, HeadLimits,
};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A request head as the OpenAI Python client sends it (12 headers), body not included.
const REQUEST_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: gateway.internal:8080\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.4\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.4\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Retry-Count: 0\r\n\
Authorization: Bearer sk-proj-3fQ9xL2mN8pR4tV7wY1zA5bC6dE0gH2iJ4kL6mN8pQ0rS2tU4vW6xY8zA0bC2dE4\r\n\
Content-Length: 1187\r\n\r\n";

/// An upstream response head for a streamed chat completion (OpenAI-like header set).
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Fri, 27 Nov 2026 05:50:00 GMT\r\n\
Content-Type: text/event-stream; charset=utf-8\r\n\
Transfer-Encoding: chunked\r\n\
Connection: keep-alive\r\n\
access-control-expose-headers: X-Request-ID\r\n\
openai-organization: org-abc123\r\n\
openai-processing-ms: 212\r\n\
openai-version: 2020-10-01\r\n\
x-ratelimit-limit-requests: 10000\r\n\
x-ratelimit-limit-tokens: 2000000\r\n\
x-ratelimit-remaining-requests: 9999\r\n\
x-ratelimit-remaining-tokens: 1999950\r\n\
x-ratelimit-reset-requests: 6ms\r\n\
x-ratelimit-reset-tokens: 1ms\r\n\
x-request-id: req_7d3c1c0f5e0b4a2f9a8e6b1d2c3f4a5b\r\n\
strict-transport-security: max-age=31536000; includeSubDomains; preload\r\n\
cf-cache-status: DYNAMIC\r\n\
Server: cloudflare\r\n\r\n";

/// A chunked body of SSE `chat.completion.chunk` events, one event per chunk, about 16 KiB.
fn sse_chunked_body(target: usize) -> Vec<u8> {
    let words = [
        "The",
        " gateway",
        " forwards",
        " each",
        " token",
        " as",
        " soon",
        " as",
        " it",
        " arrives",
        ".",
    ];
    let mut out = Vec::with_capacity(target + 256);
    let mut i = 0usize;
    while out.len() < target {
        let event = format!(
            "data: {{\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion.chunk\",\"created\":1764222600,\
             \"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\
             \"index\":0,\"delta\":{{\"content\":\"{}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n",
            words[i % words.len()]
        );
        out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\r\n");
        i += 1;
    }
    out.extend_from_slice(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    out
}

fn request_head(c: &mut Criterion) {
    // Sanity: both sides parse the whole head.
    let mut buf = BytesMut::from(REQUEST_HEAD);
    let Ok(Some(h)) = decode_request_head(&mut buf, &HeadLimits::default()) else {
        panic!("bench request head does not decode");
    };
    assert_eq!(
        (h.headers.len(), h.framing, buf.len()),
        (12, BodyFraming::Length(1187), 0)
    );

    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(REQUEST_HEAD.len() as u64));
    g.bench_function("httparse", |b| {
        b.iter(|| {
            // The same 100 slots decode_request_head uses by default.
            let mut slots = [httparse::EMPTY_HEADER; 100];
            let mut req = httparse::Request::new(&mut slots);
            let status = req.parse(black_box(REQUEST_HEAD));
            black_box((status.ok(), req.headers.len()));
        });
    });
    let limits = HeadLimits::default();
    g.bench_function("aigw_decode_request_head", |b| {
        // Like a connection: one reused read buffer, refilled with the head each time (a memcpy
        // of the head's bytes), the decoded head dropped at the end of the iteration.
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(REQUEST_HEAD));
            black_box(decode_request_head(&mut buf, &limits).ok().flatten());
        });
    });
    g.finish();
}

fn response_head(c: &mut Criterion) {
    let mut buf = BytesMut::from(RESPONSE_HEAD);
    let Ok(Some(h)) = decode_response_head(&mut buf, false, 64 * 1024) else {
        panic!("bench response head does not decode");
    };
    assert_eq!(h.framing, BodyFraming::Chunked);

    let mut g = c.benchmark_group("response_head");
    g.throughput(Throughput::Bytes(RESPONSE_HEAD.len() as u64));
    g.bench_function("httparse", |b| {
        b.iter(|| {
            // The same 128 slots decode_response_head uses.
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut res = httparse::Response::new(&mut slots);
            let status = res.parse(black_box(RESPONSE_HEAD));
            black_box((status.ok(), res.headers.len()));
        });
    });
    g.bench_function("aigw_decode_response_head", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(RESPONSE_HEAD));
            black_box(
                decode_response_head(&mut buf, false, 64 * 1024)
                    .ok()
                    .flatten(),
            );
        });
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let body = sse_chunked_body(16 * 1024);
    let decode = |reads: usize| {
        let mut d = ChunkedDecoder::new();
        let mut data = 0usize;
        let mut consumed = 0usize;
        for part in body.chunks(reads) {
            match d.feed(black_box(part), |s| data += s.len()) {
                Ok(p) => consumed += p.consumed,
                Err(e) => panic!("bench body does not decode: {e}"),
            }
        }
        (data, consumed, d.is_done())
    };
    let (data, consumed, done) = decode(body.len());
    assert!(
        done && consumed == body.len() && data > 14 * 1024,
        "{data} {consumed} {done}"
    );

    let mut g = c.benchmark_group("chunked_sse_16KiB");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("one_feed", |b| b.iter(|| black_box(decode(body.len()))));
    // One feed per 1448-byte TCP segment: state carried across calls.
    g.bench_function("feed_per_segment", |b| b.iter(|| black_box(decode(1448))));
    g.finish();
}

criterion_group!(benches, request_head, response_head, chunked);
criterion_main!(benches);
