//! `on_body` and `route`: what the body asks for, checked, then the pool that serves it and
//! whether the caller may use that model. Both run before any backend is chosen, so a client's
//! mistake never touches a backend's health.

use aigw_core::auth::allow_model;
use aigw_core::error::GatewayError;
use aigw_core::request::{inspect_body, route as route_model};

use super::{stored, RequestCtx};

/// `on_body`: peek the body, check the names.
///
/// # Errors
/// 400 for malformed JSON, bad names, a body model that conflicts with the path's deployment.
pub(super) fn on_body(ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    let Some(path) = ctx.path else {
        return Err(GatewayError::NotFound("unknown path".into()));
    };
    if path.is_models_list() {
        return Ok(());
    }
    let req = ctx.req;
    let inspected = inspect_body(&path, &req.head, &req.body)?;
    // Borrowed from the body (a copy only when the JSON string had escapes).
    ctx.rec.model = inspected.model.clone();
    ctx.rec.stream = inspected.stream;
    ctx.body = Some(inspected);
    Ok(())
}

/// `route`: the model's pool, and the caller's permission for the model.
///
/// # Errors
/// 400 for an unknown model or one its pool's backends cannot take, 403 for a model the
/// consumer may not use.
pub(super) fn route(ctx: &mut RequestCtx<'_>) -> Result<(), GatewayError> {
    let (Some(inspected), Some(path)) = (&ctx.body, ctx.path) else {
        return Ok(()); // the model listing: no pool
    };
    // A stored response names no model: it is served where it lives (its model was allowed
    // when it was created, by this same caller).
    if let Some(id) = path.response_object() {
        let (pool, bid) = stored::place_object(ctx, id)?;
        ctx.pool = Some(pool);
        ctx.pin = Some(bid);
        return Ok(());
    }
    let cfg = &ctx.snap.cfg;
    if let Some(id) = ctx.rec.identity {
        allow_model(&cfg.consumers, id, &inspected.model).map_err(|e| GatewayError::Forbidden {
            message: e.to_string(),
            code: "model_not_allowed",
        })?;
    }
    let pool = route_model(cfg, &inspected.model, path.operation)?;
    if let Some(prev) = &inspected.previous_response_id {
        ctx.pin = stored::place_previous(ctx, pool, prev)?;
    }
    ctx.pool = Some(pool);
    Ok(())
}
