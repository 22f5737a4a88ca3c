//! End-to-end tests of [`handle`](super::handle): shared helpers; replies and faults live in submodules.

mod faults;
mod replies;
mod responses;

use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::config::FailMode;
use crate::tokens;

fn header(name: &'static str, value: &'static str) -> Header {
    Header {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}

fn call(
    opts: &MockOptions,
    shared: &MockShared,
    method: &str,
    path: &str,
    headers: &[Header],
    body: &str,
) -> MockReply {
    let req = MockRequest {
        method: method.as_bytes(),
        path,
        query: "",
        headers,
        body: body.as_bytes(),
    };
    handle(opts, shared, &req, 0.5)
}

fn post(opts: &MockOptions, path: &str, body: &str) -> MockReply {
    call(
        opts,
        &MockShared::new(&opts.region),
        "POST",
        path,
        &[],
        body,
    )
}

fn json(reply: &MockReply) -> Value {
    match &reply.body {
        MockBody::Full(b) => serde_json::from_slice(b).unwrap(),
        MockBody::Sse { .. } => panic!("expected a JSON body"),
    }
}

fn header_of<'r>(reply: &'r MockReply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The JSON payloads of the frames, and whether the last frame is `[DONE]`.
fn frames(reply: &MockReply) -> (Vec<Value>, bool) {
    let MockBody::Sse { events, .. } = &reply.body else {
        panic!("expected SSE")
    };
    let mut out = Vec::new();
    let mut done = false;
    for e in events {
        let s = std::str::from_utf8(&e).unwrap();
        let data = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert!(!done, "frame after [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    (out, done)
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello world"}]}"#;
const CHAT_STREAM_USAGE: &str = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
    "messages":[{"role":"user","content":"hello world"}]}"#;

fn opts(region: &str) -> MockOptions {
    MockOptions {
        region: region.into(),
        ..MockOptions::default()
    }
}
