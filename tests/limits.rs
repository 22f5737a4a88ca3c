//! Limits and malformed requests: each gets its status and an OpenAI-shaped body and the
//! connection is closed; slow clients time out without holding up anyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

both_drivers!(
    limits_and_malformed_heads_get_their_status,
    header_count_and_size_boundaries_are_allowed,
    slow_head_times_out_without_blocking_others,
    idle_connection_is_closed,
);

/// [`TWO_DIALECTS`] with a small body limit and short timeouts.
fn config(extra: &str) -> String {
    TWO_DIALECTS.replace(
        "workers = 1\n",
        &format!("workers = 1\nmax_body_bytes = 1024\n{extra}"),
    )
}

fn big_head() -> Vec<u8> {
    let mut v = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    v.extend(std::iter::repeat_n(b'a', 70 * 1024));
    v.extend_from_slice(b"\r\n\r\n");
    v
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut s = String::from("GET /v1/models HTTP/1.1\r\nHost: x\r\n");
    for i in 1..n {
        s.push_str(&format!("X-H{i}: v\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn limits_and_malformed_heads_get_their_status(d: Driver) {
    let gw = Gateway::start(d, &config(""));
    let chat = chat_body(Some("m-oa"), false);
    let post = |headers: &str, body: &str| {
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}")
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("head over 64 KiB", big_head(), 431),
        (
            "head over 64 KiB, never finished",
            big_head()[..68 * 1024].to_vec(),
            431,
        ),
        ("101 headers", many_headers(101), 431),
        (
            "Expect: 100-continue with a body over max_body_bytes (413, no 100)",
            post("Expect: 100-continue\r\nContent-Length: 2000\r\n", "").into_bytes(),
            413,
        ),
        (
            "body over max_body_bytes (Content-Length)",
            post("Content-Length: 2000\r\n", "").into_bytes(),
            413,
        ),
        (
            "body over max_body_bytes (sent whole)",
            post("Content-Length: 4000\r\n", &"x".repeat(4000)).into_bytes(),
            413,
        ),
        (
            "body over max_body_bytes (chunked)",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("800\r\n{}\r\n", "x".repeat(0x800)),
            )
            .into_bytes(),
            413,
        ),
        (
            "Content-Length with Transfer-Encoding",
            post(
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    chat.len()
                ),
                &chat,
            )
            .into_bytes(),
            400,
        ),
        (
            "conflicting Content-Lengths",
            post(
                &format!("Content-Length: {}\r\nContent-Length: 5\r\n", chat.len()),
                &chat,
            )
            .into_bytes(),
            400,
        ),
        (
            "Content-Length list",
            post("Content-Length: 2, 3\r\n", "{}").into_bytes(),
            400,
        ),
        (
            "non-numeric Content-Length",
            post("Content-Length: 1x\r\n", "").into_bytes(),
            400,
        ),
        (
            "bad chunk size",
            post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n").into_bytes(),
            400,
        ),
        (
            "chunk data without CRLF",
            post("Transfer-Encoding: chunked\r\n", "2\r\nabcd\r\n0\r\n\r\n").into_bytes(),
            400,
        ),
        (
            "unsupported Transfer-Encoding",
            post("Transfer-Encoding: gzip\r\n", "").into_bytes(),
            400,
        ),
        (
            "obs-fold",
            post("X-Folded: a\r\n  continued\r\nContent-Length: 2\r\n", "{}").into_bytes(),
            400,
        ),
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400),
    ];
    for (what, bytes, status) in &cases {
        let mut c = gw.client();
        c.send(bytes);
        let r = c
            .try_read_response()
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        let msg = r.assert_openai_error(*status);
        assert!(!msg.is_empty(), "{what}");
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{what}: {:?}",
            r.headers
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{what}: connection not closed after {status}"
        );
    }
    assert!(
        gw.mock_requests("oa").is_empty(),
        "a refused request reached the upstream"
    );
    // A body of exactly max_body_bytes is fine.
    let mut body = chat_body(Some("m-oa"), false);
    body.insert_str(
        body.len() - 1,
        &format!(",\"pad\":\"{}\"", "p".repeat(1024 - body.len() - 9)),
    );
    assert_eq!(body.len(), 1024);
    let r = gw.call("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // An error after a good request on a kept-alive connection closes it too.
    let mut c = gw.client();
    assert_eq!(c.call("GET", "/v1/models", &[], b"").status, 200);
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    c.read_response().assert_openai_error(400);
    assert!(c.closed_within(Duration::from_secs(3)));
}

fn header_count_and_size_boundaries_are_allowed(d: Driver) {
    let gw = Gateway::start(d, &config(""));
    // 100 headers (Host included) and a 60 KiB head are within the defaults.
    let r = {
        let mut c = gw.client();
        c.send(&many_headers(100));
        c.read_response()
    };
    assert_eq!(r.status, 200, "{}", r.text());
    let mut big = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 60 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let mut c = gw.client();
    c.send(&big);
    assert_eq!(c.read_response().status, 200);
    // The same connection goes on serving.
    assert_eq!(c.call("GET", "/v1/models", &[], b"").status, 200);
}

/// Send `partial` and report how the server ended the connection: `Some(status)` when it
/// answered (it must then close), `None` when it just closed; plus how long it took.
fn wait_for_timeout(c: &mut Client, started: Instant) -> (Option<u16>, Duration) {
    c.set_timeout(Duration::from_secs(8));
    let outcome = match c.try_read_response() {
        Ok(r) => {
            let status = r.status;
            if status == 408 {
                r.assert_openai_error(408);
            }
            assert!(
                c.closed_within(Duration::from_secs(3)),
                "not closed after {status}"
            );
            Some(status)
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "slow client not closed: {e}"
            );
            None
        }
    };
    (outcome, started.elapsed())
}

fn slow_head_times_out_without_blocking_others(d: Driver) {
    let gw = Gateway::start(d, &config("header_timeout = \"1s\"\n"));
    // Warm up: one answered request first, so the timing below measures only the slow client.
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A client holding half a head on the only worker...
    let mut slow = gw.client();
    let t0 = Instant::now();
    slow.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-");
    std::thread::sleep(Duration::from_millis(100));
    // ...does not delay a concurrent good request.
    let t = Instant::now();
    let r = gw.call(
        "POST",
        "/v1/chat/completions",
        &[],
        chat_body(Some("m-oa"), false).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "good request waited {:?} behind a slow client",
        t.elapsed()
    );
    let (status, took) = wait_for_timeout(&mut slow, t0);
    assert!(
        status.is_none() || status == Some(408),
        "slow head answered {status:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before header_timeout"
    );
    assert!(
        took < Duration::from_secs(4),
        "slow head held for {took:?} with header_timeout = 1s"
    );

    // A client dribbling a byte every 150 ms does not extend the deadline.
    let mut drip = gw.client();
    let t0 = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789abcdef0123456789\r\n\r\n";
    let mut closed_early = false;
    for b in head.iter().take(30) {
        if drip.stream.write_all(&[*b]).is_err() {
            closed_early = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let (status, took) = if closed_early {
        (None, t0.elapsed())
    } else {
        wait_for_timeout(&mut drip, t0)
    };
    assert!(
        status.is_none() || status == Some(408),
        "dribbled head answered {status:?}"
    );
    assert!(
        took < Duration::from_millis(4500),
        "dribbling client held the connection for {took:?}"
    );
    // The worker still serves.
    let r = gw.call("GET", "/v1/models", &[], b"");
    assert_eq!(r.status, 200);
}

fn idle_connection_is_closed(d: Driver) {
    let gw = Gateway::start(d, &config("idle_timeout = \"1s\"\n"));
    // Never sent a byte.
    let mut c = gw.client();
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "idle connection left open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        t.elapsed()
    );
    // Idle after a request: closed silently too, with no stray bytes.
    let mut c = gw.client();
    assert_eq!(c.call("GET", "/v1/models", &[], b"").status, 200);
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "idle keep-alive connection left open"
    );
    assert!(t.elapsed() >= Duration::from_millis(900));
}
