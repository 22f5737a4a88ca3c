//! `response_head` and `response_body`: the client's head for the winning response, then the
//! body relayed as it arrives while the usage tap reads it; and the one shape of the gateway's
//! own refusals.
//!
//! The head carries the caller's rate-limit headers as they stand once the answer is charged,
//! whenever that is known before the head goes out: an error answer is charged nothing, and a
//! successful non-streamed answer of an accounted operation (at most [`TAP_MAX_JSON`] bytes) is
//! read whole first ([`crate::whole`]) and charged its usage. A stream's head goes out before its
//! usage exists: it carries the bucket as admission left it (after the reservation).

use std::time::{Duration, Instant};

use aigw_core::error::GatewayError;
use aigw_core::http1::BodyFraming;
use aigw_core::openai::{is_accounted, Tapped, UsageTap};
use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::{stored, RequestCtx};
use crate::admission::QUOTA_HEADER;
use crate::budget::BodyPermit;
use crate::conn::Conn;
use crate::failover::Won;
use crate::relay::{relay_body, RelayEnd, RelayMode};
use crate::server::send_error_with;
use crate::whole::{read_whole, Whole};

/// Largest JSON response the usage tap buffers to find `usage` (bigger ones are relayed untouched),
/// and largest body read whole before its head.
const TAP_MAX_JSON: usize = 4 * 1024 * 1024;
/// Most bytes of an event stream taken from the upstream per read: a few events (which arrive
/// one by one from a model anyway), and what a stream whose client stopped reading holds in its
/// read and write buffers.
const SSE_READ_MAX: usize = 4 * 1024;
/// A body read whole up to this size goes out in one write with its head (copied behind it);
/// a larger one is written from the upstream's buffer as it is.
const COALESCE_MAX: usize = 16 * 1024;

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
    let g = &ctx.snap.cfg.gateway;
    let sse = is_sse(&won.resp);
    let ok = (200..300).contains(&won.resp.status);
    let mut tap = UsageTap::new(sse, TAP_MAX_JSON, text_cap(ctx));
    if ok && charges(ctx) {
        let model = ctx.body.as_ref().map_or("", |b| &*b.model);
        tap = tap.counting(aigw_core::tokens::encoding_for(model));
    }
    if let Some(max) = keep_for_cache(ctx, &won, sse) {
        tap = tap.keeping(max);
    }
    let mut tap = tap.decoding(&won.resp.headers);
    let mut wait = Duration::ZERO;
    if !ok {
        ctx.settle(0); // an error answer is charged nothing
    } else if let Some(_held) = whole_permit(ctx, &won, sse) {
        let framing = won.resp.framing;
        match read_whole(
            &mut won.up,
            framing,
            TAP_MAX_JSON,
            g.upstream_timeout,
            &mut wait,
        )
        .await
        {
            Whole::Body(body) => {
                ctx.waited(wait);
                tap.feed(&body);
                account(ctx, tap.finish(), true, won.resp.status, sse);
                ctx.settle(ctx.rec.usage.map_or(0, |u| u.total_tokens));
                return send_whole(ctx, won, body, conn).await;
            }
            Whole::Relay => {}
            Whole::Failed(why) => {
                // Nothing reached the client yet: a 502 (charged nothing), and the client
                // connection stays usable.
                ctx.waited(wait);
                let e = GatewayError::BadGateway(format!("the backend sent a {why}"));
                ctx.refused(&e);
                send_refusal(conn, ctx, &e).await;
                return true;
            }
        }
    }
    relay(ctx, won, tap, sse, wait, conn).await
}

/// Read a successful answer whole before its head? When it is not a stream, its operation is
/// one whose usage is read, and the caller has a bucket or quota whose headers it carries.
fn reads_whole(ctx: &RequestCtx<'_>, sse: bool) -> bool {
    !sse && !ctx.rec.stream
        && is_accounted(&ctx.rec.operation)
        && ctx.admission.as_ref().is_some_and(|a| a.is_limited())
}

/// The worker's body budget share of an answer to read whole: twice its bytes (the body, and the
/// usage tap's copy), the cap's for a chunked one. `None` (relay it as it arrives, with the
/// admission-time headers) when it is not to be read whole or the budget has no room: many large
/// answers at once cannot exhaust memory, and none is refused for it.
fn whole_permit(ctx: &RequestCtx<'_>, won: &Won, sse: bool) -> Option<BodyPermit> {
    if !reads_whole(ctx, sse) {
        return None;
    }
    let bytes = match won.resp.framing {
        BodyFraming::Length(n) if n > TAP_MAX_JSON as u64 => return None,
        BodyFraming::Length(n) => n,
        _ => TAP_MAX_JSON as u64,
    };
    ctx.budget.as_ref()?.hold(bytes.saturating_mul(2))
}

/// Reply text the tap keeps: what the message store takes (its `max_body_bytes`) when it is on,
/// else none. The tap counts the reply's tokens as they pass either way (see `UsageTap::counting`),
/// so a long stream holds neither its text nor a copy of it.
fn text_cap(ctx: &RequestCtx<'_>) -> usize {
    match (&ctx.shard.sinks.messages, &ctx.snap.cfg.log.messages) {
        (Some(_), Some(store)) => store.max_body_bytes,
        _ => 0,
    }
}

/// Is a successful answer to this request charged (and so its tokens counted when it reports
/// no usage)? When it ran a model and went through admission. A retrieved stored response
/// carries the usage of the call that created it, which was charged then: reading it again
/// costs nothing.
fn charges(ctx: &RequestCtx<'_>) -> bool {
    ctx.admission.is_some() && ctx.path.is_some_and(|p| p.response_object().is_none())
}

/// Keep the decoded answer for the semantic cache? Up to `max_entry_bytes`, when the lookup left a
/// plan to store it and the answer may be stored (a 200; a stream only with `store_streams`).
fn keep_for_cache(ctx: &RequestCtx<'_>, won: &Won, sse: bool) -> Option<usize> {
    let plan = ctx.cache_plan.as_ref()?;
    let cfg = ctx.snap.cfg.semantic_cache.as_ref()?;
    (won.resp.status == 200 && (!sse || plan.streams)).then_some(cfg.max_entry_bytes)
}

/// Charge the answer what it used (a 2xx only: an error costs nothing), keep its text and the id
/// of the stored response it created, and hand a complete answer to the semantic cache.
fn account(ctx: &mut RequestCtx<'_>, mut tapped: Tapped, ok: bool, status: u16, sse: bool) {
    if let Some(plan) = ctx.cache_plan.take() {
        let kept = tapped.kept.take();
        crate::cache::store::answer(ctx, plan, status, sse || tapped.stream, kept.as_deref());
    }
    let model = ctx.body.as_ref().map_or("", |b| &*b.model);
    ctx.rec.usage = match (ok && charges(ctx), ctx.admission.as_mut()) {
        (true, Some(adm)) => Some(adm.usage_of(&tapped, model, &ctx.req.body)),
        _ => None,
    };
    ctx.response_id = tapped.response_id.take();
    ctx.rec.reply = Some((tapped.text, tapped.text_truncated));
}

/// The client's head for `won`, with the caller's rate-limit headers as `ctx` holds them, in a
/// buffer of the worker's with room for `body` more bytes behind it.
fn head_for(ctx: &RequestCtx<'_>, won: &Won, dechunk: bool, body: usize) -> BytesMut {
    let mut q = itoa::Buffer::new();
    let mut rate: [(&str, &[u8]); MAX_RATE_HEADERS] = [("", b""); MAX_RATE_HEADERS];
    let mut n = 0;
    for (k, v) in ctx.rate.iter().flatten() {
        rate[n] = (k, v.as_bytes());
        n += 1;
    }
    if let Some(left) = ctx.quota_left {
        rate[n] = (QUOTA_HEADER, q.format(left).as_bytes());
        n += 1;
    }
    if let Some(v) = ctx.cache_header {
        rate[n] = (crate::cache::CACHE_HEADER, v.as_bytes());
        n += 1;
    }
    let name = &ctx.snap.cfg.backends[won.backend].name;
    let mut out = ctx.shard.bufs.take(HEAD_ROOM + body);
    client_head(
        &mut out,
        won,
        name,
        &ctx.rec.request_id,
        &rate[..n],
        dechunk,
    );
    out
}

/// Room a client head is expected to need (a larger one grows its buffer).
const HEAD_ROOM: usize = 2048;

/// Send a body read whole, framed by its length, behind its head.
async fn send_whole<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    mut won: Won,
    body: Bytes,
    conn: &mut Conn<S>,
) -> bool {
    if won.resp.framing == BodyFraming::Chunked {
        won.resp.framing = BodyFraming::Length(body.len() as u64);
    }
    let mut out = head_for(ctx, &won, false, body.len().min(COALESCE_MAX));
    // The upstream answer was read to its end: its connection is reusable whatever the client does.
    if won.resp.keep_alive && won.up.conn.buf.is_empty() {
        let g = &ctx.snap.cfg.gateway;
        ctx.shard.pools.put(
            &ctx.snap.backend_keys[won.backend],
            won.up,
            g.max_idle_per_backend,
        );
    }
    if body.len() <= COALESCE_MAX {
        out.extend_from_slice(&body);
        return conn.write(out).await.0.is_ok();
    }
    conn.write(out).await.0.is_ok() && conn.write(body).await.0.is_ok()
}

/// Relay the body as it arrives (the tap reads it on the way), then charge it.
async fn relay<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    won: Won,
    mut tap: UsageTap,
    sse: bool,
    mut wait: Duration,
    conn: &mut Conn<S>,
) -> bool {
    let status = won.resp.status;
    let ok = (200..300).contains(&status);
    let mut first: Option<Instant> = None;
    // A stream's stored response is placed as soon as its id passes: its client may act on it
    // before the stream ends.
    let mut learner = stored::learner(ctx, won.backend, won.resp.status);
    let keep = relay_plain(ctx, won, conn, &mut wait, |d| {
        first.get_or_insert_with(Instant::now);
        tap.feed(d);
        if let Some(l) = &learner {
            if let Some(id) = tap.response_id() {
                l.learn(id);
                learner = None;
            }
        }
    })
    .await;
    ctx.waited(wait);
    if sse {
        ctx.rec.ttft = first.map(|t| t.duration_since(ctx.req.started));
    }
    account(ctx, tap.finish(), ok, status, sse);
    keep
}

/// Write the client's head for `won` (its headers, the request id, `x-aigw-*`, and the caller's
/// rate-limit headers as `ctx` holds them, in place of the backend's of those names), then the
/// body as it arrives, each piece shown to `on_data`; the upstream connection goes back to the
/// pool when the body ended cleanly. Returns whether the client connection may carry another
/// request. The LLM path and `[routes]` share it.
pub(super) async fn relay_plain<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &RequestCtx<'_>,
    mut won: Won,
    conn: &mut Conn<S>,
    wait: &mut Duration,
    on_data: impl FnMut(&[u8]),
) -> bool {
    let snap = ctx.snap;
    let g = &snap.cfg.gateway;
    // An HTTP/1.0 client cannot read chunked framing: it gets the data, ended by a close.
    let dechunk = ctx.req.head.version_minor == 0 && won.resp.framing == BodyFraming::Chunked;
    let head_out = head_for(ctx, &won, dechunk, 0);
    let end = relay_body(
        conn,
        &mut won.up,
        &won.resp,
        head_out,
        RelayMode {
            timeout: g.upstream_timeout,
            dechunk,
            read_max: if is_sse(&won.resp) {
                SSE_READ_MAX
            } else {
                usize::MAX
            },
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

/// The head sent to the client for a won response, written into `out`; `rate` (the caller's own
/// rate-limit headers, at most [`MAX_RATE_HEADERS`]) replaces the backend's headers of the same
/// names. With `dechunk` (an HTTP/1.0 client and a chunked body) the body goes out unframed and
/// the connection closes after it.
fn client_head(
    out: &mut BytesMut,
    won: &Won,
    backend_name: &str,
    request_id: &str,
    rate: &[(&str, &[u8])],
    dechunk: bool,
) {
    const FIXED: usize = 3;
    let rate = &rate[..rate.len().min(MAX_RATE_HEADERS)];
    let n = FIXED + rate.len();
    let mut attempts = itoa::Buffer::new();
    let mut replace = [
        "x-request-id",
        "x-aigw-backend",
        "x-aigw-attempts",
        "",
        "",
        "",
        "",
        "",
    ];
    let mut extra: [(&str, &[u8]); FIXED + MAX_RATE_HEADERS] = [
        ("x-request-id", request_id.as_bytes()),
        ("x-aigw-backend", backend_name.as_bytes()),
        ("x-aigw-attempts", attempts.format(won.attempts).as_bytes()),
        ("", b""),
        ("", b""),
        ("", b""),
        ("", b""),
        ("", b""),
    ];
    for (i, (k, v)) in rate.iter().enumerate() {
        replace[FIXED + i] = k;
        extra[FIXED + i] = (k, v);
    }
    won.resp
        .encode_for_client(out, &replace[..n], &extra[..n], dechunk);
}

/// Most headers of the gateway's own a client head carries besides the fixed ones: three of the
/// caller's bucket, one of the quota, and `x-aigw-cache`.
const MAX_RATE_HEADERS: usize = 5;

/// Is the response an event stream (`content-type: text/event-stream`)?
fn is_sse(resp: &aigw_core::http1::ResponseHead) -> bool {
    resp.header("content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"))
}
