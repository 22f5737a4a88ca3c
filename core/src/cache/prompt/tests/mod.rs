//! Tests of the prompt side of the cache: keys and bypass rules, guards, storing, replay.

mod analyse;
mod analyse_more;
mod guards;
mod hostile;
mod replay;
mod storable;

use super::*;

/// The test key.
pub(super) const KEY: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;

pub(super) fn shape(operation: Operation, embed: EmbedMode) -> Shape {
    Shape {
        operation,
        embed,
        ignore_system_messages: true,
        max_message_count: 10,
    }
}

pub(super) const CHAT: Shape = Shape {
    operation: Operation::Chat,
    embed: EmbedMode::LastUser,
    ignore_system_messages: true,
    max_message_count: 10,
};

/// Analyse with the test key and a consumer context.
pub(super) fn run(body: &str, shape: &Shape) -> Result<Analysed, Bypass> {
    run_ctx(
        body,
        shape,
        &[b"chat/completions", b"gpt-4o", b"consumer=alice"],
    )
}

pub(super) fn run_ctx(body: &str, shape: &Shape, ctx: &[&[u8]]) -> Result<Analysed, Bypass> {
    analyse(&Keyer::fixed(KEY), body.as_bytes(), shape, ctx)
}

/// A chat body with `messages` (a JSON array) and extra top-level fields.
pub(super) fn chat(messages: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"model":"gpt-4o","messages":{messages}{sep}{extra}}}"#)
}

/// What the mock upstream answers to `body` on `path` (`/v1/chat/completions`, …): the JSON body,
/// or the whole event stream.
pub(super) fn mock(path: &str, body: &str, chunks: u32) -> Vec<u8> {
    use crate::config::MockOptions;
    use crate::mock::{handle, MockBody, MockRequest, MockShared};
    let opts = MockOptions {
        region: "eastus".into(),
        chunks,
        ..MockOptions::default()
    };
    let shared = MockShared::new("eastus");
    let req = MockRequest {
        method: b"POST",
        path,
        query: "",
        headers: &[],
        body: body.as_bytes(),
    };
    let reply = handle(&opts, &shared, &req, 0.5);
    assert_eq!(reply.status, 200);
    match reply.body {
        MockBody::Full(b) => b.to_vec(),
        MockBody::Sse { events, .. } => events.iter().flat_map(|e| e.to_vec()).collect(),
    }
}

pub(super) const CHAT_PATH: &str = "/v1/chat/completions";
pub(super) const CMPL_PATH: &str = "/v1/completions";
pub(super) const RESP_PATH: &str = "/v1/responses";

/// A chat request body for the mock.
pub(super) fn chat_req(stream: bool, usage: bool) -> String {
    format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hello there"}}],"stream":{stream},"stream_options":{{"include_usage":{usage}}}}}"#
    )
}

pub(super) fn cmpl_req(stream: bool, usage: bool) -> String {
    format!(
        r#"{{"model":"gpt-3.5-turbo-instruct","prompt":"hello there","stream":{stream},"stream_options":{{"include_usage":{usage}}}}}"#
    )
}

pub(super) fn resp_req(stream: bool) -> String {
    format!(r#"{{"model":"gpt-4o","input":"hello there","stream":{stream}}}"#)
}

pub(super) fn value(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}
