//! Forwarding: the attempt loop over the pool's members (`upstream_request` builds each attempt's
//! bytes, in `failover`), until one gives a response head worth relaying.

use std::time::Duration;

use aigw_core::error::GatewayError;

use super::RequestCtx;
use crate::conn::Conn;
use crate::failover::{attempt, Ask, Tried, Won};
use crate::peer::ClientIo;

/// How long an attempt runs before the client's socket is watched for a hang-up.
const WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Try the pool's members; the winner's response head is ready to relay. A client that hangs up
/// meanwhile cancels the attempt: the upstream connection is dropped (never pooled), so the
/// backend stops generating an answer nobody will read.
///
/// # Errors
/// 502/503/504 when no member gave a response; [`GatewayError::ClientClosed`] when the client
/// left first.
pub(super) async fn run<S: ClientIo>(
    ctx: &mut RequestCtx<'_>,
    conn: &Conn<S>,
) -> Result<Won, GatewayError> {
    let (Some(path), Some(inspected), Some(pool)) = (&ctx.path, &ctx.body, ctx.pool) else {
        return Err(GatewayError::NotFound("unknown path".into()));
    };
    let ask = Ask {
        req: ctx.req,
        path,
        model: &inspected.model,
        model_in_body: inspected.model_in_body,
        request_id: &ctx.rec.request_id,
        pin: ctx.pin,
    };
    let mut wait = Duration::ZERO;
    let mut tried = Tried::default();
    // The watch starts after a short grace: most answers that come faster cost no poll at all.
    let watch = async {
        monoio::time::sleep(WATCH_AFTER).await;
        conn.io.peer_gone().await
    };
    let result = monoio::select! {
        r = attempt(ctx.shard, ctx.snap, pool, &ask, &mut wait, &mut tried) => r,
        _ = watch => Err(GatewayError::ClientClosed),
    };
    ctx.waited(wait);
    ctx.rec.backend = tried.backend;
    ctx.rec.attempts = tried.attempts;
    let won = result?;
    ctx.rec.backend = Some(won.backend);
    ctx.rec.attempts = won.attempts;
    ctx.rec.status = won.resp.status;
    ctx.rec.region = won
        .resp
        .header("x-ms-region")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Ok(won)
}
