//! `on_body` and `route`: what the body asks for, checked, then the pool that serves it and
//! whether the caller may use that model. Both run before any backend is chosen, so a client's
//! mistake never touches a backend's health.

use aigw_core::auth::allow_model;
use aigw_core::error::GatewayError;
use aigw_core::request::{inspect_body, route as route_model};

use super::RequestCtx;

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
    ctx.rec.model = inspected.model.to_string();
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
    let Some(inspected) = &ctx.body else {
        return Ok(()); // the model listing: no pool
    };
    let cfg = &ctx.snap.cfg;
    if let Some(id) = ctx.rec.identity {
        allow_model(&cfg.consumers, id, &inspected.model).map_err(|e| GatewayError::Forbidden {
            message: e.to_string(),
            code: "model_not_allowed",
        })?;
    }
    ctx.pool = Some(route_model(cfg, &inspected.model)?);
    Ok(())
}
