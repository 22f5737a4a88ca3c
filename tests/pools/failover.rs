//! Failure cases of pools: every member down, a stream that breaks after its first byte, a bench
//! seen by every worker, and the request body replayed unchanged on retry.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

use super::{
    assert_served, backend, backend_state, chat, config, mocked, only_backend, pool, total,
    two_groups, warm, MODEL,
};

both_drivers!(
    all_members_down_is_503_with_retry_after,
    stream_failing_after_first_byte_is_not_retried,
    bench_is_seen_by_every_worker,
    retried_body_is_replayed_byte_for_byte,
);

fn chat_for(gw: &Gateway, model: &str) -> Response {
    gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some(model), false).as_bytes(),
    )
}

#[track_caller]
fn retry_after(r: &Response) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers));
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?}"))
}

fn all_members_down_is_503_with_retry_after(d: Driver) {
    // Pool `down`: two backends nobody listens on. Pool `busy`: one mock answering 429, Retry-After: 7.
    let pools = "[pools.down]\nmembers = [{ backend = \"a\" }, { backend = \"b\" }]\n\n\
                 [pools.busy]\nmembers = [{ backend = \"busy\" }]\n\n\
                 [models]\n\"m-down\" = \"down\"\n\"m-busy\" = \"busy\"\n";
    let busy = mocked("busy", "fail_status = 429\nfail_every = 1\nretry_after = 7");
    let gw = Gateway::start(
        d,
        &config(2, &format!("{}{}{busy}{pools}", backend("a"), backend("b"))),
    );

    // Both refuse the connection: the last failure is relayed (502), and both get benched...
    let msg = chat_for(&gw, "m-down").assert_openai_error(502);
    assert!(msg.contains("cannot connect"), "{msg}");
    for name in ["a", "b"] {
        let b = backend_state(&gw, name);
        assert_eq!(
            (b["available"].as_bool(), b["failures"].as_u64()),
            (Some(false), Some(1)),
            "{b}"
        );
    }
    // ...so the next request finds nothing to try: 503 with the time until the first comes back
    // (bench_for defaults to 10 s).
    let r = chat_for(&gw, "m-down");
    r.assert_openai_error(503);
    assert!((1..=10).contains(&retry_after(&r)), "{:?}", r.headers);
    assert_eq!(r.json()["error"]["code"], "no_backend_available");

    // A lone member answering 429: its answer is relayed as it was...
    let t0 = Instant::now();
    let r = chat_for(&gw, "m-busy");
    assert_eq!(
        (
            r.status,
            r.header("x-aigw-backend"),
            r.header("x-aigw-attempts")
        ),
        (429, Some("busy"), Some("1"))
    );
    assert_eq!(retry_after(&r), 7);
    // ...and then it is benched for that long: 503, Retry-After from the hint, nothing sent.
    let r = chat_for(&gw, "m-busy");
    r.assert_openai_error(503);
    let lo = 7 - t0.elapsed().as_secs_f64().ceil() as u64; // 6 unless this machine crawls
    assert!((lo..=7).contains(&retry_after(&r)), "{:?}", r.headers);
    assert_eq!(total(&gw, "busy"), 1);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn stream_failing_after_first_byte_is_not_retried(d: Driver) {
    // `a` streams 40 events 150 ms apart; it is killed once the first one reached the client.
    let mut a = MockProc::start(
        d,
        &["--region", "a", "--chunks", "40", "--chunk-delay-ms", "150"],
    );
    let members = "{ backend = \"a\", priority = 1 }, { backend = \"b\", priority = 2 }";
    let text = config(
        2,
        &format!("{}{}{}", backend("a"), mocked("b", ""), pool("", members)),
    );
    let gw = Gateway::start_with(d, &text, &[("a", a.addr)]);

    let mut s = TcpStream::connect(gw.addr("listen")).expect("connect");
    s.set_read_timeout(Some(READ_LIMIT)).expect("timeout");
    s.write_all(&request(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some(MODEL), true).as_bytes(),
    ))
    .expect("send");
    let (mut got, mut buf, mut killed) = (Vec::new(), [0u8; 8192], false);
    let t = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "{e} after {:?}; got {}",
                t.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
        if !killed && find(&got, b"data: ").is_some() {
            let _ = a.proc.child.kill();
            let _ = a.proc.child.wait();
            killed = true;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(killed, "no event arrived: {text}");
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(head_len)) = head.parse(&got) else {
        panic!("no response head: {text}")
    };
    let header = |n: &str| {
        head.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
    };
    assert_eq!(head.code, Some(200), "{text}");
    assert_eq!(
        (header("x-aigw-backend"), header("x-aigw-attempts")),
        (Some(&b"a"[..]), Some(&b"1"[..])),
        "{text}"
    );
    // Truncated: some events, no [DONE], no end of the chunked body; and the connection closed.
    let body = &got[head_len..];
    assert!(
        find(body, b"data: ").is_some() && find(body, b"[DONE]").is_none(),
        "{text}"
    );
    assert!(
        !body.ends_with(b"0\r\n\r\n"),
        "a truncated stream must not end cleanly: {text}"
    );
    assert_eq!(total(&gw, "b"), 0, "a started stream was retried");
    // The gateway carries on: `a` is gone, `b` answers.
    assert_served(&chat(&gw), "b", 2);
}

fn bench_is_seen_by_every_worker(d: Driver) {
    // Two workers share one state: a 429 with Retry-After: 3 seen by one worker benches `first`
    // for both.
    let gw = Gateway::start(
        d,
        &two_groups("fail_status = 429\nfail_every = 1\nretry_after = 3", ""),
    );
    warm(&gw, "second");
    let t0 = Instant::now();
    assert_served(&chat(&gw), "second", 2);
    let connects = gw.metric("aigw_upstream_connects_total");
    // The bench ends at t0 + 3 s at the earliest; stop 1 s before. A new connection each time.
    let (n, late) = only_backend(
        &gw,
        "second",
        t0,
        Duration::from_secs(2),
        Duration::from_secs(3),
    );
    assert!(n >= 20, "only {n} requests in 2 s");
    assert_eq!(total(&gw, "first"), 1 + late, "a worker ignored the bench");
    // Each worker keeps its own upstream connections: a new one to `second` means the other
    // worker served some of these requests too.
    assert!(
        gw.metric("aigw_upstream_connects_total") > connects,
        "all {n} connections landed on one worker; the test proved nothing"
    );
}

/// A ~20 KB JSON body with multi-byte UTF-8, escapes and odd spacing.
fn replay_body() -> Vec<u8> {
    let piece = "héllo 日本語 🚀 \\\"quoted\\\" back\\\\slash \\u0000 tab\\t nl\\n ";
    let content: String = std::iter::repeat_n(piece, 300).collect();
    format!(
        "{{ \"model\" :\"{MODEL}\",\n  \"messages\":[ {{\"role\":\"user\",\"content\":\"{content}\"}} ],\"temperature\":0.25 , \"x\":[1,2.5e3,null,true]}}"
    )
    .into_bytes()
}

fn retried_body_is_replayed_byte_for_byte(d: Driver) {
    // `first` fails every request (and is never benched), so each one is replayed to `second`.
    let gw = Gateway::start(
        d,
        &two_groups("fail_status = 500\nfail_every = 1", "bench_for = \"0s\""),
    );
    let body = replay_body();
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_served(&r, "second", 2);
    // The same body chunked, in uneven chunks sent in separate writes.
    let mut c = gw.client();
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut rest = &body[..];
    for size in [1, 7, 4096, 3, 10_000]
        .into_iter()
        .chain(std::iter::repeat(usize::MAX))
    {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        c.send(&framed);
        rest = tail;
        std::thread::sleep(Duration::from_millis(5));
    }
    c.send(b"0\r\n\r\n");
    assert_served(&c.read_response(), "second", 2);

    for mock in ["first", "second"] {
        let seen = gw.mock_requests(mock);
        assert_eq!(seen.len(), 2, "{mock}");
        for (i, s) in seen.iter().enumerate() {
            let got = s["body"].as_str().expect("body").as_bytes();
            let diff = got.iter().zip(&body).position(|(a, b)| a != b);
            assert!(
                got == body,
                "{mock} request {i}: {} bytes, sent {}, first difference at {diff:?}",
                got.len(),
                body.len()
            );
            assert_eq!(
                s["headers"]["content-length"],
                body.len().to_string(),
                "{mock} {i}"
            );
            assert!(
                s["headers"].get("transfer-encoding").is_none(),
                "{mock} {i}: {}",
                s["headers"]
            );
        }
    }
}
