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

/// Relay `won` to the client with the usage tap reading along; returns whether the client
/// connection may carry another request.
pub(super) async fn run<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    won: Won,
    conn: &mut Conn<S>,
) -> bool {
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
    let ok = (200..300).contains(&won.resp.status);

    // response_body
    let mut tap = UsageTap::new(sse, TAP_MAX_JSON, TAP_MAX_TEXT).decoding(&won.resp.headers);
    let mut first: Option<Instant> = None;
    let mut wait = Duration::ZERO;
    let keep = relay(ctx, won, &rate_refs, conn, &mut wait, |d| {
        first.get_or_insert_with(Instant::now);
        tap.feed(d);
    })
    .await;
    ctx.waited(wait);
    if sse {
        ctx.rec.ttft = first.map(|t| t.duration_since(req.started));
    }
    let tapped = tap.finish();
    let model = ctx.body.as_ref().map_or("", |b| &*b.model);
    let usage = match (ok, ctx.admission.as_mut()) {
        (true, Some(adm)) => Some(adm.usage_of(&tapped, model, &req.body)),
        _ => None,
    };
    ctx.rec.usage = usage;
    ctx.rec.reply = Some((tapped.text, tapped.text_truncated));
    keep
}

/// Write the client's head for `won` (its headers, the request id, `x-aigw-*`, and `rate` in
/// place of the backend's headers of those names), then the body as it arrives, each piece
/// shown to `on_data`; the upstream connection goes back to the pool when the body ended
/// cleanly. Returns whether the client connection may carry another request.
pub(super) async fn relay<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &RequestCtx<'_>,
    mut won: Won,
    rate: &[(&str, &[u8])],
    conn: &mut Conn<S>,
    wait: &mut Duration,
    on_data: impl FnMut(&[u8]),
) -> bool {
    let snap = ctx.snap;
    let g = &snap.cfg.gateway;
    // An HTTP/1.0 client cannot read chunked framing: it gets the data, ended by a close.
    let dechunk = ctx.req.head.version_minor == 0 && won.resp.framing == BodyFraming::Chunked;
    let head_out = client_head(
        &won,
        &snap.cfg.backends[won.backend].name,
        &ctx.rec.request_id,
        rate,
        dechunk,
    );
    let end = relay_body(
        conn,
        &mut won.up,
        &won.resp,
        head_out,
        RelayMode {
            timeout: g.upstream_timeout,
            dechunk,
        },
        wait,
        on_data,
    )
    .await;
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
