//! `on_head`: the path and the caller's identity, decided on the head alone. A caller that fails
//! here is answered without its body being buffered or parsed (the front door drops a small one
//! and closes the connection on anything else).

use aigw_core::auth::{identify, Identity};
use aigw_core::config::RouteId;
use aigw_core::error::GatewayError;
use aigw_core::http1::{is_safe_target, RequestHead};
use aigw_core::openai::classify;
use aigw_core::request::{check_route_path, match_route, STATUS_PATH};

use crate::shard::Snapshot;

/// What the head decided.
pub(super) enum HeadOutcome {
    /// Read the body and go on, as this caller.
    Proceed(Identity),
    /// The APIM status probe.
    Status,
    /// Answer this, without reading the body.
    Refuse(GatewayError),
    /// Answer this, without reading the body, to a caller whose key was recognised (so the
    /// refusal is counted for its consumer).
    RefuseKnown(Identity, GatewayError),
}

/// Classify the path and identify the caller.
pub(super) fn on_head(snap: &Snapshot, head: &RequestHead) -> HeadOutcome {
    // httparse admits bytes 0x80-0xFF in a target; nothing the gateway forwards may carry them.
    if !is_safe_target(&head.target) {
        return HeadOutcome::Refuse(GatewayError::BadRequest(
            "the request target must be visible ASCII (percent-encode anything else)".into(),
        ));
    }
    // Routes first: their prefixes never overlap the LLM paths (config), so order is no
    // precedence, only the cheaper test.
    if let Some(id) = match_route(&snap.cfg.routes, head.path()) {
        return route(snap, head, id);
    }
    let target = std::str::from_utf8(&head.target).unwrap_or("");
    let path = match classify(target) {
        Ok(p) => p,
        Err(_) if head.path() == STATUS_PATH => return HeadOutcome::Status,
        Err(e) => return HeadOutcome::Refuse(GatewayError::NotFound(e.to_string())),
    };
    let cfg = &snap.cfg;
    match identify(&snap.policy.keys, &cfg.consumers, &head.headers, path.query) {
        Ok(id) => HeadOutcome::Proceed(id),
        Err(e) => HeadOutcome::Refuse(GatewayError::Unauthorized(e.to_string())),
    }
}

/// A route's request: the path below the prefix, the caller's key (exactly as on the LLM paths),
/// then the route's consumer allow-list, all before the body is read.
fn route(snap: &Snapshot, head: &RequestHead, id: RouteId) -> HeadOutcome {
    let cfg = &snap.cfg;
    let route = &cfg.routes[id];
    if let Err(e) = check_route_path(route, head.path()) {
        return HeadOutcome::Refuse(e.into());
    }
    let caller = match identify(
        &snap.policy.keys,
        &cfg.consumers,
        &head.headers,
        head.query(),
    ) {
        Ok(id) => id,
        Err(e) => return HeadOutcome::Refuse(GatewayError::Unauthorized(e.to_string())),
    };
    // Config refuses an allow-list naming no existing consumer, so a route with one always sits
    // in a gateway with consumers, and `Open` never meets an allow-list.
    let allowed = match (&route.consumers, caller.consumer()) {
        (None, _) => true,
        (Some(list), Some(c)) => list.contains(&c),
        (Some(_), None) => false,
    };
    if allowed {
        return HeadOutcome::Proceed(caller);
    }
    let who = caller
        .consumer()
        .and_then(|c| cfg.consumers.get(c))
        .map_or("", |c| c.name.as_str());
    HeadOutcome::RefuseKnown(
        caller,
        GatewayError::Forbidden {
            message: format!(
                "The consumer '{who}' may not use the API at {}",
                route.prefix
            ),
            code: "route_not_allowed",
        },
    )
}
