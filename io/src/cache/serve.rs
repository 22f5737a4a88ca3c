//! Serving a hit: the stored JSON as it was, or (for a client that asked for a stream) the same
//! answer replayed as an event stream, with `x-aigw-cache`, the similarity of a semantic hit and
//! `age`. A hit reaches no backend and, unless `charge_hits`, is charged nothing.

use aigw_core::cache::prompt::replay_sse;
use aigw_core::error::GatewayError;
use aigw_core::openai::Usage;
use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::lookup::Served;
use super::CACHE_HEADER;
use crate::admission::QUOTA_HEADER;
use crate::conn::Conn;
use crate::health::unix_ms;
use crate::metrics::F_CACHE_TOKENS_SAVED;
use crate::pipeline::RequestCtx;
use crate::server::send_response;

/// A hit's body and content type.
pub struct Rendered {
    content_type: &'static str,
    body: Bytes,
}

/// The body `served` goes out as: the stored JSON, or its replay as an event stream. `None` when
/// a stored answer cannot be replayed as a stream (then the request is a miss).
pub fn render(served: &Served) -> Option<Rendered> {
    if !served.stream {
        return Some(Rendered {
            content_type: "application/json",
            body: served.entry.answer.clone(),
        });
    }
    let sse = replay_sse(served.operation, &served.entry.answer, served.include_usage)?;
    Some(Rendered {
        content_type: "text/event-stream",
        body: Bytes::from(sse),
    })
}

/// Answer from the cache. With `charge_hits` the hit goes through the token limits like a
/// backend's answer of the stored size (and may be refused by them).
///
/// # Errors
/// A token limit's refusal (`charge_hits` only).
pub async fn hit<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    served: Served,
    out: Rendered,
    conn: &mut Conn<S>,
) -> Result<bool, GatewayError> {
    let charge = ctx
        .snap
        .cfg
        .semantic_cache
        .as_ref()
        .is_some_and(|c| c.charge_hits);
    let tokens = served.entry.tokens;
    if charge {
        crate::pipeline::admit(ctx)?;
        ctx.rec.usage = Some(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: tokens,
        });
        ctx.settle(tokens);
    } else if crate::pipeline::admit(ctx).is_ok() {
        // Reserved and handed back at once: the hit costs nothing, and its rate-limit headers
        // show the caller's bucket as it stands.
        ctx.settle(0);
    } else {
        // An empty bucket does not refuse an uncharged hit; the headers the refusal left show
        // the bucket.
        ctx.rec.rejected = None;
    }
    ctx.shard.metrics.add(F_CACHE_TOKENS_SAVED, &[], tokens);
    ctx.rec.status = 200;
    let age = unix_ms().saturating_sub(served.entry.created_ms) / 1000;
    let mut age_buf = itoa::Buffer::new();
    let similarity = served
        .similarity
        .map(|s| format!("{:.4}", s.clamp(0.0, 1.0)));
    let mut headers: Vec<(&str, &str)> = vec![
        ("x-request-id", ctx.rec.request_id.as_str()),
        (CACHE_HEADER, served.header),
        ("age", age_buf.format(age)),
    ];
    if let Some(s) = &similarity {
        headers.push(("x-aigw-cache-similarity", s));
    }
    headers.extend(ctx.rate.iter().flatten().map(|(k, v)| (*k, v.as_str())));
    let mut q = itoa::Buffer::new();
    if let Some(left) = ctx.quota_left {
        headers.push((QUOTA_HEADER, q.format(left)));
    }
    Ok(send_response(conn, 200, &headers, out.content_type, &out.body).await)
}
