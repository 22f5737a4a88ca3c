//! `short_circuit`: answers that need no backend. Today the model listing and APIM's status
//! probe; the semantic cache's hits will answer here too (after identity and validation, before
//! limits, so a hit costs no tokens).

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use aigw_core::error::GatewayError;

use super::RequestCtx;
use crate::conn::Conn;
use crate::server::send_response;

/// What `short_circuit` decided.
pub(super) enum Plan {
    /// Go on to the backends.
    Forward,
    /// Answer with the model listing.
    Models,
}

/// Decide whether the request needs a backend.
///
/// # Errors
/// 405 for the model listing with a method other than GET.
pub(super) fn decide(ctx: &RequestCtx<'_>) -> Result<Plan, GatewayError> {
    if !ctx.path.is_some_and(|p| p.is_models_list()) {
        return Ok(Plan::Forward);
    }
    if !ctx.req.head.is_method("GET") {
        return Err(GatewayError::MethodNotAllowed);
    }
    Ok(Plan::Models)
}

/// Send the model listing.
pub(super) async fn models<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    conn: &mut Conn<S>,
) -> bool {
    ctx.rec.status = 200;
    let rid = [("x-request-id", ctx.rec.request_id.as_str())];
    send_response(conn, 200, &rid, "application/json", &ctx.snap.models_json).await
}

/// APIM's status probe: 200 with no key needed.
pub(super) async fn status<S: AsyncReadRent + AsyncWriteRent>(
    ctx: &mut RequestCtx<'_>,
    conn: &mut Conn<S>,
) -> bool {
    ctx.rec.status = 200;
    let rid = [("x-request-id", ctx.rec.request_id.as_str())];
    send_response(conn, 200, &rid, "application/json", b"{\"status\":\"ok\"}").await
}
