//! Forwarding: the attempt loop over the pool's members (`upstream_request` builds each attempt's
//! bytes, in `failover`), until one gives a response head worth relaying.

use std::future::Future;
use std::time::Duration;

use aigw_core::error::GatewayError;

use super::RequestCtx;
use crate::conn::Conn;
use crate::failover::{attempt, Ask, Tried, Won};
use crate::peer::ClientIo;

/// How long an attempt runs before the client's socket is watched for a hang-up.
const WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Try the pool's members; the winner's response head is ready to relay.
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
    let result = watched(
        conn,
        attempt(ctx.shard, ctx.snap, pool, &ask, &mut wait, &mut tried),
    )
    .await;
    ctx.attempted(wait, tried);
    let won = result?;
    ctx.answered(&won);
    Ok(won)
}

/// Run `work` (attempts at backends) while watching the client: a client that hangs up
/// meanwhile cancels it, so the upstream connection is dropped (never pooled) and the backend
/// stops generating an answer nobody will read.
///
/// # Errors
/// `work`'s own, or [`GatewayError::ClientClosed`] when the client left first.
pub(crate) async fn watched<S: ClientIo, T>(
    conn: &Conn<S>,
    work: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    // The watch starts after a short grace: most answers that come faster cost no poll at all.
    let watch = async {
        monoio::time::sleep(WATCH_AFTER).await;
        conn.io.peer_gone().await
    };
    monoio::select! {
        r = work => r,
        _ = watch => Err(GatewayError::ClientClosed),
    }
}
