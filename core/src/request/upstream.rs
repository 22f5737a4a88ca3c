//! `upstream_request`: the head and body one backend is sent, in its dialect.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_name, check_segment};
use crate::config::Backend;
use crate::error::GatewayError;
use crate::http1::{RequestHead, UpstreamHead};
use crate::openai::{backend_target_into, ApiPath};

/// Bodies up to this size travel in the head's buffer (one write); larger ones are written from
/// their own `Bytes`, uncopied. Measured against `writev` of head and body and against two
/// writes (`benches/benches/bodywrite.rs`, BENCHMARKS.md "Allocations (issue 9)"): the copy is
/// the cheapest up to 4 KiB and no dearer at 16 KiB, and the worker's head buffer it goes into is
/// reused, so it costs no allocation.
pub const COALESCE_MAX: usize = 16 * 1024;

/// What to write to a backend.
#[derive(Debug)]
pub struct UpstreamRequest {
    /// The encoded head, ready to write (small bodies are appended by the caller), in the buffer
    /// the caller passed.
    pub head: BytesMut,
    /// The body: the client's bytes (shared, not copied) unless the model had to be added.
    pub body: Bytes,
}

/// Build the request for `backend`, its head written into `out` (empty; a buffer the caller
/// reuses, or `BytesMut::new()`).
///
/// `model_in_body` tells whether the client's body names the model; an Azure-style call (model
/// in the path) sent to a backend that reads the model from the body (the OpenAI and Azure v1
/// dialects, and the classic Azure API outside its deployment operations) gets `"model"` added
/// to its JSON body, so the backend runs what the gateway checked.
///
/// # Errors
/// 400 when the model cannot travel to this backend (not a path segment for the Azure dialect,
/// control characters for any), or when the encoder refuses the head: a value that would break
/// HTTP/1.1 framing never leaves the gateway.
#[allow(clippy::too_many_arguments)]
pub fn upstream_request(
    out: BytesMut,
    backend: &Backend,
    auth: Option<(&str, &str)>,
    path: &ApiPath<'_>,
    model: &str,
    model_in_body: bool,
    head: &RequestHead,
    body: &Bytes,
    request_id: &str,
) -> Result<UpstreamRequest, GatewayError> {
    let bad = |e: super::NameError| GatewayError::BadRequest(e.to_string());
    check_name(model).map_err(bad)?;
    let in_body = crate::openai::model_in_body(backend.dialect, path.operation);
    if !in_body {
        check_segment(model).map_err(bad)?;
    }
    let body = if in_body && !model_in_body && !model.is_empty() {
        with_model(body, model).unwrap_or_else(|| body.clone())
    } else {
        body.clone()
    };
    let build = |target: &mut String| {
        target.clear();
        backend_target_into(target, backend, path, model);
        let up = UpstreamHead {
            method: &head.method,
            target,
            host: &backend.authority,
            auth,
            request_id,
            content_length: (!body.is_empty() || !head.is_method("GET"))
                .then_some(body.len() as u64),
            client_headers: &head.headers,
            identity_encoding: crate::openai::is_accounted(path.operation),
        };
        UpstreamRequest::encode(out, &up, body)
    };
    // The thread's reused target buffer; a fresh one if it is taken (it never is: nothing in
    // `build` comes back here).
    TARGET.with(|t| match t.try_borrow_mut() {
        Ok(mut target) => {
            let r = build(&mut target);
            if target.capacity() > MAX_KEPT_TARGET {
                *target = String::new();
            }
            r
        }
        Err(_) => build(&mut String::new()),
    })
}

thread_local! {
    /// The target being built, reused by the thread's requests (a worker builds one at a time).
    static TARGET: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A target buffer grown past this (a long query) is let go after use.
const MAX_KEPT_TARGET: usize = 4096;

impl UpstreamRequest {
    /// `head` encoded, `body` to follow it.
    ///
    /// # Errors
    /// 400 when the encoder refuses the head.
    pub(super) fn encode(
        mut out: BytesMut,
        head: &UpstreamHead<'_>,
        body: Bytes,
    ) -> Result<Self, GatewayError> {
        // Room for a small body too: the caller sends head and small body in one write.
        out.reserve(512 + body.len().min(COALESCE_MAX));
        // Every value the encoder checks but the backend's own (validated at load) came from the
        // client, so a refusal is the client's error, never the backend's.
        head.encode(&mut out).map_err(|e| {
            GatewayError::BadRequest(format!("the request cannot be forwarded: {e}"))
        })?;
        Ok(UpstreamRequest { head: out, body })
    }
}

/// `body` (a JSON object) with `"model": model` as its first member; `None` when the body is not
/// a JSON object (multipart bodies carry their model as a field and are sent as they are).
fn with_model(body: &[u8], model: &str) -> Option<Bytes> {
    let at = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[at] != b'{' {
        return None;
    }
    let rest = &body[at + 1..];
    let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
    let name = serde_json::to_string(model).ok()?;
    let mut out = BytesMut::with_capacity(body.len() + name.len() + 12);
    out.put_slice(b"{\"model\":");
    out.put_slice(name.as_bytes());
    if !empty {
        out.put_u8(b',');
    }
    out.put_slice(rest);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::with_model;

    #[test]
    fn model_is_added_as_first_member() {
        assert_eq!(
            &with_model(br#"{"messages":[]}"#, "gpt-4o").unwrap()[..],
            br#"{"model":"gpt-4o","messages":[]}"#
        );
        assert_eq!(
            &with_model(b" { } ", "m").unwrap()[..],
            br#"{"model":"m" } "#
        );
        assert_eq!(with_model(b"--b\r\n", "m"), None);
        assert_eq!(with_model(b"", "m"), None);
        let v: serde_json::Value =
            serde_json::from_slice(&with_model(br#"{"a":1}"#, "q\"x").unwrap()).unwrap();
        assert_eq!(v["model"], "q\"x");
    }
}
