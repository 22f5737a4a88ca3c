//! `response_head` and `response_body`: the client's head for the winning response, then the
//! body relayed as it arrives while the usage tap reads it; and the one shape of the gateway's
//! own refusals.

use std::time::{Duration, Instant};

use aigw_core::error::GatewayError;
use aigw_core::http1::BodyFraming;
use aigw_core::openai::UsageTap;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::RequestCtx;
use crate::admission::QUOTA_HEADER;
use crate::conn::Conn;
use crate::failover::{client_head, Won};
use crate::relay::{relay_body, RelayEnd, RelayMode};
use crate::server::send_error_with;

/// Largest JSON response the usage tap buffers to find `usage` (bigger ones are relayed untouched).
const TAP_MAX_JSON: usize = 4 * 1024 * 1024;
/// Most reply text kept for counting and the message store.
const TAP_MAX_TEXT: usize = 1024 * 1024;

/// Answer a refusal: the OpenAI-shaped error, the request id and, when a limit refused, where
/// the caller's bucket stands.
pub(super) async fn send_refusal<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    ctx: &RequestCtx<'_>,
    e: &GatewayError,
) {
    let mut headers = vec![("x-request-id", ctx.rec.request_id.as_str())];
    headers.extend(ctx.rate.iter().flatten().map(|(k, v)| (*k, v.as_str())));
    let mut q = itoa::Buffer::new();
    if let Some(left) = ctx.quota_left {
        headers.push((QUOTA_HEADER, q.format(left)));
    }
    // Where backends were tried (a 502, 503 or 504 after attempts): which, and how many.
    let mut n = itoa::Buffer::new();
    if let Some(b) = ctx.rec.backend.and_then(|b| ctx.snap.cfg.backends.get(b)) {
        headers.push(("x-aigw-backend", b.name.as_str()));
        headers.push(("x-aigw-attempts", n.format(ctx.rec.attempts)));
    }
    send_error_with(conn, e, ctx.req.closing, &headers).await;
}

/// Relay `won` to the client; returns whether the client connection may carry another request.
pub(super) async fn run<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    mut won: Won,
    conn: &mut Conn<S>,
) -> bool {
    let snap = ctx.snap;
    let cfg = &snap.cfg;
    let req = ctx.req;
    // response_head
    let sse = won
        .resp
        .header("content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    let mut q = itoa::Buffer::new();
    let mut rate_refs: Vec<(&str, &[u8])> = ctx
        .rate
        .iter()
        .flatten()
        .map(|(k, v)| (*k, v.as_bytes()))
        .collect();
    if let Some(left) = ctx.quota_left {
        rate_refs.push((QUOTA_HEADER, q.format(left).as_bytes()));
    }
    // An HTTP/1.0 client cannot read chunked framing: it gets the data, ended by a close.
    let dechunk = req.head.version_minor == 0 && won.resp.framing == BodyFraming::Chunked;
    let head_out = client_head(
        &won,
        &cfg.backends[won.backend].name,
        &ctx.rec.request_id,
        &rate_refs,
        dechunk,
    );

    // response_body
    let mut tap = UsageTap::new(sse, TAP_MAX_JSON, TAP_MAX_TEXT).decoding(&won.resp.headers);
    let mut first: Option<Instant> = None;
    let g = &cfg.gateway;
    let mut wait = Duration::ZERO;
    let end = relay_body(
        conn,
        &mut won.up,
        &won.resp,
        head_out,
        RelayMode {
            timeout: g.upstream_timeout,
            dechunk,
        },
        &mut wait,
        |d| {
            first.get_or_insert_with(Instant::now);
            tap.feed(d);
        },
    )
    .await;
    ctx.waited(wait);
    if sse {
        ctx.rec.ttft = first.map(|t| t.duration_since(req.started));
    }
    let mut tapped = tap.finish();
    let ok = (200..300).contains(&won.resp.status);
    let model = ctx.body.as_ref().map_or("", |b| &*b.model);
    // A retrieved stored response carries the usage of the call that created it, which was
    // charged then: reading it again costs nothing.
    let runs_model = ctx.path.is_some_and(|p| p.response_object().is_none());
    let usage = match (ok && runs_model, ctx.admission.as_mut()) {
        (true, Some(adm)) => Some(adm.usage_of(&tapped, model, &req.body)),
        _ => None,
    };
    ctx.response_id = tapped.response_id.take();
    ctx.rec.usage = usage;
    ctx.rec.reply = Some((tapped.text, tapped.text_truncated));
    match end {
        RelayEnd::Complete {
            reusable,
            client_keep,
        } => {
            if reusable {
                ctx.shard.pools.put(
                    &snap.backend_keys[won.backend],
                    won.up,
                    g.max_idle_per_backend,
                );
            }
            client_keep
        }
        RelayEnd::UpstreamFailed | RelayEnd::ClientGone => false,
    }
}
