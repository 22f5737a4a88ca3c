//! Request bodies: chunked bodies arrive de-chunked upstream, `Expect: 100-continue` gets its
//! interim answer, and large bodies (beyond one read or one write) are relayed byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::time::Duration;

use common::*;

both_drivers!(
    chunked_request_body_is_dechunked,
    expect_100_continue_gets_interim_response,
    large_bodies_relayed_intact,
    http10_client_gets_a_dechunked_stream,
);

/// An HTTP/1.0 client cannot parse chunked framing: a chunked upstream body (the SSE stream)
/// reaches it as plain data, with no Transfer-Encoding, ended by the connection closing.
fn http10_client_gets_a_dechunked_stream(d: Driver) {
    use std::io::{Read, Write};
    let gw = Gateway::start(d, TWO_DIALECTS);
    let body = chat_body(Some("m-oa"), true);
    let mut s = std::net::TcpStream::connect(gw.addr("listen")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        payload.starts_with("data: {"),
        "chunk-size lines leaked: {payload:?}"
    );
    assert!(payload.trim_end().ends_with("data: [DONE]"), "{payload:?}");
    // The same request over HTTP/1.1 still gets the chunked framing.
    let r = gw.call("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
}

fn chunked_request_body_is_dechunked(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let body = chat_body(Some("m-az"), false);
    let (a, rest) = body.split_at(10);
    let (b, c) = rest.split_at(7);
    let mut client = gw.client();
    // The head and the chunks arrive in separate writes, one chunk with an extension.
    client.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Request-Id: ch-1\r\n\r\n",
    );
    std::thread::sleep(Duration::from_millis(50));
    client.send(format!("{:x}\r\n{a}\r\n", a.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    client.send(format!("{:X};name=value\r\n{b}\r\n{:x}\r\n", b.len(), c.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    client.send(format!("{c}\r\n0\r\n\r\n").as_bytes());
    let r = client.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "chat.completion");
    let seen = gw.mock_requests("az");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body"], body.as_str(), "de-chunked body differs");
    let h = &seen[0]["headers"];
    assert_eq!(h["content-length"], body.len().to_string(), "{h}");
    assert!(h.get("transfer-encoding").is_none(), "{h}");
    assert_eq!(h["x-request-id"], "ch-1");
    // Chunked with trailers, then a normal request on the same connection.
    let body2 = chat_body(Some("m-az"), false);
    client.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body2}\r\n0\r\nX-Trailer: t\r\n\r\n",
            body2.len()
        )
        .as_bytes(),
    );
    assert_eq!(client.read_response().status, 200);
    assert_eq!(gw.mock_requests("az")[1]["body"], body2.as_str());
    let r = client.call("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

fn expect_100_continue_gets_interim_response(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    let body = chat_body(Some("m-oa"), false);
    let mut c = gw.client();
    // Content-Length: the client waits for 100 before sending the body.
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "expected 100 Continue first");
    c.send(body.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    // Chunked, same dance, on the same connection.
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.read_response().status, 100);
    c.send(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    assert_eq!(c.read_response().status, 200);
    let seen = gw.mock_requests("oa");
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s["body"], body.as_str());
        assert!(
            s["headers"].get("expect").is_none(),
            "Expect must not be forwarded: {}",
            s["headers"]
        );
    }
    // A client that sends the body anyway (with the head) gets no stray 100 before the answer.
    let mut all = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    all.extend_from_slice(body.as_bytes());
    let mut c = gw.client();
    c.send(&all);
    assert_eq!(c.read_response().status, 200);
}

/// A chat body of about `size` bytes (one long message).
fn big_chat(model: &str, size: usize) -> String {
    let words: String = (0..)
        .map(|i| format!("w{i} "))
        .take_while({
            let mut n = 0;
            move |w: &String| {
                n += w.len();
                n < size
            }
        })
        .collect();
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": words}]})
        .to_string()
}

fn large_bodies_relayed_intact(d: Driver) {
    let gw = Gateway::start(d, TWO_DIALECTS);
    // 40 KiB: more than one read on the way in and more than the gateway copies behind the head.
    // (The mock records up to 64 KiB of a body.)
    let body = big_chat("m-oa", 40 * 1024);
    let mut c = gw.client();
    let r = c.call("POST", "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // The same body chunked in 1000-byte chunks, sent in pieces, on the same connection.
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut framed = Vec::new();
    for piece in body.as_bytes().chunks(1000) {
        framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    for part in framed.chunks(7000) {
        c.send(part);
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = gw.mock_requests("oa");
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s["body"].as_str().map(str::len), Some(body.len()));
        assert!(s["body"] == body.as_str(), "large body altered on the way");
        assert_eq!(s["headers"]["content-length"], body.len().to_string());
    }
    // A large answer (embeddings of many inputs) arrives whole.
    let inputs: Vec<String> = (0..20).map(|i| format!("input number {i}")).collect();
    let req = serde_json::json!({"model": "m-az", "input": inputs}).to_string();
    let r = c.call("POST", "/v1/embeddings", &[], req.as_bytes());
    assert_eq!(r.status, 200);
    assert!(
        r.body.len() > 64 * 1024,
        "expected a large answer, got {} bytes",
        r.body.len()
    );
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(20));
}
