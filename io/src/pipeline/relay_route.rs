//! A route's request (`[routes.NAME]`): forwarded to the route's one backend with the backend's
//! credential in place of the client's, and relayed back as it arrives. No body inspection, no
//! pool, no token admission, no usage tap: a route is not an LLM call, so nothing is accounted
//! and the client's `Accept-Encoding` is passed on untouched.

use std::time::Duration;

use aigw_core::error::GatewayError;
use aigw_core::request::route_request;

use super::forward::watched;
use super::{respond, RequestCtx};
use crate::conn::Conn;
use crate::failover::{attempt_one, sent, Tried};
use crate::peer::ClientIo;

/// Forward and relay; `Ok(keep)` says whether the client connection may carry another request.
///
/// # Errors
/// 400 for a path or head that cannot be forwarded, 503 while the backend's breaker is open,
/// 502/504 when it gave no response, [`GatewayError::ClientClosed`] when the client left first.
pub(super) async fn run<S: ClientIo>(
    ctx: &mut RequestCtx<'_>,
    conn: &mut Conn<S>,
) -> Result<bool, GatewayError> {
    let Some(id) = ctx.route else {
        return Err(GatewayError::NotFound("unknown path".into()));
    };
    let snap = ctx.snap;
    let route = &snap.cfg.routes[id];
    let bid = route.backend;
    let auth = snap.auth[bid].as_ref().map(|(n, v)| (*n, v.as_str()));
    let req = ctx.req;
    let out = route_request(
        route,
        &snap.cfg.backends[bid],
        auth,
        &req.head,
        &req.body,
        &ctx.rec.request_id,
    )?;
    let sent = sent(out, req.head.is_method("HEAD"));
    let mut wait = Duration::ZERO;
    let mut tried = Tried::default();
    let result = watched(
        conn,
        attempt_one(ctx.shard, snap, bid, &sent, &mut wait, &mut tried),
    )
    .await;
    ctx.attempted(wait, tried);
    let won = result?;
    ctx.answered(&won);
    let mut wait = Duration::ZERO;
    let keep = respond::relay_plain(ctx, won, conn, &mut wait, |_| {}).await;
    ctx.waited(wait);
    Ok(keep)
}
