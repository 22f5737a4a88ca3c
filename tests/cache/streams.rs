//! What is stored, and how a stored answer is replayed as a stream (issue 10, "done when" 7): a
//! stream is stored only after `[DONE]` and replayed as valid chat SSE (with the usage chunk when
//! asked for); stream and non-stream requests share entries; an abandoned stream, a 429, a 500 and
//! a `finish_reason: "length"` answer (JSON or stream, from the scripted upstream) are not stored.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::evil::{send, Evil};
use crate::probe::*;
use crate::setup::*;

both_drivers!(
    a_stream_is_stored_after_done_and_replayed,
    an_abandoned_stream_is_not_stored,
    failed_and_truncated_answers_are_not_stored,
);

/// Check a chat SSE replay: `chat.completion.chunk` events of one id, a first role chunk, the
/// content joined equal to `text`, one `finish_reason: "stop"`, the usage chunk (`choices: []`)
/// with `total_tokens` when asked for and none otherwise, `data: [DONE]` last.
#[track_caller]
fn check_chat_replay(a: &Ans, text: &str, total_tokens: Option<u64>) {
    let why = a.describe();
    assert!(a.is_sse(), "not text/event-stream: {why}");
    let ev = events(&a.resp);
    assert_eq!(ev.last().map(|e| e.0.as_str()), Some("[DONE]"), "{why}");
    let chunks: Vec<&Value> = ev[..ev.len() - 1].iter().map(|(_, v)| v).collect();
    assert!(!chunks.is_empty(), "{why}");
    let id = &chunks[0]["id"];
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}\n{why}");
        assert_eq!(&c["id"], id, "chunks of one stream carry one id\n{why}");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "the first chunk names the role\n{why}"
    );
    assert_eq!(chat_text(a), text, "replayed text\n{why}");
    let stops = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"] == "stop")
        .count();
    assert_eq!(stops, 1, "one finish_reason stop\n{why}");
    let usage: Vec<&Value> = chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .copied()
        .collect();
    match total_tokens {
        Some(t) => {
            assert_eq!(usage.len(), 1, "one usage chunk\n{why}");
            assert_eq!(usage[0]["choices"], json!([]), "{why}");
            assert_eq!(usage[0]["usage"]["total_tokens"], t, "{why}");
            assert!(
                std::ptr::eq(usage[0], *chunks.last().unwrap()),
                "the usage chunk comes last before [DONE]\n{why}"
            );
        }
        None => assert!(usage.is_empty(), "usage without include_usage\n{why}"),
    }
}

/// A stream's answer is not in the cache while it streams and is there once `[DONE]` passed; a
/// second stream (with and without include_usage) and a JSON request are served from it; a JSON
/// answer is replayed to a stream. With `store_streams = false` streams are not stored.
fn a_stream_is_stored_after_done_and_replayed(d: Driver) {
    let slow = "chunks = 5\nchunk_delay_ms = 150";
    let gw = Setup {
        llm_mock: slow.into(),
        ..Setup::default()
    }
    .start(d);
    let body = streamed(chat(COFFEE), true);
    let mut c = gw.client();
    let text = body.to_string();
    let t0 = Instant::now();
    c.send(&request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        text.as_bytes(),
    ));
    let mut mid_stream = None;
    let resp = c
        .read_response_with(|so_far| {
            let has = |s: &[u8]| so_far.windows(s.len()).any(|w| w == s);
            if mid_stream.is_none() && has(b"data:") && !has(b"[DONE]") {
                mid_stream = Some(entries(&gw));
            }
        })
        .expect("the stream");
    let first = expect(
        Ans {
            resp,
            took: t0.elapsed(),
            asked: text,
        },
        "miss",
        "the first stream",
    );
    assert_eq!(
        mid_stream,
        Some(0),
        "GET /cache while the stream was still running (none = never observed mid-stream)"
    );
    let stored_text = chat_text(&first);
    let total = events(&first.resp)
        .iter()
        .find_map(|(_, v)| v["usage"]["total_tokens"].as_u64())
        .expect("the mock's usage chunk");
    wait_entries(&gw, 1, "the stream after [DONE]");

    let calls = llm_calls(&gw);
    let h = expect_hit(
        post(&gw, "/v1/chat/completions", &[], &body),
        "the stream again",
    );
    check_chat_replay(&h, &stored_text, Some(total));
    assert!(
        h.took < Duration::from_millis(600),
        "a replay took {:?}: the backend's stream takes 750 ms",
        h.took
    );
    let h = expect_hit(
        post(
            &gw,
            "/v1/chat/completions",
            &[],
            &streamed(chat(COFFEE), false),
        ),
        "the stream again, without include_usage",
    );
    check_chat_replay(&h, &stored_text, None);
    let j = expect_hit(
        ask(&gw, &[], &chat(COFFEE)),
        "the same prompt, not streamed",
    );
    assert!(!j.is_sse(), "a JSON request got {}", j.describe());
    let v = j.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        stored_text.as_str(),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(v["usage"]["total_tokens"], total, "{v}");
    assert_eq!(llm_calls(&gw), calls, "a hit reached the backend");

    // A JSON answer replayed to a stream.
    let m = expect(ask(&gw, &[], &chat(MOUNTAIN)), "miss", "a JSON answer");
    let m_total = m.json()["usage"]["total_tokens"].as_u64().unwrap();
    wait_entries(&gw, 2, "the JSON answer");
    let s = expect_hit(
        post(
            &gw,
            "/v1/chat/completions",
            &[],
            &streamed(chat(MOUNTAIN), true),
        ),
        "a stream of a stored JSON answer",
    );
    check_chat_replay(&s, &chat_text(&m), Some(m_total));

    // store_streams = false.
    let gw = Setup {
        llm_mock: slow.into(),
        ..Setup::with(CacheCfg {
            store_streams: false,
            ..CacheCfg::default()
        })
    }
    .start(d);
    let body = streamed(chat(COFFEE), true);
    expect(
        post(&gw, "/v1/chat/completions", &[], &body),
        "miss",
        "a stream",
    );
    settle(&gw);
    expect(
        post(&gw, "/v1/chat/completions", &[], &body),
        "miss",
        "store_streams = false: the stream again",
    );
}

/// A client that hangs up after the first event: the partial answer is never stored.
fn an_abandoned_stream_is_not_stored(d: Driver) {
    let gw = Setup {
        llm_mock: "chunks = 5\nchunk_delay_ms = 200".into(),
        ..Setup::default()
    }
    .start(d);
    let body = streamed(chat(COFFEE), true).to_string();
    let mut s = TcpStream::connect(gw.addr("listen")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body.as_bytes(),
    ))
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(5).any(|w| w == b"data:") {
        let n = s.read(&mut buf).expect("the stream's first event");
        assert!(
            n > 0,
            "closed before the first event: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).contains(" 200 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(s);
    // The backend's stream would have ended by now (5 × 200 ms): whatever the gateway did with
    // the rest, it is done. Then a sentinel proves the store queue is drained.
    std::thread::sleep(Duration::from_millis(1500));
    settle(&gw);
    let calls = llm_calls(&gw);
    expect(
        post(
            &gw,
            "/v1/chat/completions",
            &[],
            &streamed(chat(COFFEE), true),
        ),
        "miss",
        "after an abandoned stream",
    );
    assert_eq!(llm_calls(&gw), calls + 1);
}

const TRUNCATED: &str = "write a long essay about the history of tea";
const DONE_JSON: &str = "complete answer about green tea please";
const DONE_SSE: &str = "complete answer concerning black coffee beans";

/// The scripted upstream's answers: `finish_reason` "stop" for prompts containing "complete",
/// "length" otherwise; SSE (chunked) when the request streams.
fn scripted(n: usize, _conn: usize, req: &[u8]) -> Vec<crate::evil::Step> {
    let text = String::from_utf8_lossy(req);
    let body: Value = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let finish = if text.contains("complete") {
        "stop"
    } else {
        "length"
    };
    let id = format!("chatcmpl-evil{n}");
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15});
    if body["stream"] != json!(true) {
        let body = json!({
            "id": id, "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Tea is old."},
                         "logprobs": null, "finish_reason": finish}],
            "usage": usage,
        });
        return vec![send(&crate::evil::ok_json(&body.to_string()))];
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut usage_chunk = chunk(json!({}), Value::Null);
    usage_chunk["choices"] = json!([]);
    usage_chunk["usage"] = usage;
    let events = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string(),
        chunk(json!({"content": "Tea "}), Value::Null).to_string(),
        chunk(json!({"content": "is old."}), Value::Null).to_string(),
        chunk(json!({}), json!(finish)).to_string(),
        usage_chunk.to_string(),
        "[DONE]".to_string(),
    ];
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for e in events {
        let frame = format!("data: {e}\n\n");
        out.push_str(&format!("{:x}\r\n{frame}\r\n", frame.len()));
    }
    out.push_str("0\r\n\r\n");
    vec![send(&out)]
}

/// 429 and 500 answers (relayed: the pool has `retry_on = []`) are not stored; neither is a 200
/// that stopped at `length`, JSON or streamed, while the same upstream's complete answers are.
fn failed_and_truncated_answers_are_not_stored(d: Driver) {
    let gw = Setup::default().start(d);
    for (status, body) in [
        ("429", chat(COFFEE)),
        ("500", chat(COFFEE)),
        ("500", streamed(chat(COFFEE), true)),
    ] {
        let r = ask(&gw, &[("x-mock-status", status)], &body);
        assert_eq!(r.resp.status.to_string(), status, "{}", r.describe());
        assert_eq!(
            r.cache(),
            "miss",
            "a looked-up request that failed: {}",
            r.describe()
        );
    }
    settle(&gw);
    let calls = llm_calls(&gw);
    expect(
        ask(&gw, &[], &chat(COFFEE)),
        "miss",
        "after 429 and 500 answers",
    );
    assert_eq!(llm_calls(&gw), calls + 1);

    let evil = Evil::start(scripted);
    let setup = Setup {
        llm_url: Some("http://{addr:evil}".into()),
        ..Setup::default()
    };
    let gw = Gateway::start_with(d, &setup.toml(), &[("evil", evil.addr)]);
    // Controls: this upstream's complete answers are stored and served, JSON and stream.
    expect(
        ask(&gw, &[], &chat(DONE_JSON)),
        "miss",
        "a complete JSON answer",
    );
    let sse = streamed(chat(DONE_SSE), true);
    expect(
        post(&gw, "/v1/chat/completions", &[], &sse),
        "miss",
        "a complete stream",
    );
    wait_entries(&gw, 2, "the scripted upstream's complete answers");
    expect(
        ask(&gw, &[], &chat(DONE_JSON)),
        "hit-exact",
        "the complete JSON answer",
    );
    expect_hit(
        post(&gw, "/v1/chat/completions", &[], &sse),
        "the complete stream",
    );

    let cut_json = chat(TRUNCATED);
    let cut_sse = streamed(chat(TRUNCATED), true);
    let r = expect(ask(&gw, &[], &cut_json), "miss", "a length answer");
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
    let r = expect(
        post(&gw, "/v1/chat/completions", &[], &cut_sse),
        "miss",
        "a length stream",
    );
    assert!(r.resp.text().contains("\"length\""), "{}", r.describe());
    settle_evil(&gw);
    expect(ask(&gw, &[], &cut_json), "miss", "after a length answer");
    expect(
        post(&gw, "/v1/chat/completions", &[], &cut_sse),
        "miss",
        "after a length stream",
    );
    assert_eq!(
        evil.count_containing(TRUNCATED),
        4,
        "each truncated request reached the upstream"
    );
}

/// [`settle`] through the scripted upstream (whose sentinel answers must be complete).
fn settle_evil(gw: &Gateway) {
    let before = entries(gw);
    expect(
        ask(gw, &[], &chat("complete sentinel zulu yankee")),
        "miss",
        "a sentinel",
    );
    wait_entries(gw, before + 1, "the sentinel");
}
